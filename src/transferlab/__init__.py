"""transferlab: transfer learning for image classification, one command or one call per experiment.

Names are imported on first use, so ``transferlab --help`` and error messages do
not wait for torch and timm to load.
"""

from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.2.0"
_EXPORTS = {
    "Backbone": "backbones",
    "load_backbone": "backbones",
    "DatasetSplits": "data",
    "load_dataset": "data",
    "UserError": "errors",
    "FeatureExtractor": "features",
    "ProbeConfig": "probing",
    "ProbeResult": "probing",
    "probe": "probing",
    "run_probe": "probing",
    "Runtime": "engine",
    "resolve_runtime": "engine",
    "FinetuneConfig": "finetune",
    "FinetuneResult": "finetune",
    "TransferModel": "finetune",
    "run_finetune": "finetune",
    "load_bundle": "finetune",
    "Predictor": "predictor",
    "Prediction": "predictor",
    "tune_allocator": "allocator",
    "run_study_file": "study",
}

# Fine-tuning is the package ``transferlab.finetune`` (``finetune.finetune(...)``, ``run_finetune``):
# a top-level function of that name would be shadowed by the package once it is imported.
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
