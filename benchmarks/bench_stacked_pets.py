"""Stacked PETS runs: S runs stepped together (`pets-sweep --sweep.stack S`) against one run alone.

    python benchmarks/bench_stacked_pets.py [--stacks 1 4 16] [--trials 2] [--episode-steps 50] [--epochs 5]
                                            [--device cpu] [--config configs/pets-sweep/cartpole_population.yaml]

Each row is one `objmm pets-sweep` of S seeds at Table 1's cartpole settings (PE 5 x 200 x 3, CEM
25/400/40/5), shortened to `--trials` trials of `--episode-steps` steps and `--epochs` epochs per
trial, timed from its start to its end in this process (W&B off). The stack of 1 is one run alone;
S runs one after another take S times that. The ratio `time(S stacked) / time(1)` is what the
issue's target reads (S = 16 within 2x on a GPU); `speed-up` is S times one run's time over the stack's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from objmm.cli import main as objmm

ROOT = Path(__file__).resolve().parents[1]


def sweep_seconds(config: str, stack: int, args: argparse.Namespace, where: Path) -> float:
    out = where / f"stack_{stack}"
    argv = ["pets-sweep", "--config", config, "--sweep.seeds", json.dumps(list(range(stack))), "--sweep.stack",
            str(stack), "--sweep.out", str(out), "--pets.trials", str(args.trials), "--pets.episode_steps",
            str(args.episode_steps), "--trainer.max_epochs", str(args.epochs), "--trainer.logger", "false",
            "--trainer.accelerator", "gpu" if args.device.startswith("cuda") else "cpu"]  # fmt: skip
    start = time.perf_counter()
    objmm(argv)
    seconds = time.perf_counter() - start
    shutil.rmtree(out)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--episode-steps", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default=str(ROOT / "configs" / "pets-sweep" / "cartpole_population.yaml"))
    args = parser.parse_args()
    stacks = sorted(set([1, *args.stacks]))
    with tempfile.TemporaryDirectory() as where:
        sweep_seconds(args.config, 1, args, Path(where))  # warm-up: imports, first allocations, the env's first build
        seconds = {s: sweep_seconds(args.config, s, args, Path(where)) for s in stacks}
    one = seconds[1]
    shape = f"{args.trials} trials of {args.episode_steps} steps, {args.epochs} epochs each"
    print(f"\nstacked PETS runs on {args.device}: {shape}")
    print("| runs S | stacked (s) | time / one run's | S runs one after another (s, S x one) | speed-up |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for s in stacks:
        print(f"| {s} | {seconds[s]:.1f} | {seconds[s] / one:.2f}x | {s * one:.1f} | {s * one / seconds[s]:.2f}x |")
    rows = [{"runs": s, "seconds": round(seconds[s], 2), "over_one": round(seconds[s] / one, 3)} for s in stacks]
    print(json.dumps({"device": args.device, "trials": args.trials, "steps": args.episode_steps, "stacks": rows}))


if __name__ == "__main__":
    main()
