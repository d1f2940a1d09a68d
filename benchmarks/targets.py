"""Issue 20's speed targets, measured or not, from the benchmarks' outputs in a folder.

    python benchmarks/targets.py OUT          (gpu_check.sh runs it last on its $OUT/steps)

Each benchmark ends its output with one JSON object; gpu_check.sh keeps every step's output as
`OUT/steps/<step>.log`. A target reads the step it needs: "met" or "missed" with the measured
number, or "not measured" where that step did not run (no GPU, a failed step, a skipped one). Where
the steps also ran with the planner in TF32 (`<step>_tf32`), a second row gives that.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path


def last_json(path: Path) -> dict | None:
    """The last JSON object a benchmark printed (it may span lines), or None."""
    if not path.is_file():
        return None
    lines = path.read_text(errors="replace").splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].startswith("{"):
            try:
                return json.loads("\n".join(lines[start:]))
            except json.JSONDecodeError:
                continue
    return None


def best(found: dict, eager: str, graph: str, compiled: str) -> float:
    """The planner's best time (or ratio): eager, as a captured CUDA graph, or with its model calls
    compiled (`cem.compile`), of those that were measured."""
    return min(found[eager], found.get(graph, float("inf")), found.get(compiled, float("inf")))


def stacked_ratio(found: dict, runs: int, key: str = "over_one") -> float | None:
    """S stacked runs' time over one run's: measured on the benchmark's short runs (`over_one`), or
    projected at the config's whole runs (`whole_runs_over_one`, where the benchmark printed it)."""
    row = next((r for r in found["stacks"] if r["runs"] == runs), None)
    return None if row is None else row.get(key)


def on_cuda(found: dict) -> bool:
    return found.get("device", "").startswith("cuda")


def fig3_pipeline_hours(sweep: dict, population: dict) -> float | None:
    """The cartpole Fig. 3 pipeline: the 50 PETS runs (at the best measured stack) then the 1000
    models' evaluation, each projected by its benchmark from this device's rates."""
    if not (on_cuda(sweep) and on_cuda(population)) or sweep.get("config") != "cartpole_population.yaml":
        return None
    return min(r["sweep_hours_projected"] for r in sweep["stacks"]) + population["fig3_cartpole_hours_projected"]


def cheetah_run_hours(found: dict) -> float | None:
    """One half cheetah PETS run of Table 1 (100 trials of 1000 steps), projected from this device's rates."""
    if not on_cuda(found) or found.get("projected", {}).get("trials") != 100:
        return None
    return next(r["sweep_hours_projected"] for r in found["stacks"] if r["runs"] == 1)


