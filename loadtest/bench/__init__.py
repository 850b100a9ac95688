"""`taxgate bench`: measure the safety tax under load, and what the monitors catch.

What to run: ``options`` (settings, profiles), ``matrix`` (monitor sets from YAML),
``scenarios`` (direct, gateway, one per set; gateway configs), ``localmodel``
(random-weight Detoxify where no weights can be downloaded).
Running it: ``runner`` (the whole run), ``procs`` (child servers), ``rounds`` (one
Locust round), ``traffic`` (warm-up and safety requests), ``safety`` (catch rates),
``promscrape`` (the gateways' own timings).
Measuring: ``streamtiming`` (per-request SSE timing), ``samples`` (the JSONL contract
with the locustfile), ``stats``/``aggregate``/``tax`` (pure statistics).
Writing it up: ``schema`` (report.json), ``report``/``tables``/``plots``/``terminal``.
Entry point: ``cli``.
"""
