"""The engine: one training and inference loop for every model, run through one ``Runtime`` record."""

from .._lazy import lazy_exports

_EXPORTS = {
    "Runtime": "runtime",
    "resolve_runtime": "runtime",
    "CPU": "runtime",
    "Learner": "learner",
    "evaluate": "loop",
    "predict": "loop",
    "collect": "loop",
    "FitState": "loop",
    "Callback": "callbacks",
    "EarlyStopping": "callbacks",
    "Checkpoint": "callbacks",
    "EpochHook": "callbacks",
    "BatchProgress": "callbacks",
    "EMA": "callbacks",
    "TensorInputs": "inputs",
    "ImageInputs": "inputs",
    "CachedInputs": "inputs",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
