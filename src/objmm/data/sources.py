"""Turn a dataset source named in a config into a dataset.

A source is either a path to a saved dataset, or a generator spec:
``grid`` / ``grid:7`` (points per dimension), ``random:200x25`` (episodes x horizon from the reset
state), ``babbling:200x10`` (rollouts x horizon from the noise-free initial state, appendix A) or
``sampled:200000`` (uniform over the task's box).
"""

from __future__ import annotations

import re
from pathlib import Path

from objmm.data.dataset import TransitionDataset
from objmm.data.generate import babbling_dataset, grid_dataset, random_rollouts, sampled_dataset
from objmm.errors import ObjmmError

_GRID = re.compile(r"grid(?::(\d+))?")
_ROLLOUTS = re.compile(r"(random|babbling):(\d+)x(\d+)")
_SAMPLED = re.compile(r"sampled:(\d+)")


def load_source(source: str, env_id: str, seed: int = 0, **env_kwargs) -> TransitionDataset:
    if m := _GRID.fullmatch(source):
        dataset = grid_dataset(env_id, int(m.group(1) or 7), **env_kwargs)
    elif m := _ROLLOUTS.fullmatch(source):
        make = random_rollouts if m.group(1) == "random" else babbling_dataset
        dataset = make(env_id, int(m.group(2)), int(m.group(3)), seed=seed, **env_kwargs)
    elif m := _SAMPLED.fullmatch(source):
        dataset = sampled_dataset(env_id, int(m.group(1)), seed=seed, **env_kwargs)
    elif Path(source).exists():
        dataset = TransitionDataset.load(source)
    else:
        raise ObjmmError(
            f"dataset source {source!r} is neither a saved dataset directory nor one of "
            "'grid', 'grid:N', 'random:EPISODESxHORIZON', 'babbling:ROLLOUTSxHORIZON', 'sampled:N'"
        )
    if dataset.env_id != env_id:
        raise ObjmmError(f"dataset {source!r} was made for {dataset.env_id}, but the model is for {env_id}")
    return dataset


def load_expert(
    source: str, env_id: str, trajectories: int = 1, what: str = "the expert dataset", hint: str = ""
) -> tuple[TransitionDataset, list]:
    """A saved expert dataset (`objmm data expert`) of `env_id` and its trajectories' row indices,
    checked: it exists, it is of `env_id`, and it holds at least `trajectories` trajectories. `what`
    names the setting in the errors; `hint` ends the one for a missing dataset."""
    if not Path(source).exists():
        raise ObjmmError(f"{what}: no expert dataset at {source} (make one with `objmm data expert`{hint})")
    expert = TransitionDataset.load(source)
    if expert.env_id != env_id:
        raise ObjmmError(f"{what} {source} is an expert dataset of {expert.env_id}, but the model is for {env_id}")
    rows = expert.trajectories() if expert.has_trajectories() else []
    if len(rows) < trajectories:
        raise ObjmmError(f"{what} {source} holds {len(rows)} trajectories, fewer than the {trajectories} needed")
    return expert, rows
