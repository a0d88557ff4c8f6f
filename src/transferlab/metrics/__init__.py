"""Scores beyond single-label accuracy (``multilabel``: average precision, F1 at a tuned threshold)."""
