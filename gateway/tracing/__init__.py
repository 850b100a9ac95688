"""OpenTelemetry traces of the gateway: one SERVER span per request, monitor spans, the
upstream CLIENT span, exported in the background over OTLP.

``settings.py`` is the ``tracing:`` block (fed by the ``OTEL_*`` variables at the edge);
``attributes.py`` and ``tally.py`` are pure (what a span says); ``export.py`` builds the SDK's
provider and is imported only when tracing is on, so a gateway without tracing never loads
the SDK; ``tracer.py`` holds the per-request spans the request path hooks into.
"""