#: (target, the step (or steps) whose output it reads, the number it takes from them, how it is met,
#: how the number prints)
TARGETS: list[tuple[str, str | tuple[str, ...], Callable[..., float | None], Callable[[float], bool], str]] = [
    ("CPU: Table 1 cartpole step >= 85% of the matmul floor (time / floor <= 1.18)", "bench_planning_cpu",
     lambda f: f["objmm_over_floor"], lambda x: x <= 1 / 0.85, "{:.2f}x the floor"),
    ("CPU: Table 1 cartpole step >= 2.5x faster than mbrl-lib 0.2.0's", "bench_mbrl_lib",
     lambda f: f["mbrl_lib_over_objmm"] if f.get("width") == 500 else None, lambda x: x >= 2.5, "{:.2f}x faster"),
    ("CUDA: one-episode Table 1 cartpole step <= 5 ms", "bench_planning_cuda_1",
     lambda f: best(f, "objmm_ms", "graph_ms", "compiled_ms"), lambda x: x <= 5, "{:.1f} ms"),
    ("CUDA: 10-episode cartpole step within 1.3x of the FLOP floor", "bench_planning_cuda",
     lambda f: best(f, "objmm_over_floor", "graph_over_floor", "compiled_over_floor"), lambda x: x <= 1.3,
     "{:.2f}x the floor"),
    ("CUDA: half cheetah Table 1 step (CEM 500 x 30 x 5, PE 5 x 200 x 4) <= 10 ms", "bench_planning_cuda_cheetah",
     lambda f: best(f, "objmm_ms", "graph_ms", "compiled_ms"), lambda x: x <= 10, "{:.1f} ms"),
    ("CUDA: S = 16 stacked cartpole PETS runs in <= 2x the time of one", "bench_stacked_pets",
     lambda f: stacked_ratio(f, 16) if on_cuda(f) else None, lambda x: x <= 2, "{:.2f}x one run"),
    ("CUDA, projected: S = 16 whole cartpole PETS runs (the config's 20 trials) in <= 2x the time of one",
     "bench_stacked_pets", lambda f: stacked_ratio(f, 16, "whole_runs_over_one") if on_cuda(f) else None,
     lambda x: x <= 2, "{:.2f}x one run"),
    ("CUDA: Lightning training within 1.3x of a plain loop (batch 32)", "bench_training",
     lambda f: f["steady_ratio_lightning_over_plain"] if on_cuda(f) else None,
     lambda x: x <= 1.3, "{:.2f}x the plain loop"),
    ("CUDA: the same with 16 models trained as one (stacked PETS runs' training)", "bench_training_stacked",
     lambda f: f["steady_ratio_lightning_over_plain"] if on_cuda(f) and f.get("stack", 1) > 1 else None,
     lambda x: x <= 1.3, "{:.2f}x the plain loop"),
    ("CUDA, projected: cartpole Fig. 3 pipeline (50 PETS runs x 20 trials, then 1000 models x 10 episodes) <= 1 h",
     ("bench_stacked_pets", "bench_population"), fig3_pipeline_hours, lambda x: x <= 1, "{:.2f} h"),
    ("CUDA, projected: one half cheetah PETS run at Table 1 (100 trials of 1000 steps) <= 1 h",
     "bench_stacked_pets_cheetah", cheetah_run_hours, lambda x: x <= 1, "{:.2f} h"),
]  # fmt: skip


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python benchmarks/targets.py OUT (the folder gpu_check.sh wrote)")
    steps = Path(sys.argv[1]) / "steps"
    print("| target | measured | |")
    print("| --- | --- | --- |")
    for name, step, number, met, shown in TARGETS:
        needed = (step,) if isinstance(step, str) else step
        found = [last_json(steps / f"{s}.log") for s in needed]
        value = number(*found) if all(f is not None for f in found) else None
        if value is None:
            print(f"| {name} | not measured ({', '.join(needed)}) | |")
        else:
            print(f"| {name} | {shown.format(value)} | {'met' if met(value) else 'missed'} |")
        tf32 = [last_json(steps / f"{s}_tf32.log") for s in needed]  # the same steps planning in TF32, where run
        value = number(*tf32) if all(f is not None for f in tf32) else None
        if value is not None:
            print(f"| {name}, planning in TF32 | {shown.format(value)} | {'met' if met(value) else 'missed'} |")
    cpu = last_json(steps / "bench_planning_cpu.log") or {}
    if "matmuls_alone_over_floor" in cpu:  # what the CPU target asks of the matmuls at the step's own shapes
        print(
            f"| CPU: the same step's matmuls alone, as its layers run them | {cpu['matmuls_alone_over_floor']:.2f}x "
            f"the floor; the step {cpu['objmm_over_its_matmuls']:.2f}x them | |"
        )
    mbrl_lib = last_json(steps / "bench_mbrl_lib.log") or {}
    if "mbrl_lib_over_objmm_bfloat16" in mbrl_lib:  # not the target's step: objmm in bfloat16, mbrl-lib in float32
        print(
            f"| CPU: the same with objmm planning in bfloat16 (cem.precision), mbrl-lib in float32 | "
            f"{mbrl_lib['mbrl_lib_over_objmm_bfloat16']:.2f}x faster | |"
        )
    precision = last_json(steps / "bench_precision.log")  # issue 20's item 4: measured, no target
    for row in (precision or {}).get("precisions", []):
        print(
            f"| {precision['device']}, {row['precision']} planning: reward minus float32's over {precision['models']} "
            f"models [95% interval] | {row['minus_float32']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}], "
            f"{row['time_over_float32']:.2f}x the time | |"
        )


if __name__ == "__main__":
    main()
