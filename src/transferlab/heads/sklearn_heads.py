"""scikit-learn heads on frozen features, each with the scaling that makes it fast and sound.

- ``logreg``: standardise (the scale floored, ``heads.scaling``: a feature constant over a few
  training images cannot explode on new ones), then L2-regularised logistic regression (C=0.1
  by default). With sklearn's ``StandardScaler`` instead: Flowers-17, 5 classes, 2 images a
  class, 0.400 / 0.450 / 0.675 (3 seeds) against 0.725 / 0.625 / 0.800.
- ``svm``: L2-normalise, then a linear SVM. (Standardising before ``LinearSVC``'s
  primal solver took 213 s on 1347x1280 features; L2 normalisation 0.16 s.)
- ``knn``: L2-normalise, then k nearest neighbours (cosine distance in effect).
- multi-label data: ``logreg`` one-vs-rest, one binary logistic regression per label on the
  same standardised features (each label's probability its own sigmoid).
"""

from __future__ import annotations

from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import Normalizer
from sklearn.svm import LinearSVC

from .scaling import FeatureScaler


def logreg_head(C: float = 0.1, seed: int = 0) -> Pipeline:
    return make_pipeline(FeatureScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))


def one_vs_rest_logreg_head(C: float = 0.1, seed: int = 0) -> Pipeline:
    """``logreg`` for multi-label targets (multi-hot rows): one binary logistic regression per label."""
    return make_pipeline(FeatureScaler(), OneVsRestClassifier(LogisticRegression(C=C, max_iter=2000,
                                                                                 random_state=seed)))


def svm_head(C: float = 1.0, seed: int = 0) -> Pipeline:
    return make_pipeline(Normalizer(), LinearSVC(C=C, random_state=seed))


def knn_head(k: int = 5) -> Pipeline:
    return make_pipeline(Normalizer(), KNeighborsClassifier(n_neighbors=k))
