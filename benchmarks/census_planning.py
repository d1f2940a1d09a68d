"""What one planning step asks of a GPU, counted on any device: kernels, bytes and FLOPs per op.

    python benchmarks/census_planning.py [--env cartpole|halfcheetah] [--episodes 1] [--stack 1]
                                         [--width W] [--bandwidth 4.3] [--flops 49] [--gap 1.5]
                                         [--device cuda] [--profile 5] [--precision tf32]

Runs the planner's step once, eagerly, under a `TorchDispatchMode` that sees every aten op: the
ops that compute (not views) are the kernels a captured CUDA graph replays. For each it counts the
bytes its inputs and outputs span and, for the matmuls, the FLOPs; a GPU with `--bandwidth` TB/s,
`--flops` TFLOP/s (the H200's measured fp32 matmul rate is 49; TF32 about 300) and `--gap` us
between replayed kernels (the least a kernel costs in a graph) then spends on it at least
max(bytes / bandwidth, FLOPs / rate) + gap. The sum is a floor for the step that counts memory and
kernels, beside the FLOP floor alone that `bench_planning.py` prints: where the measured step
sits against each says what is left to win, and where (by op). Table 1's settings; `--stack S`
plans S stacked models' episodes in one call, as stacked PETS runs do (one noise stream each).
`--profile N` also times N eager steps on `--device` under torch's profiler and puts each op's own
device time (a CPU's time on a CPU) beside its floor: which op a step's time goes to, measured.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import torch
from bench_planning import table1  # Table 1's planning steps, as bench_planning times them
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import objmm.envs  # noqa: F401  (registers the envs)
from objmm.models import DynamicsModel, StackedDynamics
from objmm.planning import CEMPlanner, ModelEnv
from objmm.planning.cem import PRECISIONS, rollout_precision

MATMULS = {"mm", "bmm", "addmm", "baddbmm", "addbmm", "matmul", "linear"}
#: ops that only make a new view of their input (no kernel)
VIEWS = {
    "view", "_unsafe_view", "reshape", "expand", "unsqueeze", "squeeze", "slice", "select", "t", "transpose",
    "permute", "as_strided", "detach", "alias", "split", "split_with_sizes", "unbind", "chunk", "narrow",
    "lift_fresh", "_to_copy_noop", "empty", "empty_like", "empty_strided", "unfold", "diagonal", "view_as",
}  # fmt: skip


def span_bytes(t: torch.Tensor) -> int:
    """Bytes a tensor's elements span in memory (an expanded dimension, stride 0, counts once)."""
    if t.numel() == 0:
        return 0
    return t.element_size() * (
        1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride(), strict=True) if stride)
    )


def matmul_flops(name: str, args: tuple) -> int:
    """2 x M x N x K (times the batch) of a matmul op from its operands' shapes."""
    mats = [a for a in args if isinstance(a, torch.Tensor) and a.dim() >= 2]
    if name in ("addmm", "baddbmm", "addbmm"):
        mats = mats[1:3]
    a, b = mats[0], mats[1]
    if name == "linear":  # weight is [N, K]
        return 2 * a.numel() * b.shape[0]
    batch = a.shape[:-2].numel() if a.dim() > 2 else 1
    return 2 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


