"""Transferability scores from frozen features: how well a candidate will transfer, before training it.

- ``logme``: the log marginal evidence of a Bayesian linear model of the one-hot labels on the features
  (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021), with
  the fixed-point updates of alpha and beta of their later paper (arXiv 2110.10545): one tridiagonal
  reduction of the features' Gram matrix, then each class's iteration by tridiagonal solves (float64).
- ``leep``: the log expected empirical prediction of the source classifier's softmax (Nguyen et al., 2020).
- ``nce``: the negative conditional entropy of the target labels given the source classifier's hard
  predictions (Tran et al., 2019).
Higher is better for all three.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.linalg import lapack

EPSILON = 1e-5  # the reference's guard on the denominators of alpha and beta
MAX_ITERATIONS = 11  # the reference's cap: it converges in two or three steps
TOLERANCE = 1e-3  # relative change of alpha / beta at which a class stops


def logme(features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """The LogME score (mean over classes of the per-sample log evidence) of ``features`` (N, D) for integer
    ``labels`` (N,).

    The reference decomposes the features once (SVD) and evaluates every step's sums over the singular values.
    Those sums are quadratic forms of (K + tI)^-1 for the smaller Gram matrix K (F^T F when N > D, else F F^T,
    as the reference switches), so here K is reduced once to tridiagonal form T = Q^T K Q (LAPACK ``sytrd``:
    no eigenvectors, a fifth of an eigendecomposition's time at D = 320), its eigenvalues come from T
    (``sterf``), and each class's step is one O(D) tridiagonal solve (``ptsv``). Every class stops at its own
    step, as the reference's per-class loop does. float64 throughout."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64, copy=False)
    n, d = f.shape
    targets = np.zeros((n, int(y.max()) + 1))
    targets[np.arange(n), y] = 1.0
    primal = n > d  # the weights' side: K = F^T F (D x D) and right-hand sides F^T y; else K = F F^T and y
    from ..probing.run import single_threaded_blas

    with single_threaded_blas():  # as the probes are timed; a busy thread pool cost up to 50x
        gram, rhs = (f.T @ f, f.T @ targets) if primal else (f @ f.T, targets)
        diagonal, off, rotated = _tridiagonal(gram, rhs)
        sigma, info = lapack.dsterf(diagonal, off)
    sigma = sigma[sigma > 1e-20]  # the reference's s > 1e-10: squared singular values
    return _evidence(_Tridiagonal(diagonal, off, rotated), sigma, targets.sum(0), n, d, primal)


def _tridiagonal(gram: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(diagonal, off-diagonal, Q^T rhs) of the reduction gram = Q T Q^T (Q applied as its reflectors, as
    LAPACK's ``ormtr`` does for the lower triangle)."""
    if len(gram) == 1:
        return gram[0].copy(), np.zeros(0), rhs.copy()
    lwork = int(lapack.dsytrd_lwork(len(gram), lower=1)[0])
    reflectors, diagonal, off, tau, info = lapack.dsytrd(gram, lower=1, lwork=lwork)
    rotated = rhs.copy()
    rotated[1:], _, info = lapack.dormqr("L", "T", reflectors[1:, :-1], tau, rhs[1:],
                                        lwork=max(1, rhs.shape[1]) * 64)
    return diagonal, off, rotated


class _Tridiagonal:
    """T and the rotated right-hand sides: ``solve(t, classes)`` is (T + t_c I)^-1 r_c for each class c.

    The classes' shifted systems are solved as one block-diagonal tridiagonal system (the off-diagonal zero
    between blocks): one LAPACK call per step instead of one per class. Everything that does not change between
    steps (the right-hand sides class by class, the blocks' off-diagonal) is laid out once."""

    def __init__(self, diagonal: np.ndarray, off: np.ndarray, rotated: np.ndarray):
        self.diagonal = diagonal
        self.rhs = np.ascontiguousarray(rotated.T)  # (classes, D): one class's right-hand side per row
        classes, size = self.rhs.shape
        blocks = np.zeros((classes, size))
        blocks[:, :-1] = off
        self.blocks = blocks.ravel()[:-1]  # every block's off-diagonal is T's: the first k blocks serve k classes

    def solve(self, t: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(z, r): each class's solution and right-hand side, one class per row."""
        k, size = len(classes), len(self.diagonal)
        rhs = self.rhs[classes]
        z = lapack.dptsv((self.diagonal + t[:, None]).ravel(), self.blocks[:k * size - 1], rhs.reshape(-1, 1),
                         overwrite_d=1)[2]
        return z.reshape(k, size), rhs


def _evidence(system: _Tridiagonal, sigma: np.ndarray, counts: np.ndarray, n: int, d: int, primal: bool) -> float:
    """The fixed-point iteration of alpha and beta for every class at once, then the mean log evidence.

    With z = (K + tI)^-1 r, t = alpha / beta, the reference's sums are: on the weights' side (r = F^T y) the
    squared norm of the posterior mean m2 = |z|^2 and the residual res2 = |y|^2 - z.r - t|z|^2; on the samples'
    side (r = y) m2 = z.y - t|z|^2 and res2 = t^2 |z|^2. ``counts``: |y|^2 of each class's one-hot column. Each
    class stops at its own step, as the reference's per-class loop does."""
    classes = len(counts)
    alpha, beta = np.ones(classes), np.ones(classes)
    m2, res2 = np.zeros(classes), np.zeros(classes)
    active = np.arange(classes)
    for _ in range(MAX_ITERATIONS):
        t = alpha[active] / beta[active]
        z, r = system.solve(t, active)
        zz, zr = np.einsum("kd,kd->k", z, z), np.einsum("kd,kd->k", z, r)
        m2[active], res2[active] = ((zz, counts[active] - zr - t * zz) if primal else (zr - t * zz, t * t * zz))
        gamma = (sigma / (sigma + t[:, None])).sum(1)
        alpha[active] = gamma / (m2[active] + EPSILON)
        beta[active] = (n - gamma) / (res2[active] + EPSILON)
        active = active[np.abs(alpha[active] / beta[active] - t) / t > TOLERANCE]
        if not len(active):
            break
    evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - 0.5 * np.log(alpha + beta * sigma[:, None]).sum(0)
                - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * math.log(2 * math.pi)) / n
    return float(evidence.mean())


def leep(source_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: mean log of the target label's probability under the empirical P(y | source class) mixed by the
    source classifier's softmax ``source_probabilities`` (N, Z)."""
    theta = torch.as_tensor(source_probabilities, dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    targets = torch.nn.functional.one_hot(y, int(y.max()) + 1).to(torch.float64)  # (N, C)
    joint = theta.T @ targets / len(y)  # P(z, y), (Z, C)
    conditional = joint / joint.sum(1, keepdim=True).clamp(min=1e-300)  # P(y | z)
    expected = theta @ conditional  # (N, C)
    return float(expected.gather(1, y[:, None]).clamp(min=1e-300).log().mean())


def nce(source_probabilities: np.ndarray, labels: np.ndarray) -> float:
    """NCE: -H(Y | Z) with Z the source classifier's top class, from the empirical joint counts."""
    z = np.asarray(source_probabilities).argmax(1)
    y = np.asarray(labels)
    joint = np.zeros((int(z.max()) + 1, int(y.max()) + 1))
    np.add.at(joint, (z, y), 1.0)
    joint /= len(y)
    marginal = joint.sum(1, keepdims=True)
    mask = joint > 0
    return float((joint[mask] * np.log((joint / np.where(marginal > 0, marginal, 1.0))[mask])).sum())
