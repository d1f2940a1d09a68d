"""What the planner's precision (`cem.precision`: tf32, bfloat16) does to real rewards, against float32.

    python benchmarks/bench_precision.py --models DIR [DIR ...] [--from-trial 3] [--episodes 2]
                                         [--episode-steps 200] [--precisions tf32 bfloat16 tf32-emulated]
                                         [--device cuda] [--stack 20]

The models are PETS runs' (`DIR/models/trial_*.pt`, e.g. `objmm pets --config
configs/pets/cartpole.yaml`'s, or a `pets-sweep`'s `DIR/*/models/trial_*.pt`), from trial
`--from-trial` on (1-based: the early trials' models have not learnt to balance, so their rewards
say little about the arithmetic): every model plans `--episodes` real episodes at each precision, the
same episodes (start states and planner samples, `objmm.experiments.rewards.stacked_rewards`), so
each (model, episode) is a pair. Printed per precision: the mean reward difference to float32 with
its 95% interval over models (a cluster bootstrap, a model's episodes together), the share of
episodes whose reward changed, and the time of the evaluation against float32's in the same run.
Table 1's planner (CEM 25/400/40/5) unless `--cem` gives another (horizon population elites iterations).
`tf32-emulated` rounds the factors of every matmul to TF32 by hand (`TF32Emulation`), on any device:
TF32's effect on rewards, measured on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import time

import numpy as np
import torch

from objmm.errors import ObjmmError
from objmm.experiments.rewards import Evaluation, stacked_rewards
from objmm.planning import CEMConfig
from objmm.stats import paired_difference
from objmm.training.saved_models import find_models, load_model


def to_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 rounded to TF32's 10-bit mantissa (to nearest, ties away from zero, as the tensor
    cores' conversion does): the low 13 bits of the mantissa rounded off."""
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32).view_as(x)


class TF32Emulation(torch.overrides.TorchFunctionMode):
    """The model's matmuls as TF32 tensor cores compute them, on any device: both factors rounded to
    TF32, the products and sums kept in float32 (`tf32-emulated` below). For a CPU, where `tf32` is
    float32: what TF32 does to rewards can be measured before a GPU is lent. The bias of `baddbmm`
    and `addmm` is added in float32, as it is on a GPU."""

    FACTORS = {torch.baddbmm: (1, 2), torch.addmm: (1, 2), torch.bmm: (0, 1), torch.matmul: (0, 1), torch.mm: (0, 1)}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        factors = self.FACTORS.get(func, ())
        args = tuple(to_tf32(a) if i in factors and a.dtype == torch.float32 else a for i, a in enumerate(args))
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="PETS run directories, or pets-sweep folders")
    parser.add_argument("--from-trial", type=int, default=1, help="the models of this trial (1-based) and later")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--episode-steps", type=int, default=None)
    parser.add_argument(
        "--precisions", nargs="+", default=["tf32", "bfloat16"], choices=["tf32", "bfloat16", "tf32-emulated"]
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--stack", type=int, default=20, help="models evaluated at once")
    parser.add_argument("--cem", type=int, nargs=4, default=[25, 400, 40, 5])
    args = parser.parse_args()
    trial = re.compile(r"trial_(\d+)")  # models/trial_NN.pt, NN counted from 0
    try:
        paths = [
            path
            for path in find_models(args.models, "--models")
            if (found := trial.fullmatch(path.stem)) and int(found[1]) + 1 >= args.from_trial
        ]
    except ObjmmError as error:
        raise SystemExit(f"bench_precision: {error}") from None
    if not paths:
        raise SystemExit(f"bench_precision: no models/trial_*.pt from trial {args.from_trial} on in {args.models}")
    modules = [load_model(path, args.device)[0] for path in paths]
    env = {"id": modules[0].hparams.env_id, "kwargs": dict(modules[0].env_kwargs)}
    horizon, population, elites, iterations = args.cem

    def rewards(precision: str) -> tuple[np.ndarray, float]:
        emulated = precision == "tf32-emulated"
        cem = CEMConfig(
            horizon,
            population,
            elites,
            iterations,
            precision="float32" if emulated else precision,
            cuda_graph=not emulated,
        )
        evaluation = Evaluation(args.episodes, args.episode_steps, cem)
        start = time.perf_counter()
        with TF32Emulation() if emulated else contextlib.nullcontext():
            found = np.concatenate(
                [
                    stacked_rewards(modules[i : i + args.stack], evaluation, env, seed=0, device=args.device)
                    for i in range(0, len(modules), args.stack)
                ]
            )
        return found, time.perf_counter() - start

    exact, exact_seconds = rewards("float32")
    where = ", ".join(args.models)
    print(f"\nplanner precision on {args.device}: {len(modules)} models of {where} x {args.episodes} episodes")
    print(f"float32: mean reward {exact.mean():.1f}, {exact_seconds:.0f} s")
    print(
        "| precision | mean reward | minus float32 [95% interval over models] | episodes changed | time / float32's |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    clusters = np.repeat(np.arange(len(modules)), args.episodes)
    rows = []
    for precision in args.precisions:
        found, seconds = rewards(precision)
        d = paired_difference(found.ravel(), exact.ravel(), clusters)
        changed = np.mean(~np.isclose(found, exact, rtol=1e-6, atol=1e-6))
        print(
            f"| {precision} | {found.mean():.1f} | {d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}] | {changed:.0%} | "
            f"{seconds / exact_seconds:.2f}x |"
        )
        rows.append({"precision": precision, "minus_float32": d.mean, "low": d.low, "high": d.high,
                     "changed": float(changed), "time_over_float32": round(seconds / exact_seconds, 3)})  # fmt: skip
    print(json.dumps({"device": args.device, "models": len(modules), "episodes": args.episodes, "precisions": rows}))


if __name__ == "__main__":
    main()
