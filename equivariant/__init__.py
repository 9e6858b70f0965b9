"""Equivariant networks usable as policy, critic and score networks."""

from equivariant.egnn import EGNN, EGNNLayer, EGNNScore

__all__ = ["EGNN", "EGNNLayer", "EGNNScore"]
