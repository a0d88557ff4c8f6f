"""Fine-tuning: freeze policies, two-stage training, frozen-prefix caching, saved model bundles."""

from .config import FinetuneConfig, FinetuneResult

__all__ = ["FinetuneConfig", "FinetuneResult"]
