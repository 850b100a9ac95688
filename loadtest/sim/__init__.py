"""The upstream simulator: an OpenAI-compatible server that behaves like vLLM under load.

Imports neither ``gateway`` nor ``monitors``; it stands in for vLLM and nothing more.
"""

from loadtest.sim.server import create_sim_app
from loadtest.sim.settings import SimSettings
from loadtest.sim.timing import PROFILES, LatencyProfile

__all__ = ["PROFILES", "LatencyProfile", "SimSettings", "create_sim_app"]
