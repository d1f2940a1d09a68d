"""Fitting dynamics models with Lightning, and watching the controller's reward as they train."""

from objmm.training.datamodule import TransitionDataModule
from objmm.training.module import DynamicsModule
from objmm.training.reward_callback import EpisodeRewardCallback

__all__ = ["DynamicsModule", "EpisodeRewardCallback", "TransitionDataModule"]
