"""Fine-tuning: freeze policies, two-stage training, frozen-prefix caching, saved model bundles."""

from .._lazy import lazy_exports

_EXPORTS = {
    "Bundle": "bundle",
    "load_bundle": "bundle",
    "FinetuneConfig": "config",
    "FinetuneResult": "result",
    "TransferModel": "model",
    "finetune": "run",
    "run_finetune": "run",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