class Census(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: dict[str, dict[str, float]] = defaultdict(lambda: {"kernels": 0, "bytes": 0, "flops": 0})

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name not in VIEWS:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            seen: set[tuple[int, int]] = set()
            moved = 0
            for t in tensors:  # an in-place op's output is its input: count each view once
                key = (t.untyped_storage().data_ptr(), t.storage_offset())
                if key not in seen:
                    seen.add(key)
                    moved += span_bytes(t)
            row = self.ops[name]
            row["kernels"] += 1
            row["bytes"] += moved
            row["flops"] += matmul_flops(name, args) if name in MATMULS else 0
        return out


def profiled_ms(step, device: torch.device, repeats: int) -> dict[str, float]:
    """Each aten op's own time in ms a step (device time on CUDA), over `repeats` eager steps."""
    step()  # warm-up: cuBLAS handles, allocator
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            step()
        if cuda:
            torch.cuda.synchronize()
    times: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            own = event.self_device_time_total if cuda else event.self_cpu_time_total
            times[event.key.removeprefix("aten::")] += own / 1e3 / repeats
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=["cartpole", "halfcheetah"], default="cartpole")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--stack", type=int, default=1, help="stacked models, each planning --episodes")
    parser.add_argument("--width", type=int, default=None, help="default: Table 1's (cartpole 500, half cheetah 200)")
    parser.add_argument("--bandwidth", type=float, default=4.3, help="TB/s (an H200's device-to-device copy)")
    parser.add_argument("--flops", type=float, default=49.0, help="TFLOP/s of the matmuls (H200 fp32, measured)")
    parser.add_argument("--gap", type=float, default=1.5, help="us: the least a replayed kernel costs")
    parser.add_argument("--measured-ms", type=float, default=None, help="the step's measured time, to set beside")
    parser.add_argument("--device", default="cpu", help="where --profile times the step")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="time N eager steps per op (0: no)")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="float32", help="the profiled steps' (cem.precision)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    env_id, cfg, width, depth = table1(args.env, args.width, cuda_graph=False)
    models = [DynamicsModel(env_id, members=5, width=width, depth=depth).eval() for _ in range(args.stack)]
    stacked = models[0] if args.stack == 1 else StackedDynamics(models)
    stacked.cpu_rows_per_pass = 1 << 40  # the GPU's path: every row in one pass (a CPU splits them)
    task = models[0].task

    def planner_on(where: torch.device | str) -> CEMPlanner:  # one noise stream a model, as stacked PETS runs
        planner = CEMPlanner(ModelEnv(task, stacked.predict_next, task.reward(), where), cfg)
        planner.seed_noise(list(range(args.stack)), blocks=args.stack)
        return planner

    planner = planner_on("cpu")
    obs = torch.randn(args.stack * args.episodes, task.obs_dim) * 0.1
    mean = ((planner.low + planner.high) / 2).expand(obs.shape[0], cfg.horizon, -1).clone()
    census = Census()
    with torch.no_grad(), census:
        planner.step(obs, mean, None)
    measured: dict[str, float] = {}
    if args.profile:
        cfg.precision = args.precision
        stacked.to(device)
        planner = planner_on(device)
        obs, mean = obs.to(device), mean.to(device)
        with torch.no_grad(), rollout_precision(args.precision, device):
            measured = profiled_ms(lambda: planner.step(obs, mean, None), device, args.profile)
    gap, bandwidth, rate = args.gap * 1e-6, args.bandwidth * 1e12, args.flops * 1e12
    rows = []
    for name, row in census.ops.items():
        floor = max(row["bytes"] / bandwidth, row["flops"] / rate)
        rows.append({"op": name, **row, "floor_ms": 1e3 * floor, "with_gaps_ms": 1e3 * (floor + row["kernels"] * gap)})
    rows.sort(key=lambda r: -r["with_gaps_ms"])
    calls = cfg.iterations * cfg.horizon
    print(f"one planning step, {args.env}, {args.stack} model(s) x {args.episodes} episode(s), {calls} model calls")
    where = f" measured on {args.device} (ms) |" if measured else ""
    print(f"| op | kernels | per model call | MB | GFLOP | bytes or FLOPs floor (ms) | with the gaps (ms) |{where}")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |" + (" ---: |" if measured else ""))
    for r in rows:
        own = (f" {measured[r['op']]:.3f} |" if r["op"] in measured else " |") if measured else ""
        print(
            f"| {r['op']} | {r['kernels']} | {r['kernels'] / calls:.1f} | {r['bytes'] / 1e6:.1f} | "
            f"{r['flops'] / 1e9:.1f} | {r['floor_ms']:.3f} | {r['with_gaps_ms']:.3f} |{own}"
        )
    for op, ms in sorted(measured.items(), key=lambda kv: -kv[1]):  # ops that run inside the ops above
        if op not in census.ops and ms >= 0.01:
            print(f"| {op} (inside another op) | | | | | | | {ms:.3f} |")
    total = {key: sum(r[key] for r in rows) for key in ("kernels", "bytes", "flops", "floor_ms", "with_gaps_ms")}
    matmul = sum(r["floor_ms"] for r in rows if r["op"] in MATMULS)
    summary = {
        "env": args.env,
        "stack": args.stack,
        "episodes": args.episodes,
        "model_calls": calls,
        "kernels": total["kernels"],
        "kernels_per_model_call": round(total["kernels"] / calls, 1),
        "gb_moved": round(total["bytes"] / 1e9, 2),
        "gflop": round(total["flops"] / 1e9, 1),
        "matmul_floor_ms": round(matmul, 2),
        "bytes_and_flops_floor_ms": round(total["floor_ms"], 2),
        "with_gaps_ms": round(total["with_gaps_ms"], 2),
        "assumed": {"bandwidth_tb_s": args.bandwidth, "tflop_s": args.flops, "gap_us": args.gap},
    }
    if measured:
        summary["profiled"] = {
            "device": args.device,
            "precision": args.precision,
            "ops_ms": round(sum(measured.values()), 2),
            "top": {op: round(ms, 3) for op, ms in sorted(measured.items(), key=lambda kv: -kv[1])[:8]},
        }
    if args.measured_ms:
        summary["measured_ms"] = args.measured_ms
        summary["measured_over_with_gaps"] = round(args.measured_ms / total["with_gaps_ms"], 2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
