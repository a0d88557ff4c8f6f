"""Ranking candidates before training: transferability scores from cached frozen features."""

from .scores import leep, logme, nce

__all__ = ["leep", "logme", "nce"]
