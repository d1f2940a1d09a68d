"""What a model, a planner and a dataset generator need to know about one environment.

A `Task` is data, not behaviour: the cartpole and the half cheetah differ only in the values
they put here (reward, model input preprocessing, which outputs are deltas, the state box
used for grid and sampled data), so the rest of objmm never branches on the env.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch

from objmm.errors import ObjmmError


@dataclass(frozen=True)
class Task:
    env_id: str
    #: what a reader calls it (figure titles)
    name: str
    obs_dim: int
    action_dim: int
    action_low: float
    action_high: float
    episode_steps: int
    #: (next_obs [..., O], action [..., A], **env_kwargs) -> reward [...]
    reward_fn: Callable[..., torch.Tensor]
    #: obs [..., O] -> model features [..., F] (PETS's input preprocessing)
    model_inputs: Callable[[torch.Tensor], torch.Tensor]
    model_input_dim: int
    #: per observation entry: the model predicts its change (True) or its next value (False)
    delta_targets: tuple[bool, ...]
    #: observation box [low, high] per entry, covering the task, for grid and sampled datasets
    state_low: tuple[float, ...]
    state_high: tuple[float, ...]
    #: a short name for each observation entry (plots, histograms)
    obs_names: tuple[str, ...] = ()
    #: observation entries that are angles (grid data slices them without repeating -pi and pi)
    periodic_dims: tuple[int, ...] = ()
    #: the paper's "expert" (solved) bar on an episode's reward (Sec. 4: cartpole 179, half cheetah 10000)
    expert_reward: float = float("inf")
    #: Table 2: transitions in the expert dataset, and trials of the PETS run whose data is the on-policy set
    expert_size: int = 0
    on_policy_trials: int = 0
    #: Table 1's CEM planner: horizon, population, elites, iterations
    table1_cem: tuple[int, int, int, int] = (25, 400, 40, 5)
    #: Fig. 3's Pearson rho (LL against reward) per dataset, printed in the paper's other version
    #: (../shared/REFERENCE.md), keyed by the dataset names the population configs use
    paper_fig3_rho: tuple[tuple[str, float], ...] = ()
    #: Appendix C's Pearson rho on the on-policy set per validation batch mode (Fig. 14, Fig. 15)
    paper_app_c_rho: tuple[tuple[str, float], ...] = ()

    def reward(self, **env_kwargs) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The batched torch reward of the env made with `env_kwargs` (e.g. x_goal); env settings that
        are not the reward's (e.g. reset_noise_scale) are left out."""
        accepted = inspect.signature(self.reward_fn).parameters
        return partial(self.reward_fn, **{k: v for k, v in env_kwargs.items() if k in accepted})

    def action_bounds(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        low = torch.full((self.action_dim,), self.action_low, device=device)
        return low, torch.full((self.action_dim,), self.action_high, device=device)


@dataclass
class EnvSpec:
    """The `env:` section of every objmm config: which env, made with which settings. The CLI links
    it into the model (the reward the controller plans for) and the data (generated datasets).

    Args:
        id: an objmm env id (`objmm/PETSCartpole-v0`, `objmm/PETSHalfCheetah-v0`).
        kwargs: the env's settings, e.g. `{x_goal: 0.5}` (the cartpole's goal, appendix B) or
            `{reset_noise_scale: 0.0}`.
    """

    id: str = "objmm/PETSCartpole-v0"
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        get_task(self.id)
        if self.kwargs:  # an unknown or ill-typed setting is named here, not deep inside gymnasium
            import gymnasium

            try:
                gymnasium.make(self.id, **self.kwargs).close()
            except (TypeError, ValueError) as error:
                raise ObjmmError(f"env.kwargs {self.kwargs} do not fit {self.id}: {error}") from None


_TASKS: dict[str, Task] = {}
#: makers of tasks whose ids carry a number (`objmm/PETSCartpole-d4-v0`): id -> Task, or None if not theirs
_FAMILIES: list = []


def register_task(task: Task) -> None:
    _TASKS[task.env_id] = task


def register_family(make, ids: str) -> None:
    """`make(env_id)`: the Task of one of the family's ids (`ids` says which, for errors), else None."""
    _FAMILIES.append((make, ids))


def get_task(env_id: str) -> Task:
    """The task of a registered objmm env id (made on first use for a family's id); a clear error
    names the known ones otherwise."""
    if env_id not in _TASKS:
        for make, _ in _FAMILIES:
            task = make(env_id)
            if task is not None:
                register_task(task)
                break
    try:
        return _TASKS[env_id]
    except KeyError:
        known = ", ".join([*sorted(_TASKS), *(ids for _, ids in _FAMILIES)])
        raise ObjmmError(f"unknown env id {env_id!r}; known: {known}") from None


def known_env_ids() -> list[str]:
    return sorted(_TASKS)
