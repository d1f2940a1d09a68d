"""Transition datasets and their generators."""

from objmm.data.dataset import TransitionDataset
from objmm.data.generate import grid_dataset, random_rollouts
from objmm.data.sources import load_source

__all__ = ["TransitionDataset", "grid_dataset", "load_source", "random_rollouts"]
