"""Fine-tuning: freeze policies, two-stage training, frozen-prefix caching, saved model bundles."""

from .bundle import Bundle, load_bundle
from .config import FinetuneConfig, FinetuneResult
from .run import finetune, run_finetune

__all__ = ["Bundle", "FinetuneConfig", "FinetuneResult", "finetune", "load_bundle", "run_finetune"]
