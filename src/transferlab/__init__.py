"""transferlab: transfer learning for image classification, one command or one call per experiment."""

from .backbones import Backbone, load_backbone
from .data import DatasetSplits, load_dataset
from .errors import UserError
from .features import FeatureExtractor
from .probe import ProbeConfig, ProbeResult, probe, run_probe

__version__ = "0.1.0"

__all__ = [
    "Backbone",
    "DatasetSplits",
    "FeatureExtractor",
    "ProbeConfig",
    "ProbeResult",
    "UserError",
    "load_backbone",
    "load_dataset",
    "probe",
    "run_probe",
]
