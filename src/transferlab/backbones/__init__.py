"""Backbones: timm models with offline ImageNet weights, their preprocessing and their layers."""

from .._lazy import lazy_exports
from .names import DEFAULT_BACKBONE, FRIENDLY_NAMES, FROM_SCRATCH

_EXPORTS = {
    "Backbone": "backbone",
    "load_backbone": "backbone",
    "Unit": "units",
    "FeatureLayer": "units",
    "resolve_timm_name": "names",
    "cached_hub_file": "weights",
    "lite_package_file": "weights",
}
__all__ = sorted([*_EXPORTS, "DEFAULT_BACKBONE", "FRIENDLY_NAMES", "FROM_SCRATCH"])
__getattr__ = lazy_exports(__name__, _EXPORTS)
