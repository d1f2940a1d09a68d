"""A dataset of one-step transitions that remembers which trajectory each row came from.

Rows live in a `TensorDict` of batch size [N]:

    obs       [N, O] float32   observation before the step
    action    [N, A] float32
    next_obs  [N, O] float32   observation after the step
    episode   [N]    int64     trajectory index (one-step data: every row its own episode)
    step      [N]    int64     position of the row inside its trajectory

On disk it is tensordict's memory-mapped layout plus `objmm.json` (env id, how it was made,
sizes); saving writes a temporary directory and renames it, so a crash never leaves half a
dataset behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from tensordict import TensorDict

from objmm import atomic
from objmm.envs import Task, get_task
from objmm.errors import ObjmmError
from objmm.seeding import derive_seed

METADATA_FILE = "objmm.json"
FIELDS = ("obs", "action", "next_obs", "episode", "step")


@dataclass
class TransitionDataset:
    data: TensorDict
    metadata: dict = field(default_factory=dict)

    @classmethod
    def from_tensors(
        cls,
        env_id: str,
        obs: torch.Tensor,
        action: torch.Tensor,
        next_obs: torch.Tensor,
        episode: torch.Tensor | None = None,
        step: torch.Tensor | None = None,
        **metadata,
    ) -> TransitionDataset:
        n = obs.shape[0]
        data = TensorDict(
            obs=torch.as_tensor(obs, dtype=torch.float32),
            action=torch.as_tensor(action, dtype=torch.float32),
            next_obs=torch.as_tensor(next_obs, dtype=torch.float32),
            episode=torch.arange(n) if episode is None else torch.as_tensor(episode, dtype=torch.int64),
            step=torch.zeros(n, dtype=torch.int64) if step is None else torch.as_tensor(step, dtype=torch.int64),
            batch_size=[n],
        )
        dataset = cls(data, {"env_id": env_id, **metadata})
        dataset.validate(get_task(env_id))
        return dataset

    @classmethod
    def from_trajectories(
        cls, env_id: str, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor, **metadata
    ) -> TransitionDataset:
        """Rows of N whole trajectories of T steps: obs, next_obs [N, T, O], action [N, T, A]."""
        obs, action, next_obs = (torch.as_tensor(x) for x in (obs, action, next_obs))
        n, t = obs.shape[:2]
        return cls.from_tensors(
            env_id,
            obs.reshape(n * t, -1),
            action.reshape(n * t, -1),
            next_obs.reshape(n * t, -1),
            episode=torch.arange(n).repeat_interleave(t),
            step=torch.arange(t).repeat(n),
            **metadata,
        )

    def __len__(self) -> int:
        return self.data.batch_size[0]

    @property
    def env_id(self) -> str:
        return self.metadata["env_id"]

    @property
    def name(self) -> str:
        return self.metadata.get("name", self.metadata.get("source", "dataset"))

    def validate(self, task: Task) -> None:
        """Raise a one-line ObjmmError if the rows do not fit `task` or hold NaN/inf."""
        if self.metadata.get("env_id") not in (None, task.env_id):
            raise ObjmmError(f"dataset {self.name!r} was made for {self.metadata['env_id']}, not {task.env_id}")
        expected = {"obs": task.obs_dim, "action": task.action_dim, "next_obs": task.obs_dim}
        for key, dim in expected.items():
            if key not in self.data.keys():
                raise ObjmmError(f"dataset {self.name!r} has no {key!r} field")
            shape = tuple(self.data[key].shape)
            if len(shape) != 2 or shape[1] != dim:
                raise ObjmmError(
                    f"dataset {self.name!r}: {key} has shape {list(shape)}, but {task.env_id} needs [N, {dim}]"
                )
            bad = ~torch.isfinite(self.data[key])
            if bad.any():
                row = int(bad.any(-1).nonzero()[0])
                raise ObjmmError(f"dataset {self.name!r}: {key} holds NaN or inf (first at row {row})")

    # ----------------------------------------------------------------- splits and trajectories
    def split(
        self, fraction: float, seed: int = 0, by: Literal["episodes", "rows"] = "episodes"
    ) -> tuple[TransitionDataset, TransitionDataset]:
        """Split into a `fraction` part and the rest.

        `episodes`: a random `fraction` of the whole trajectories go to the first part (fit's
        validation never sees a trajectory it trained on). `rows`: inside every trajectory,
        round((1 - fraction) x its length) random rows go to the rest (PETS: every trial's episode
        is trained on). Which rows of a trajectory are held out depends only on `seed` and the
        trajectory's episode number, so a growing dataset keeps the split of its older rows.
        """
        episode = self.data["episode"]
        if by == "episodes":
            episodes = episode.unique()
            generator = torch.Generator().manual_seed(derive_seed(seed, "split"))
            order = episodes[torch.randperm(len(episodes), generator=generator)]
            first = torch.isin(episode, order[: int(round(fraction * len(order)))])
        elif by == "rows":
            first = torch.ones(len(self), dtype=torch.bool)
            for rows in self.trajectories():
                held_out = int(round((1 - fraction) * len(rows)))
                generator = torch.Generator().manual_seed(derive_seed(seed, "split", int(episode[rows[0]])))
                first[rows[torch.randperm(len(rows), generator=generator)[:held_out]]] = False
        else:
            raise ObjmmError(f"split by {by!r}: use 'episodes' or 'rows'")
        meta = dict(self.metadata)
        return (
            TransitionDataset(self.data[first], {**meta, "split": f"first {fraction} by {by}"}),
            TransitionDataset(self.data[~first], {**meta, "split": f"rest {1 - fraction:.2f} by {by}"}),
        )

    def batches(
        self, mode: Literal["random", "trajectory"] = "random", batch_size: int = 1024, seed: int = 0
    ) -> list[torch.Tensor]:
        """Row indices of evaluation batches: random rows, `batch_size` a batch, or one whole
        trajectory a batch (Appendix C). One-step data (every row its own episode) has no
        trajectories to batch by, so it gets random batches in both modes."""
        if mode == "trajectory" and self.has_trajectories():
            return self.trajectories()
        generator = torch.Generator().manual_seed(derive_seed(seed, "batches"))
        return list(torch.randperm(len(self), generator=generator).split(batch_size))

    def trajectories(self) -> list[torch.Tensor]:
        """Row indices of each trajectory, in step order."""
        order = torch.argsort(self.data["episode"] * (int(self.data["step"].max()) + 1) + self.data["step"])
        _, counts = torch.unique_consecutive(self.data["episode"][order], return_counts=True)
        return list(torch.split(order, counts.tolist()))

    def has_trajectories(self) -> bool:
        return len(self) > 0 and int(self.data["step"].max()) > 0

    @property
    def episodes(self) -> int:
        return int(self.data["episode"].unique().numel())

    def head(self, rows: int) -> TransitionDataset:
        """The first `rows` rows (a resumed run drops rows written after its last finished trial)."""
        return TransitionDataset(self.data[:rows], dict(self.metadata))

    def concat(self, other: TransitionDataset) -> TransitionDataset:
        """Rows of both; `other`'s episodes are renumbered after this one's."""
        shifted = other.data.clone()
        offset = int(self.data["episode"].max()) + 1 if len(self) else 0
        shifted["episode"] = shifted["episode"] + offset
        return TransitionDataset(torch.cat([self.data, shifted]), dict(self.metadata))

    # ----------------------------------------------------------------- disk
    def checksum(self) -> str:
        """sha256 of every field's rows, in `FIELDS` order (written at save, checked at load)."""
        digest = hashlib.sha256()
        for key in FIELDS:
            digest.update(self.data[key].contiguous().numpy().tobytes())
        return digest.hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write atomically to the directory `path`, replacing an older objmm dataset there; a
        folder there that is not an objmm dataset is refused, never deleted. One process saves a
        path at a time (as one run owns its folder)."""
        path = Path(path)
        if path.exists() and not (path / METADATA_FILE).is_file():
            raise ObjmmError(f"{path} exists and is not an objmm dataset; choose another path (nothing was written)")
        path.parent.mkdir(parents=True, exist_ok=True)
        # one fixed name, not mkdtemp's random one: what a save killed while writing left there is
        # cleared by the next save of the same path, so kills never pile up copies beside a run
        tmp = path.with_name(f".{path.name}.saving")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o777)  # 0777 less the umask, as any folder
        try:
            self.data.memmap(tmp / "rows")
            meta = {**self.metadata, "size": len(self), "fields": list(FIELDS), "checksum": self.checksum()}
            (tmp / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            if path.exists():
                old = _previous(path)
                if old.exists():  # what a save killed while deleting its old dataset left: `path` is the newer
                    shutil.rmtree(old)
                os.replace(path, old)  # a kill here leaves the old dataset at `old`: load() puts it back
                os.replace(tmp, path)
                atomic.remove_folder(old)
            else:
                os.replace(tmp, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TransitionDataset:
        """Read a saved dataset without writing to it, after checking its files against its
        metadata (sizes, then the checksum): a truncated or altered dataset is named, not loaded."""
        path = Path(path)
        if not path.exists() and _previous(path).is_dir():  # a save was killed between its two renames
            os.replace(_previous(path), path)
        if not (path / METADATA_FILE).is_file():
            raise ObjmmError(f"{path} is not an objmm dataset (no {METADATA_FILE})")
        try:
            metadata = json.loads((path / METADATA_FILE).read_text())
            layout = json.loads((path / "rows" / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ObjmmError(f"dataset {path} is damaged: its metadata cannot be read ({error})") from None
        size = metadata.get("size")
        for key in FIELDS:
            file, spec = path / "rows" / f"{key}.memmap", layout.get(key)
            if spec is None or not file.is_file():
                raise ObjmmError(f"dataset {path} is damaged: no {key} rows")
            dtype = getattr(torch, spec["dtype"].removeprefix("torch."))
            expected = math.prod(spec["shape"]) * torch.empty((), dtype=dtype).element_size()
            if spec["shape"][0] != size or file.stat().st_size != expected:
                raise ObjmmError(
                    f"dataset {path} is damaged: {key} holds {file.stat().st_size} bytes, "
                    f"its metadata says {size} rows ({expected} bytes)"
                )
        data = TensorDict.load_memmap(path / "rows", mode="r").to_tensordict()
        for key in ("size", "fields"):
            metadata.pop(key, None)
        checksum = metadata.pop("checksum", None)
        dataset = cls(data, metadata)
        if checksum is not None and dataset.checksum() != checksum:
            raise ObjmmError(f"dataset {path} is damaged: its rows do not match the checksum written when it was saved")
        dataset.validate(get_task(dataset.env_id))
        return dataset


def _previous(path: Path) -> Path:
    """Where `save` keeps the dataset it replaces until the new one is in place."""
    return path.with_name(f".{path.name}.old")
