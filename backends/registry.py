"""Finding backends by name: the built-ins plus every `chipbench.backends` entry point.

An entry point names a zero-argument callable (a factory or a class) returning a Backend.
A plugin that fails to import or to build is listed with its reason; it never crashes a run.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from importlib.metadata import entry_points

from chipbench.backends.base import Backend, Probe
from chipbench.errors import UsageError

ENTRY_POINT_GROUP = "chipbench.backends"
BUILTINS = {
    "cpu": "chipbench.backends.cpu:create",
    "cuda": "chipbench.backends.cuda:create",
    "accelerator": "chipbench.backends.accelerator:create",
    "llamacpp": "chipbench.backends.llamacpp:create",
    "vllm": "chipbench.backends.vllm_engine:create",
}

# backends named by an address rather than installed: PREFIX + address -> factory(name)
ENDPOINTS = {"openai:": "chipbench.backends.openai_endpoint:create"}


@dataclass(frozen=True)
class Entry:
    name: str
    source: str  # "builtin" or the distribution that registered it
    backend: Backend | None  # None when the plugin could not be loaded
    probe: Probe

    @property
    def available(self) -> bool:
        return self.backend is not None and self.probe.available

    def origin(self) -> dict:
        """The record fields naming the distribution that provided this adapter, and its version."""
        if self.source == "builtin":
            import chipbench

            return {"backend_dist": "chipbench", "backend_dist_version": chipbench.__version__}
        try:
            version = metadata.version(self.source)
        except Exception:  # an entry point outside an installed distribution has no version
            version = None
        return {"backend_dist": self.source, "backend_dist_version": version}


def _instantiate(target) -> Backend:
    backend = target() if callable(target) else target
    missing = [m for m in ("probe", "info", "load", "generate", "close") if not hasattr(backend, m)]
    if missing:
        raise TypeError(f"object lacks the Backend method(s) {', '.join(missing)}")
    return backend


def _builtin(name: str, target: str) -> Entry:
    module, attr = target.split(":")
    backend = _instantiate(getattr(importlib.import_module(module), attr))
    return Entry(name, "builtin", backend, backend.probe())


def _plugin(ep) -> Entry:
    dist = getattr(ep.dist, "name", None) or ep.value
    try:
        backend = _instantiate(ep.load())
    except Exception as e:
        return Entry(ep.name, dist, None, Probe.no(f"plugin failed to load: {type(e).__name__}: {e}"))
    try:
        probe = backend.probe()
    except Exception as e:
        probe = Probe.no(f"plugin probe raised {type(e).__name__}: {e}")
    return Entry(ep.name, dist, backend, probe)


def endpoint_entry(name: str) -> Entry | None:
    """The entry for an address-named backend (openai:URL), probed now; None for any other name."""
    for prefix, target in ENDPOINTS.items():
        if name.startswith(prefix):
            module, attr = target.rsplit(":", 1)
            backend = getattr(importlib.import_module(module), attr)(name)
            return Entry(name, "builtin", backend, backend.probe())
    return None


def add_endpoints(entries: dict[str, Entry], names) -> dict[str, Entry]:
    """Adds an entry for each address-named backend in `names` that `entries` lacks."""
    for name in names:
        if name not in entries:
            entry = endpoint_entry(name)
            if entry is not None:
                entries[name] = entry
    return entries


def discover(requested=()) -> dict[str, Entry]:
    """Every backend this machine knows of, available or not, with the reason when not; plus the
    address-named backends (openai:URL) among `requested`."""
    found = {name: _builtin(name, target) for name, target in BUILTINS.items()}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:  # built-ins win: a plugin cannot shadow them
            dist = getattr(ep.dist, "name", None) or ep.value
            found[f"{ep.name}@{dist}"] = Entry(
                ep.name, dist, None, Probe.no(f"its name {ep.name!r} is taken by another adapter")
            )
            continue
        found[ep.name] = _plugin(ep)
    return add_endpoints(found, requested)


def get_backend(name: str, entries: dict[str, Entry] | None = None) -> Backend:
    """The named backend, ready to run; a one-line UsageError when unknown or unavailable."""
    entries = add_endpoints(entries if entries is not None else discover(), [name])
    entry = entries.get(name)
    if entry is None:
        raise UsageError(f"unknown backend {name!r}; known backends: {', '.join(entries)}")
    if not entry.available:
        raise UsageError(f"backend {name!r} is unavailable: {entry.probe.reason}")
    return entry.backend


def available_names(entries: dict[str, Entry] | None = None) -> list[str]:
    entries = entries if entries is not None else discover()
    return [n for n, e in entries.items() if e.available]
