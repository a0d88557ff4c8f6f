"""Features: frozen-backbone feature vectors and their on-disk cache."""

from .cache import FeatureCache
from .extract import POOLINGS, FeatureExtractor, FeatureSet

__all__ = ["POOLINGS", "FeatureCache", "FeatureExtractor", "FeatureSet"]
