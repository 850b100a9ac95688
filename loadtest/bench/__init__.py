"""`taxgate bench`: measure the safety tax under load, and what the monitors catch.

Modules: ``streamtiming`` (per-request SSE timing), ``samples`` (the JSONL contract with
the locustfile), ``stats``/``aggregate``/``tax`` (pure statistics), ``matrix``/``scenarios``
(what to run), ``procs``/``rounds``/``traffic``/``safety``/``runner`` (running it),
``report``/``schema``/``plots``/``terminal`` (writing it up), ``cli`` (flags).
"""
