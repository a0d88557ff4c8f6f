"""Label issues by confident learning (Northcutt, Jiang and Chuang, JAIR 2021), implemented from the paper.

From out-of-fold predicted probabilities: each class's threshold is the mean probability of that class over
the images given it (its mean self-confidence); an image counts in the confident joint at (given label, the
most probable class whose probability reaches its threshold); the joint is calibrated to the label counts;
then, per given class i and other class j, the round(N * Q[i, j]) images labelled i with the largest margin
p(j) - p(i) are flagged ("prune by noise rate"), where p(j) > p(i). Issues are ranked by self-confidence, lowest first.
(cleanlab is the authors' AGPL-3.0 library; transferlab neither uses nor copies it.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class LabelIssue:
    index: int
    given: int
    suggested: int
    self_confidence: float  # the out-of-fold probability of the given label


def class_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """t_j: the mean probability of class j over the images labelled j."""
    classes = probabilities.shape[1]
    return np.array([probabilities[labels == j, j].mean() if np.any(labels == j) else 1.0 for j in range(classes)])


def confident_joint(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """C[i, j]: images labelled i whose most probable class at or above its threshold is j."""
    classes = probabilities.shape[1]
    above = probabilities >= class_thresholds(probabilities, labels)[None, :]
    confident = np.where(above, probabilities, -np.inf)
    counted = above.any(1)
    joint = np.zeros((classes, classes), np.int64)
    np.add.at(joint, (labels[counted], confident[counted].argmax(1)), 1)
    return joint


def calibrated_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Q: the confident joint with each row rescaled to its label count, normalised to sum to one."""
    counts = np.bincount(labels, minlength=joint.shape[0]).astype(np.float64)
    rows = joint.sum(1, keepdims=True).astype(np.float64)
    calibrated = np.where(rows > 0, joint / np.where(rows > 0, rows, 1.0), 0.0) * counts[:, None]
    return calibrated / calibrated.sum()


def find_label_issues(probabilities: np.ndarray, labels: np.ndarray) -> list[LabelIssue]:
    """Images whose given label is likely wrong, lowest self-confidence first."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    n, classes = probabilities.shape
    q = calibrated_joint(confident_joint(probabilities, labels), labels)
    flagged: dict[int, int] = {}
    for i in range(classes):
        members = np.flatnonzero(labels == i)
        for j in range(classes):
            if i == j:
                continue
            count = int(round(n * q[i, j]))
            if count == 0 or len(members) == 0:
                continue
            margin = probabilities[members, j] - probabilities[members, i]
            for k in np.argsort(-margin, kind="stable")[:count]:
                if margin[k] > 0:  # only where j is more probable than the given label
                    flagged.setdefault(int(members[k]), j)
    issues = [LabelIssue(index, int(labels[index]), suggested, float(probabilities[index, labels[index]]))
              for index, suggested in flagged.items()]
    return sorted(issues, key=lambda issue: issue.self_confidence)
