"""The paper's pool of uniform (state, action) tuples, and training sets cut from it by distance (Sec. 5, Fig. 8).

"We generated 25e6 tuples of (s, a, s') by uniformly sampling across the state-action space of
cartpole. We sorted this data by taking the minimum orthogonal distance, d*, from each of the
points to the 200 elements in the expert trajectory. To create different datasets that range from
near-optimal to near-global, we vary the distance bound eps, and number of training points, S."

25e6 rows of 5 floats are 500 MB, and stepping all of them through MuJoCo is most of an hour, for
cells that keep at most 2500 rows each. So the pool is never held: chunk c of it is drawn from its
own seed and can be drawn again at any time. Only d* is kept (4 bytes a row), computed chunk by
chunk, and the simulator steps only the rows a training set keeps (one batched `mujoco.rollout`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from objmm import atomic
from objmm.data.dataset import TransitionDataset
from objmm.data.distance import min_distance
from objmm.data.generate import _box, _one_step_dataset
from objmm.envs import get_task
from objmm.errors import ObjmmError
from objmm.seeding import derive_seed

POOL_CHUNK = 1 << 18  # 262144 rows a chunk: 5 MB of cartpole rows


class UniformPool:
    """`size` [obs, action] rows uniform over the task's box (`Task.state_low/high`, the action range)."""

    def __init__(self, env_id: str, size: int, seed: int = 0, chunk: int = POOL_CHUNK):
        if size < 1:
            raise ObjmmError(f"the pool needs at least 1 row, got {size}")
        self.env_id, self.size, self.seed, self.chunk = env_id, size, seed, chunk
        self.task = get_task(env_id)
        self.low, self.high = (x.float() for x in _box(self.task))

    @property
    def chunks(self) -> int:
        return -(-self.size // self.chunk)

    def rows(self, chunk: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Chunk `chunk`'s rows [n, O + A], the same every time."""
        n = min(self.chunk, self.size - chunk * self.chunk)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "pool", chunk))
        u = torch.rand(n, len(self.low), generator=generator)
        return (self.low + (self.high - self.low) * u).to(device)

    def distances(self, reference: torch.Tensor, device: torch.device | str = "cpu", progress=None) -> torch.Tensor:
        """d* of every pool row to `reference` [R, O + A] (angles wrapped): [size] float32 on the CPU."""
        out = torch.empty(self.size)
        for c in range(self.chunks):
            d = min_distance(self.rows(c, device), reference.to(device), self.task.periodic_dims)
            out[c * self.chunk : c * self.chunk + len(d)] = d.cpu()
            if progress is not None:
                progress(c + 1, self.chunks)
        return out

    def cached_distances(
        self, path: Path, reference: torch.Tensor, key: dict, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """`distances`, computed once and kept at `path` (atomically) with `key` (what they were
        computed from: the reference's source); a file of another key is computed again."""
        key = {**key, "pool": self.size, "seed": self.seed, "env": self.env_id}
        if path.exists():
            saved = torch.load(path, weights_only=False)
            if saved.get("key") == key:
                return saved["distances"]
        t0, step = time.perf_counter(), max(1, self.chunks // 10)

        def progress(done: int, total: int) -> None:
            if done % step == 0 or done == total:
                print(f"d* of the pool: {done}/{total} chunks, {time.perf_counter() - t0:.0f} s", flush=True)

        distances = self.distances(reference, device, progress)
        atomic.write_atomically(path, lambda tmp: torch.save({"key": key, "distances": distances}, tmp))
        return distances

    def take(self, indices: torch.Tensor) -> torch.Tensor:
        """The pool rows at `indices` (any order), drawn again chunk by chunk: [len(indices), O + A]."""
        out = torch.empty(len(indices), len(self.low))
        which = indices // self.chunk
        for c in which.unique().tolist():
            mine = (which == c).nonzero().squeeze(1)
            out[mine] = self.rows(c)[indices[mine] - c * self.chunk]
        return out


def near_reference_dataset(
    pool: UniformPool, distances: torch.Tensor, size: int, bound: float, seed: int = 0, **env_kwargs
) -> TransitionDataset:
    """`size` pool rows drawn at random from those with d* <= `bound`, each stepped once in the
    simulator. Fewer when the pool has fewer that near (the metadata says how many it had)."""
    near = (distances <= bound).nonzero().squeeze(1)
    if len(near) == 0:
        raise ObjmmError(f"no pool row is within {bound} of the reference; raise the bound or the pool size")
    generator = torch.Generator().manual_seed(derive_seed(seed, "near", size, bound))
    chosen = near[torch.randperm(len(near), generator=generator)[:size]].sort().values
    return _one_step_dataset(
        pool.env_id,
        pool.take(chosen).double(),
        env_kwargs,
        source="near-reference",
        size_requested=size,
        bound=bound,
        pool_size=pool.size,
        pool_seed=pool.seed,
        pool_rows_within_bound=len(near),
    )
