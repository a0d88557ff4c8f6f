"""Probing (``transferlab.probe(...)``): frozen backbone features, then a head, evaluated on held-out images."""

from .._lazy import lazy_exports

_EXPORTS = {
    "ProbeConfig": "config",
    "ProbeResult": "result",
    "probe": "run",
    "run_probe": "run",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
