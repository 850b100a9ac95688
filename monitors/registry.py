"""Monitor factories by name: the built-ins and third-party packages' entry points.

A factory is any ``Callable[[MonitorSpec], Monitor | AsyncMonitor]``. Entry points are resolved only
when a monitor of that name is built, so configuring ``pii`` never imports torch.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from monitors.base import AsyncMonitor, Monitor, MonitorLoadError
from monitors.config import MonitorSpec

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "taxgate.monitors"

# The same targets pyproject.toml declares. Kept here too so a source checkout that was
# never pip-installed (no entry-point metadata) still knows its own monitors.
BUILTIN_FACTORIES = {
    "profanity": "monitors.builtin.profanity:create",
    "pii": "monitors.builtin.pii:create",
    "blocklist": "monitors.builtin.blocklist:create",
    "injection": "monitors.builtin.injection:create",
    "detoxify": "monitors.builtin.detoxify_monitor:create",
    "judge": "monitors.builtin.judge:create",
    "classifier": "monitors.builtin.classifier:create",
    "detector": "monitors.builtin.detector:create",
}

# Extras that bring a monitor's heavy dependencies, named in import-error messages.
_EXTRAS_HINT = {"detoxify": "pip install 'taxgate[detoxify]'"}

Factory = Callable[[MonitorSpec], Monitor | AsyncMonitor]
OptionsT = TypeVar("OptionsT", bound=BaseModel)


class _LazyFactory:
    """A ``module:attribute`` reference, imported on first use."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target

    def load(self) -> Factory:
        module_name, _, attribute = self.target.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attribute.split("."):
                obj = getattr(obj, part)
        except ImportError as exc:
            hint = _EXTRAS_HINT.get(self.name)
            extra = f"; {hint}" if hint else ""
            raise MonitorLoadError(f"monitor {self.name!r}: cannot import {self.target} ({exc}){extra}") from exc
        except AttributeError as exc:
            raise MonitorLoadError(f"monitor {self.name!r}: {self.target} not found ({exc})") from exc
        except Exception as exc:  # a plugin module can fail any way on import, e.g. a monitor
            # class that derives from the wrong base (monitors/base.py refuses it): say which
            raise MonitorLoadError(
                f"monitor {self.name!r}: importing {self.target} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return obj  # type: ignore[return-value]


class MonitorRegistry:
    """Maps monitor names to factories."""

    def __init__(self, factories: Mapping[str, Factory] | None = None) -> None:
        self._factories: dict[str, Factory | _LazyFactory] = dict(factories or {})

    @classmethod
    def from_entry_points(cls, group: str = ENTRY_POINT_GROUP, *, include_builtins: bool = True) -> MonitorRegistry:
        """The built-ins plus every entry point of ``group`` in the installed distributions."""
        registry = cls()
        if include_builtins:
            for name, target in BUILTIN_FACTORIES.items():
                registry._factories[name] = _LazyFactory(name, target)
        for ep in entry_points(group=group):
            known = registry._factories.get(ep.name)
            if isinstance(known, _LazyFactory) and known.target == ep.value:
                continue  # taxgate's own metadata, same target as the built-in
            if known is not None:
                # First one wins so a stray plugin cannot silently replace e.g. ``pii``.
                logger.warning(
                    "monitor entry point %r -> %s ignored: the name is already taken by %s",
                    ep.name,
                    ep.value,
                    getattr(known, "target", known),
                )
                continue
            registry._factories[ep.name] = _LazyFactory(ep.name, ep.value)
        return registry

    def register(self, name: str, factory: Factory | str) -> None:
        """Add or replace the factory for ``name``: a callable, or a lazy ``"module:attr"`` target."""
        self._factories[name] = _LazyFactory(name, factory) if isinstance(factory, str) else factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def build(self, spec: MonitorSpec) -> Monitor | AsyncMonitor:
        """Build the monitor ``spec.name``; every failure is a MonitorLoadError saying why."""
        entry = self._factories.get(spec.name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            raise MonitorLoadError(f"unknown monitor {spec.name!r}; known monitors: {known}")
        factory = entry.load() if isinstance(entry, _LazyFactory) else entry
        try:
            monitor = factory(spec)
        except MonitorLoadError:
            raise
        except Exception as exc:  # a plugin's factory can fail any way; say which one did
            raise MonitorLoadError(f"monitor {spec.name!r} failed to build: {type(exc).__name__}: {exc}") from exc
        if not isinstance(monitor, Monitor | AsyncMonitor):
            raise MonitorLoadError(
                f"monitor {spec.name!r}: factory returned {type(monitor).__name__}, not a Monitor or AsyncMonitor"
            )
        return monitor


def parse_options(spec: MonitorSpec, model: type[OptionsT]) -> OptionsT:
    """Validate ``spec.options`` with ``model``; a bad or unknown key becomes a MonitorLoadError.

    Give ``model`` ``extra="forbid"`` so a misspelt key is named instead of ignored.
    """
    try:
        return model.model_validate(spec.options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(options)'}: {err['msg']}" for err in exc.errors()
        )
        raise MonitorLoadError(f"monitor {spec.id!r} ({spec.name}) options: {problems}") from exc
