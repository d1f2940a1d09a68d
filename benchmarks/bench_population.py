"""Population evaluation throughput: one CEM planning step for K stacked models x E episodes, K = 1
against larger K, beside the FLOP floor.

    python benchmarks/bench_population.py [--stacks 1 2 4 8] [--episodes 1] [--device cpu]
                                          [--precision float32|tf32|bfloat16]

Each K plans K models x E episodes in one call (`StackedDynamics` + a `CEMPlanner` with common noise, as
`objmm population` does); the time per model-step (call time / (K x E)) is what a population costs.
Table 1's planner (25 / 400 / 40 / 5) and, by default, the objmm CPU-scale PE network (5 x 200 x 2;
`--width 500 --depth 3` is the paper's). On a CPU the target is no loss from stacking (the step is
already compute-bound); on a GPU, K models at <= 1.5x one model's time until the device is full.
The projection is the full cartpole Fig. 3 (1000 models x 10 episodes x 200 steps = 2 M model-steps)
at the best K's rate on this device; `--precision` is the planner's arithmetic (`cem.precision`), and
the matmul rate beside it is measured at the same arithmetic.
"""

from __future__ import annotations

import argparse
import json

import torch
from bench_planning import matmul_gflops, timed_pair  # the same matmul rate and timing as bench_planning

import objmm.envs  # noqa: F401  (registers the envs)
from objmm.models import DynamicsModel, StackedDynamics
from objmm.planning import CEMConfig, CEMPlanner
from objmm.planning.cem import PRECISIONS, rollout_precision

ENV_ID = "objmm/PETSCartpole-v0"
FIG3_MODEL_STEPS = 1000 * 10 * 200


def planner_for(models: list[DynamicsModel], episodes: int, cfg: CEMConfig, device: str) -> CEMPlanner:
    stacked = StackedDynamics(models).to(device)
    planner = CEMPlanner.for_dynamics(models[0].task, stacked.predict_next, cfg, device=device)
    planner.seed_noise(0, blocks=len(models))
    return planner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--episodes", type=int, default=1, help="episodes per model, planned side by side")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32", help="the planner's (cem.precision)")
    args = parser.parse_args()
    cfg = CEMConfig(horizon=25, population=400, elites=40, iterations=5, precision=args.precision)
    torch.manual_seed(0)
    models = [
        DynamicsModel(ENV_ID, members=5, width=args.width, depth=args.depth).eval() for _ in range(max(args.stacks))
    ]
    sizes = [p.shape[1] * p.shape[2] for layer in models[0].net.layers for p in [layer.weight]]
    flops_per_model_step = 2 * sum(sizes) * 5 * cfg.population * cfg.horizon * cfg.iterations
    with rollout_precision(args.precision, torch.device(args.device)):  # the rate at the step's arithmetic
        rate = matmul_gflops(args.device) * 1e9
    results = []
    with torch.no_grad():
        alone = planner_for(models[:1], args.episodes, cfg, args.device)
        obs1 = torch.randn(args.episodes, 4, device=args.device)
        for k in args.stacks:
            stacked = planner_for(models[:k], args.episodes, cfg, args.device)
            obs = torch.randn(k * args.episodes, 4, device=args.device)
            # interleaved with K = 1, so a noisy neighbour slows both alike
            t_k, t_1 = timed_pair(
                lambda s=stacked, o=obs: s.plan(o), lambda: alone.plan(obs1), args.repeats, args.device
            )
            per_model_step = t_k / (k * args.episodes)
            results.append(
                {
                    "stack": k,
                    "call_ms": round(t_k * 1e3, 1),
                    "one_model_call_ms": round(t_1 * 1e3, 1),
                    "time_over_one_model": round(t_k / t_1, 2),
                    "per_model_step_over_alone": round(per_model_step / (t_1 / args.episodes), 3),
                    "model_steps_per_s": round(1 / per_model_step, 2),
                    "fraction_of_matmul_rate": round(flops_per_model_step / per_model_step / rate, 3),
                }
            )
            print(json.dumps(results[-1]), flush=True)
    best = max(results, key=lambda r: r["model_steps_per_s"])
    summary = {
        "device": args.device,
        "device_name": "cpu" if args.device == "cpu" else torch.cuda.get_device_name(0),
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "network": f"5 x {args.width} x {args.depth}",
        "episodes_per_model": args.episodes,
        "gflop_per_model_step": round(flops_per_model_step / 1e9, 2),
        "matmul_gflops": round(rate / 1e9, 1),
        "best_stack": best["stack"],
        "best_model_steps_per_s": best["model_steps_per_s"],
        "models_per_hour_at_200_steps_x_10_episodes": round(3600 * best["model_steps_per_s"] / 2000, 1),
        "fig3_cartpole_hours_projected": round(FIG3_MODEL_STEPS / best["model_steps_per_s"] / 3600, 2),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
