"""What models do along an expert trajectory: the action the planner picks from each expert state,
and each model's one-step prediction there (the paper's Fig. 6 and Appendix E).

K models and all T states go through the planner in one call: rows are K blocks of T states, one
block per model (`StackedDynamics`), and every model's planner meets the same samples
(`CEMPlanner.seed_noise`), so two models' plans differ only because the models differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from objmm.data import TransitionDataset
from objmm.data.sources import load_expert
from objmm.envs import get_task
from objmm.models import StackedDynamics
from objmm.planning import CEMConfig, CEMPlanner
from objmm.plots import plt, save_figure_atomically
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
    planner.seed_noise(derive_seed(seed, "along-expert"), blocks=k)
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
    figure = along_expert_figure(
        names, found["actions"], found["expert_actions"], found["predicted"], found["next_obs"], task.obs_names, title
    )
    return save_figure_atomically(figure, path)


def along_expert_figure(
    names: Sequence[str],
    actions: np.ndarray,
    expert_actions: np.ndarray,
    predicted: np.ndarray,
    next_obs: np.ndarray,
    obs_names: Sequence[str],
    title: str = "",
):
    """Fig. 6 / Appendix E: along one expert trajectory, the action each model's planner picks from
    every expert state (top, beside the expert's own), and each model's predicted next state for the
    expert's action (one panel per observation entry, beside the true one)."""
    steps = np.arange(len(expert_actions))
    panels = 1 + next_obs.shape[-1]
    fig, axes = plt.subplots(panels, 1, figsize=(8, 1.9 * panels), sharex=True, squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, expert_actions[:, 0], color="black", lw=1.2, label="expert")
    for name, acts in zip(names, actions, strict=True):
        ax.plot(steps, acts[:, 0], lw=1, alpha=0.85, label=name)
    ax.set_ylabel("planned action")
    ax.legend(fontsize="x-small", ncol=len(names) + 1, loc="upper right")
    for d in range(next_obs.shape[-1]):
        ax = axes[1 + d][0]
        ax.plot(steps, next_obs[:, d], color="black", lw=1.2, label="true")
        for name, pred in zip(names, predicted, strict=True):
            ax.plot(steps, pred[:, d], lw=1, alpha=0.85, label=name)
        ax.set_ylabel(f"next {obs_names[d] if d < len(obs_names) else d}", fontsize="small")
    axes[-1][0].set_xlabel("step of the expert trajectory")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
