"""Auditing a dataset before training: label issues (confident learning), near-duplicates, class overlap."""

from .confident import LabelIssue, find_label_issues
from .duplicates import DuplicatePair, find_duplicates

__all__ = ["DuplicatePair", "LabelIssue", "find_duplicates", "find_label_issues"]
