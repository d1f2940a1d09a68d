"""Transition datasets and their generators."""

from objmm.data.dataset import TransitionDataset
from objmm.data.generate import babbling_dataset, grid_dataset, random_rollouts, sampled_dataset
from objmm.data.sources import load_source

__all__ = [
    "TransitionDataset",
    "babbling_dataset",
    "grid_dataset",
    "load_source",
    "random_rollouts",
    "sampled_dataset",
]
