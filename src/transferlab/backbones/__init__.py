"""Backbones: timm models with offline ImageNet weights, their preprocessing and their layers."""

from .backbone import Backbone, load_backbone
from .layers import Layer, LayerView
from .names import DEFAULT_BACKBONE, FRIENDLY_NAMES, FROM_SCRATCH, resolve_timm_name
from .weights import cached_hub_file, lite_package_file

__all__ = [
    "Backbone",
    "DEFAULT_BACKBONE",
    "FRIENDLY_NAMES",
    "FROM_SCRATCH",
    "Layer",
    "LayerView",
    "cached_hub_file",
    "lite_package_file",
    "load_backbone",
    "resolve_timm_name",
]
