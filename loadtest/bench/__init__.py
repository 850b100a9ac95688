"""`taxgate bench`: measure the safety tax under load, and what the monitors catch.

What to run: ``options`` (settings, profiles), ``matrix`` (monitor sets from YAML),
``scenarios`` (direct, gateway, one per set; gateway configs), ``localmodel``
(random-weight Detoxify where no weights can be downloaded).
Running it: ``runner`` (the whole run), ``procs`` (child servers), ``rounds`` (one
Locust round, sent to ``driver``: the one load-generator process), ``traffic`` (warm-up
and safety requests), ``safety`` (catch rates), ``promscrape`` (the gateways' own
timings), ``cpu`` (CPU of every process per round: cost column, saturation flags).
Measuring: ``streamtiming`` (per-request SSE timing), ``samples`` (the JSONL contract
with the locustfile), ``stats``/``aggregate``/``tax`` (pure statistics).
Writing it up: ``schema`` (report.json), ``headline`` (one line per set, at the highest
unsaturated level), ``report``/``tables``/``plots``/``terminal``.
Monitors alone (``taxgate bench monitors``): ``monitorcli`` (flags), ``monitorrun`` (the
run, in process), ``monitorload`` (one round through the micro-batcher), ``monitorstats``
(pure), ``monitorreport`` (its report, with the tables and writers above).
The other subcommands: ``budget`` (a tax budget before a slow judge), ``audit`` (what the
audit log costs), ``soak`` (faults under load; ``soak_outcomes`` judges each answer).
What they all share: ``kit`` (flags, round plan, progress bar, Ctrl-C), ``stats`` (one
percentile, one interval method), ``report.write_files`` (report.json/md/html).
Entry point: ``cli``.
"""
