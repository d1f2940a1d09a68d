"""Turn a dataset source named in a config into a dataset.

A source is either a path to a saved dataset, or a generator spec:
``grid`` / ``grid:7`` (points per dimension) or ``random:200x25`` (episodes x horizon).
"""

from __future__ import annotations

import re
from pathlib import Path

from objmm.data.dataset import TransitionDataset
from objmm.data.generate import grid_dataset, random_rollouts
from objmm.errors import ObjmmError

_GRID = re.compile(r"grid(?::(\d+))?")
_RANDOM = re.compile(r"random:(\d+)x(\d+)")


def load_source(source: str, env_id: str, seed: int = 0, **env_kwargs) -> TransitionDataset:
    if m := _GRID.fullmatch(source):
        dataset = grid_dataset(env_id, int(m.group(1) or 7), **env_kwargs)
    elif m := _RANDOM.fullmatch(source):
        dataset = random_rollouts(env_id, int(m.group(1)), int(m.group(2)), seed=seed, **env_kwargs)
    elif Path(source).exists():
        dataset = TransitionDataset.load(source)
    else:
        raise ObjmmError(
            f"dataset source {source!r} is neither a saved dataset directory nor one of "
            "'grid', 'grid:N', 'random:EPISODESxHORIZON'"
        )
    if dataset.env_id != env_id:
        raise ObjmmError(f"dataset {source!r} was made for {dataset.env_id}, but the model is for {env_id}")
    return dataset
