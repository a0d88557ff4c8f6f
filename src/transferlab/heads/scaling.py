"""Feature scaling for the probe heads that cannot explode on new images.

``standard``: each feature centred and divided by its standard deviation, but never by less
than the median feature's (``SCALE_FLOOR``). A feature (nearly) constant over a few training
images (a ReLU channel that stayed at 0) would otherwise be divided by ~0 and explode on new
images. With ``std + 1e-6`` the linear head got 0.175 on Flowers-17 at 2 images a class;
sklearn's ``StandardScaler`` gives a constant feature scale 1, but a nearly constant one still
explodes (linear head 0.250, logistic regression 0.400 there). Floors at 0.1 / 0.3 / 1 x the
median gave the linear head 0.675 / 0.725 / 0.717 there and 0.911 / 0.922 / 0.937 on ants vs
bees at 15 a class (3 seeds each; README, "Trained probe heads").

``global``: one mean and one scale for the whole matrix (the temperature head: each vector
keeps its shape). ``none``: as given.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

SCALINGS = ("standard", "global", "none")
SCALE_FLOOR = 1.0  # x the median scale of the varying features: the smallest scale a feature is divided by


def feature_scaling(X: np.ndarray, scaling: str = "standard") -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) of each feature for ``scaling``; no scale is below ``SCALE_FLOOR`` x the median one."""
    X = np.asarray(X, dtype=np.float64)
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}, got {scaling!r}")
    if scaling == "none":
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    if scaling == "global":  # one mean and one scale for every feature: the vectors keep their shape
        scale = X.std()
        return np.full(X.shape[1], X.mean()), np.full(X.shape[1], scale if scale > 0 else 1.0)
    scale = X.std(axis=0)
    varying = scale[scale > 0]  # (sparse features: most may be constant at 0 over a few images)
    floor = SCALE_FLOOR * np.median(varying) if varying.size else 1.0  # all constant: scale 1, as StandardScaler
    return X.mean(axis=0), np.maximum(scale, floor)


class FeatureScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """``StandardScaler`` with the scale floored at the median feature's (see the module's note)."""

    def __init__(self, scaling: str = "standard"):
        self.scaling = scaling

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.mean_, self.scale_ = feature_scaling(X, self.scaling)
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return ((X - self.mean_) / self.scale_).astype(X.dtype, copy=False)
