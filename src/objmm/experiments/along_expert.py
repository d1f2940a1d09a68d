"""What models do along an expert trajectory: the action the planner picks from each expert state,
and each model's one-step prediction there (the paper's Fig. 6 and Appendix E).

K models and all T states go through the planner in one call: rows are K blocks of T states, one
block per model (`StackedDynamics`), and every model's planner meets the same samples
(`CEMPlanner.common_noise`), so two models' plans differ only because the models differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from objmm.data import TransitionDataset
from objmm.data.sources import load_expert
from objmm.envs import get_task
from objmm.models import StackedDynamics
from objmm.planning import CEMConfig, CEMPlanner
from objmm.plots import plot_along_expert
from objmm.seeding import derive_seed


def expert_trajectory(source: str, env_id: str, what: str = "the expert dataset", index: int = 0) -> TransitionDataset:
    """Trajectory `index` of a saved expert dataset of `env_id`, in step order (`what`: the setting that
    named it, for errors)."""
    expert, trajectories = load_expert(source, env_id, index + 1, what)
    return TransitionDataset(expert.data[trajectories[index]], dict(expert.metadata))


@torch.no_grad()
def along_expert(
    modules, trajectory: TransitionDataset, cem: CEMConfig, env_kwargs: dict, seed: int, device: str = "cpu"
) -> dict[str, np.ndarray]:
    """For K models: `actions` [K, T, A], the first planned action from each expert state (planned
    from scratch, no warm start), and `predicted` [K, T, O], each model's next obs for the expert's
    own action; with the expert's `expert_actions` [T, A], `obs` and `next_obs` [T, O]."""
    task = get_task(trajectory.env_id)
    k = len(modules)
    stacked = StackedDynamics([m.model for m in modules]).to(device)
    obs = trajectory.data["obs"].to(device)
    action = trajectory.data["action"].to(device)
    planner = CEMPlanner.for_dynamics(task, stacked.predict_next, cem, env_kwargs, device)
    planner.common_noise(derive_seed(seed, "along-expert"), blocks=k)
    actions = planner.plan(obs.repeat(k, 1)).view(k, len(obs), -1)
    predicted = stacked.predict_next(obs.repeat(k, 1), action.repeat(k, 1)).view(k, len(obs), -1)
    return {
        "actions": actions.cpu().numpy(),
        "predicted": predicted.cpu().numpy(),
        "expert_actions": action.cpu().numpy(),
        "obs": obs.cpu().numpy(),
        "next_obs": trajectory.data["next_obs"].numpy(),
    }


def plot_models_along_expert(
    names: list[str], found: dict[str, np.ndarray], env_id: str, path: Path, title: str
) -> Path:
    task = get_task(env_id)
    return plot_along_expert(
        names,
        found["actions"],
        found["expert_actions"],
        found["predicted"],
        found["next_obs"],
        list(task.obs_names),
        path=path,
        title=title,
    )
