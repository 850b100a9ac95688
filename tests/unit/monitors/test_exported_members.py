"""The public surface of ``monitors``: what a plugin may import from the package itself.

Adding or removing a name is a change to the plugin contract: do it here on purpose.
"""

import monitors

EXPECTED = {
    "AsyncMonitor",
    "BatchSpec",
    "Finding",
    "Monitor",
    "MonitorLoadError",
    "MonitorOverloaded",
    "MonitorSpec",
    "Span",
    "parse_options",
}


def test_all_lists_exactly_the_public_names():
    assert set(monitors.__all__) == EXPECTED
    assert len(monitors.__all__) == len(EXPECTED)  # no name listed twice


def test_every_exported_name_is_importable_and_defined_in_monitors():
    for name in monitors.__all__:
        member = getattr(monitors, name)
        assert member.__module__.startswith("monitors."), (name, member.__module__)


def test_star_import_gives_the_same_names():
    namespace: dict[str, object] = {}
    exec("from monitors import *", namespace)
    assert set(namespace) - {"__builtins__"} == EXPECTED
