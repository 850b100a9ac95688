"""The API endpoints the gateway serves, one module each."""
