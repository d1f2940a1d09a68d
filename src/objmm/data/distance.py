"""d*: how far a (state, action) row is from a reference trajectory (the paper's Sec. 5).

The paper re-weights and selects rows by "the minimum orthogonal distance, d*, from each of the
points to the 200 elements in the expert trajectory". objmm measures it as the Euclidean distance
of the row's `[obs, action]` to the nearest reference row, in the task's own units, with each
angle's difference wrapped to [-pi, pi] (the cartpole's theta: the expert's pole, swung up, sits
near +-pi, and -pi and pi are the same angle). `scale` divides each entry's difference first, for
distances in other units. Why raw units: the paper's bounds run up to 15.66 and its weight
exp(-d*) is "0 at the edge of the grid"; in raw cartpole units the farthest point of the box is
about that far from the expert (docs/objectives.md), in box-normalised units nothing is farther
than sqrt(5) = 2.24.

Millions of rows against hundreds of reference rows go in chunks, so the memory is chunk x
reference, whatever the row count; it runs wherever the tensors are (CPU or CUDA).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from objmm.errors import ObjmmError

#: rows per chunk on a CPU: 4096 x 200 reference rows x 4 bytes = 3.3 MB of distances at a time (cache-sized)
CHUNK_ROWS = 4096
#: distances per chunk on a GPU (128 MB of float32 a buffer): there a 4096-row chunk is a handful of tiny
#: kernels, and 25e6 rows made 6000 of them (an H100 ran d* at 0.42x the one-shot broadcast's rate)
CUDA_CHUNK_DISTANCES = 2**25


def wrap_angle(delta: torch.Tensor) -> torch.Tensor:
    """An angle difference brought into [-pi, pi)."""
    return torch.remainder(delta + math.pi, 2 * math.pi) - math.pi


def min_distance(
    points: torch.Tensor,
    reference: torch.Tensor,
    periodic: Sequence[int] = (),
    scale: Sequence[float] | torch.Tensor | None = None,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """d* of every row: points [..., F], reference [R, F] -> distance to the nearest reference row [...].

    Entries in `periodic` are angles (their difference is wrapped); `scale` [F] divides each
    entry's difference. `chunk_rows` rows at a time: memory chunk_rows x R (default: `CHUNK_ROWS` on
    a CPU, `CUDA_CHUNK_DISTANCES` / R on a GPU).
    """
    if reference.ndim != 2 or reference.shape[0] == 0:
        raise ObjmmError(f"the reference must be [rows, features] with at least one row, got {list(reference.shape)}")
    if points.shape[-1] != reference.shape[-1]:
        raise ObjmmError(f"rows have {points.shape[-1]} features, the reference {reference.shape[-1]}")
    shape = points.shape[:-1]
    flat = points.reshape(-1, points.shape[-1])
    if chunk_rows is None:
        chunk_rows = CHUNK_ROWS if flat.device.type == "cpu" else max(1, CUDA_CHUNK_DISTANCES // len(reference))
    reference = reference.to(flat)
    if scale is not None:
        scale = torch.as_tensor(scale, dtype=flat.dtype, device=flat.device)
        flat, reference = flat / scale, reference / scale
        periodic_scale = scale[list(periodic)] if periodic else None
    linear = [i for i in range(flat.shape[-1]) if i not in set(periodic)]
    out = torch.empty(flat.shape[0], dtype=flat.dtype, device=flat.device)
    for start in range(0, flat.shape[0], chunk_rows):
        chunk = flat[start : start + chunk_rows]
        # the non-angle entries through cdist's exact (no |a|^2 + |b|^2 - 2ab cancellation) kernel
        squared = torch.cdist(
            chunk[:, linear], reference[:, linear], compute_mode="donot_use_mm_for_euclid_dist"
        ).square_()
        for j, i in enumerate(periodic):
            delta = chunk[:, i, None] - reference[None, :, i]
            if scale is None:
                squared += wrap_angle(delta).square_()
            else:  # wrap in radians, then scale
                s = periodic_scale[j]
                squared += (wrap_angle(delta * s) / s).square_()
        out[start : start + chunk_rows] = squared.min(dim=1).values.sqrt_()
    return out.reshape(shape)


def min_distance_brute_force(
    points: torch.Tensor, reference: torch.Tensor, periodic: Sequence[int] = (), scale=None
) -> torch.Tensor:
    """The same d* as `min_distance`, all rows at once, as plainly as it can be written (the tests' check)."""
    delta = points[:, None, :] - reference[None, :, :]
    for i in periodic:
        delta[..., i] = wrap_angle(delta[..., i])
    if scale is not None:
        delta = delta / torch.as_tensor(scale, dtype=delta.dtype, device=delta.device)
    return delta.square().sum(-1).min(dim=1).values.sqrt()
