"""Every random stream of a run derives from its one seed, the same way (numpy's SeedSequence):
`derive_seed(seed, "episode", trial)` is a different, reproducible seed for every purpose and index,
with no hand-picked multipliers that could make two streams collide."""

from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, purpose: str, *index: int) -> int:
    """A 31-bit seed for `purpose` (e.g. "model", "episode", "split") and its indices (e.g. the trial)."""
    key = [int(seed), zlib.crc32(purpose.encode()), *(int(i) for i in index)]
    return int(np.random.SeedSequence(key).generate_state(1)[0] & 0x7FFFFFFF)


def seed_of(seed_everything: bool | int) -> int:
    """A config's `seed_everything` as the int every other seed derives from (True, which asks
    Lightning for a random global seed, counts as 0 here)."""
    return seed_everything if isinstance(seed_everything, int) and not isinstance(seed_everything, bool) else 0
