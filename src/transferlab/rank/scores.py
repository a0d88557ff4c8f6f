"""Transferability scores from frozen features: how well a candidate will transfer, before training it.

- ``logme``: the log marginal evidence of a Bayesian linear model of the one-hot labels on the features
  (You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021), with
  the fixed-point updates of alpha and beta of their later paper (arXiv 2110.10545): one SVD of the
  features, then every class's iteration at once (float64, torch).
- ``leep``: the log expected empirical prediction of the source classifier's softmax (Nguyen et al., 2020).
- ``nce``: the negative conditional entropy of the target labels given the source classifier's hard
  predictions (Tran et al., 2019).
Higher is better for all three.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch

EPSILON = 1e-5  # the reference's guard on the denominators of alpha and beta
MAX_ITERATIONS = 11  # the reference's cap: it converges in two or three steps
TOLERANCE = 1e-3  # relative change of alpha / beta at which a class stops


@contextmanager
def one_torch_thread():
    """Torch on one thread for the small float64 decompositions: under load its thread pool cost up to 50x
    (an eigendecomposition of a 1280 x 1280 Gram matrix took 56 s on 2 busy cores, 1.1 s on one thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def logme(features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """The LogME score (mean over classes of the per-sample log evidence) of ``features`` (N, D) for integer
    ``labels`` (N,).

    One eigendecomposition per call, shared by every class: of the D x D Gram matrix F^T F when N > D (the
    right singular vectors; u^T y = v^T F^T y / s), else of the N x N one F F^T, as the authors' reference
    switches on N vs D. The Gram matrix is numpy's ``A.T @ A`` (BLAS ``syrk``: half a general product's
    work), in float64 like everything after it."""
    f = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64, copy=False)
    n, d = f.shape
    targets = np.zeros((n, int(y.max()) + 1))
    targets[np.arange(n), y] = 1.0
    with one_torch_thread():
        if n > d:  # eigenvectors of the smaller Gram matrix: F^T F (D x D) gives v, and u^T y = v^T F^T y / s
            sigma, v = torch.linalg.eigh(torch.from_numpy(f.T @ f))  # eigenvalues = squared singular values
            keep = sigma.clamp(min=0).sqrt() > 1e-10
            sigma, v = sigma[keep], v[:, keep]
            x = (v.T @ torch.from_numpy(targets.T @ f).T) / sigma.sqrt()[:, None]  # (k, C)
        else:  # F F^T (N x N) gives u directly
            sigma, u = torch.linalg.eigh(torch.from_numpy(f @ f.T))
            keep = sigma.clamp(min=0).sqrt() > 1e-10
            sigma, u = sigma[keep], u[:, keep]
            x = u.T @ torch.from_numpy(targets)  # (k, C)
        return _evidence(sigma, x, torch.from_numpy(targets.sum(0)), n, d)


def _evidence(sigma: torch.Tensor, x: torch.Tensor, counts: torch.Tensor, n: int, d: int) -> float:
    """The fixed-point iteration of alpha and beta for every class at once, then the mean log evidence.

    ``counts``: each class's images, ||y||^2 of its one-hot column. Each class stops at its own step, as the
    reference's per-class loop does."""
    sigma = sigma[:, None]
    x2 = x**2
    residual_outside = counts - x2.sum(0)  # the part of y outside the span of the features
    classes = x.shape[1]
    alpha = torch.ones(classes, dtype=torch.float64)
    beta = torch.ones(classes, dtype=torch.float64)
    m2 = torch.zeros_like(alpha)
    res2 = torch.zeros_like(alpha)
    active = torch.ones(classes, dtype=torch.bool)
    for _ in range(MAX_ITERATIONS):
        t = alpha / beta
        shrink = sigma / (sigma + t)  # sigma / (sigma + t); 1 / (1 + sigma / t) is 1 - shrink
        gamma = shrink.sum(0)
        new_m2 = (shrink**2 * x2 / sigma).sum(0)
        new_res2 = ((1 - shrink) ** 2 * x2).sum(0) + residual_outside
        alpha = torch.where(active, gamma / (new_m2 + EPSILON), alpha)
        beta = torch.where(active, (n - gamma) / (new_res2 + EPSILON), beta)
        m2, res2 = torch.where(active, new_m2, m2), torch.where(active, new_res2, res2)
        active &= (alpha / beta - t).abs() / t > TOLERANCE
        if not active.any():
            break
    evidence = (d / 2.0 * alpha.log() + n / 2.0 * beta.log() - 0.5 * (alpha + beta * sigma).log().sum(0)
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
