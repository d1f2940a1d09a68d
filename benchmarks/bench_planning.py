"""One CEM planning step at Table 1's cartpole settings: objmm's planner vs a plain-torch loop.

    python benchmarks/bench_planning.py [--episodes 1] [--device cpu] [--repeats 7] [--env halfcheetah]
                                        [--precision float32|tf32|bfloat16] [--compile]

Both sides do the same arithmetic with the same weights (PE 5 x 500 x 2 network, CEM 400
candidates x horizon 25 x 5 iterations, 40 elites); the plain side is written out with raw
tensors and no torchrl, TensorDict or module calls. The FLOP floor is the step's matmul FLOPs
divided by this machine's measured matmul rate at the step's arithmetic (`--precision`, float32
unless set; tf32 is float32 on a CPU). The step is also timed beside its matmuls alone, as its layers
run them (`matmuls_alone_ms`): at a one-episode step's shapes a CPU's GEMM runs below the 2048²
rate, so these say how much of the gap to the floor is the matmuls' own. `--env halfcheetah`: the half cheetah's
Table 1 step instead (CEM 500 x horizon 30 x 5 iterations, 50 elites, PE 5 x 200 x 4), objmm
against the floor only (the plain side is the cartpole's). On CUDA the step is also timed as a
captured CUDA graph (`cem.cuda_graph`), interleaved with the eager step, with the largest
difference of the two's actions from the same draws. `--compile` also times the step with its model
calls compiled (`cem.compile`; captured as a graph on CUDA, eager on a CPU) beside the same step
uncompiled, interleaved, with the compile's seconds and the largest action difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

import objmm.envs  # noqa: F401  (registers the envs)
from objmm.models import DynamicsModel
from objmm.models.dynamics import cpu_pass_rows
from objmm.models.ensemble import autocast_dtype, ensemble_linear
from objmm.planning import CEMConfig, CEMPlanner, ModelEnv
from objmm.planning.cem import PRECISIONS, rollout_precision, truncated_normal

ENV_ID = "objmm/PETSCartpole-v0"


def plain_cem_step(model: DynamicsModel, obs: torch.Tensor, cfg: CEMConfig) -> torch.Tensor:
    """The same CEM step, by hand: raw weights, batched matmuls, no framework in the loop."""
    task = model.task
    low, high = task.action_bounds(obs.device)
    weights = [(layer.weight, layer.bias) for layer in [*model.net.hidden, model.net.head]]
    in_mean, in_std, out_dim = model.input_mean, model.input_std, task.obs_dim
    n = obs.shape[0]
    generator = torch.Generator(obs.device).manual_seed(0)
    mean = ((low + high) / 2).expand(n, cfg.horizon, -1).clone()
    var = ((high - low) / 4).square().expand_as(mean)
    for _ in range(cfg.iterations):
        std = torch.minimum(var, torch.minimum((mean - low) / 2, (high - mean) / 2).square()).sqrt()
        noise = truncated_normal((n, cfg.population, cfg.horizon, 1), generator, obs.device)  # objmm's draws
        actions = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).reshape(n * cfg.population, cfg.horizon, 1)
        state = obs.repeat_interleave(cfg.population, 0)
        total = torch.zeros(n * cfg.population, device=obs.device)
        for t in range(cfg.horizon):
            a = actions[:, t]
            theta = state[:, 1:2]
            x = (torch.cat([theta.sin(), theta.cos(), state[:, :1], state[:, 2:], a], 1) - in_mean) / in_std
            h = x
            for w, b in weights[:-1]:
                h = F.silu(torch.matmul(h, w) + b)
            delta = (torch.matmul(h, weights[-1][0]) + weights[-1][1])[..., :out_dim].mean(0)
            state = state + delta
            tip_x = state[:, 0] - 0.6 * state[:, 1].sin()
            tip_z = -0.6 * state[:, 1].cos()
            total += torch.exp(-((tip_x**2 + (tip_z - 0.6) ** 2) / 0.36)) - 0.01 * a[:, 0] ** 2
        top = total.view(n, cfg.population).topk(cfg.elites, 1).indices
        elites = actions.view(n, cfg.population, cfg.horizon, 1).gather(
            1, top[:, :, None, None].expand(-1, -1, cfg.horizon, 1)
        )
        mean = 0.1 * mean + 0.9 * elites.mean(1)
        var = 0.1 * var + 0.9 * elites.var(1, unbiased=False)
    return mean[:, 0]


def matmuls_of_step(model: DynamicsModel, rows: int, calls: int, precision: str = "float32"):
    """One planning step's matmuls alone, as the model's layers run them: `calls` model calls of
    `rows` rows each, cut into the passes `predict_next` makes, every layer with its bias (and on a
    CPU its parts), the head's mean columns, in the step's arithmetic (`cem.precision`); no SiLU, no
    rollout, no CEM. What the FLOP floor asks of the step, measured at the step's own shapes: a
    callable that does one step's worth."""
    net, device = model.net, model.input_mean.device
    with rollout_precision(precision, device):  # a CPU's pass holds more rows in bfloat16
        per_pass = cpu_pass_rows(model.cpu_rows_per_pass, net) if device.type == "cpu" else rows
        dtype = autocast_dtype(net.head.weight)  # a hidden layer's output, the next layer's input
    passes = [min(per_pass, rows - start) for start in range(0, rows, per_pass)]
    inputs = [
        [torch.randn(n, net.hidden[0].weight.shape[1], device=device)]  # the first layer's input: shared, float32
        + [torch.randn(net.members, n, layer.weight.shape[1], device=device, dtype=dtype) for layer in net.layers[1:]]
        for n in passes
    ]
    head = (net.head.weight[..., : model.task.obs_dim], net.head.bias[..., : model.task.obs_dim])

    def step() -> None:
        with rollout_precision(precision, device):
            for _ in range(calls):
                for xs in inputs:
                    for layer, x in zip(net.hidden, xs, strict=False):
                        layer(x)
                    ensemble_linear(xs[-1], *head)

    return step


def matmul_gflops(device: str, size: int = 2048, repeats: int = 10) -> float:
    """The matmul rate (GFLOP/s) of a size² x size² product here, in the arithmetic of the calling
    context: under autocast (bfloat16 planning) the operands are cast before the clock starts, so
    the rate is the product's, not the casts'."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a, b = a.to(autocast_dtype(a)), b.to(autocast_dtype(b))
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed_together(fns: list, repeats: int, device: str) -> list[float]:
    """Median seconds per call of each of `fns`, the calls interleaved so that a noisy neighbour on a
    shared machine slows every side alike."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - start)
    return [statistics.median(out) for out in times]


def timed_pair(fn_a, fn_b, repeats: int, device: str) -> tuple[float, float]:
    """`timed_together` of two."""
    t_a, t_b = timed_together([fn_a, fn_b], repeats, device)
    return t_a, t_b


def table1(env: str, width: int | None = None, **cem) -> tuple[str, CEMConfig, int, int]:
    """Table 1's planning step for `env` (cartpole, halfcheetah): its env id, planner (with `cem`'s
    changes), network width (unless `width`) and depth."""
    if env == "cartpole":
        return ENV_ID, CEMConfig(horizon=25, population=400, elites=40, iterations=5, **cem), width or 500, 2
    cfg = CEMConfig(horizon=30, population=500, elites=50, iterations=5, **cem)
    return "objmm/PETSHalfCheetah-v0", cfg, width or 200, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1, help="parallel episodes planned in one call")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--width", type=int, default=None, help="default: Table 1's (cartpole 500, half cheetah 200)")
    parser.add_argument("--env", choices=["cartpole", "halfcheetah"], default="cartpole")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="the rollouts' arithmetic (cem.precision), both sides",
    )
    parser.add_argument("--compile", action="store_true", help="also time the step with cem.compile")
    args = parser.parse_args()
    torch.manual_seed(0)
    cartpole = args.env == "cartpole"
    # the eager step (the captured one is timed beside it on CUDA, below)
    env_id, cfg, width, depth = table1(args.env, args.width, cuda_graph=False, precision=args.precision)
    model = DynamicsModel(env_id, members=5, width=width, depth=depth).to(args.device).eval()
    obs = torch.randn(args.episodes, model.task.obs_dim, device=args.device) * 0.1

    def planner_with(**changes) -> CEMPlanner:
        """objmm's planner over the model at `cfg` with `changes` (cuda_graph, compile)."""
        env = ModelEnv(model.task, model.predict_next, model.task.reward(), args.device)
        return CEMPlanner(env, CEMConfig(**{**vars(cfg), **changes}))

    def step_of(planner: CEMPlanner):
        """One planning step from a cold start, as timed."""

        def step():
            planner.reset()
            return planner.plan(obs)

        return step

    planner = planner_with()
    objmm_step = step_of(planner)

    with torch.no_grad():
        # the step beside its matmuls alone (how far the step is from them, and they from the floor)
        # and, for the cartpole, beside the plain loop: all interleaved in one timing
        sides = {
            "objmm": objmm_step,
            "matmuls": matmuls_of_step(
                model, cfg.population * args.episodes, cfg.horizon * cfg.iterations, args.precision
            ),
        }
        if cartpole:

            def plain():
                with rollout_precision(args.precision, torch.device(args.device)):
                    return plain_cem_step(model, obs, cfg)

            sides["plain"] = plain
        timed = dict(zip(sides, timed_together(list(sides.values()), args.repeats, args.device), strict=True))
        t_objmm, t_matmuls, t_plain = timed["objmm"], timed["matmuls"], timed.get("plain", float("nan"))
        graph = args.device.startswith("cuda")
        if graph:
            graphed = planner_with(cuda_graph=True)
            graph_step = step_of(graphed)
            planner.seed_noise(1), graphed.seed_noise(1)
            difference = (objmm_step() - graph_step()).abs().max().item()  # the first: captured, then replayed
            t_eager, t_graph = timed_pair(objmm_step, graph_step, args.repeats, args.device)
        if args.compile:  # the step as it runs by default on this device, with and without cem.compile
            plain_step = graph_step if graph else objmm_step
            compiled = planner_with(cuda_graph=graph, compile=True)
            compiled_step = step_of(compiled)
            (graphed if graph else planner).seed_noise(2), compiled.seed_noise(2)
            sync(args.device)
            start = time.perf_counter()
            first = compiled_step()  # compiled (and captured), then replayed
            sync(args.device)
            compile_s = time.perf_counter() - start
            compiled_difference = (plain_step() - first).abs().max().item()
            t_compiled, t_uncompiled = timed_pair(compiled_step, plain_step, args.repeats, args.device)
    sizes = [model.net.hidden[0].weight.shape[1], *[width] * depth, model.net.head.weight.shape[2]]
    per_row = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))  # FLOPs of one member's row
    flops = per_row * model.members * cfg.population * cfg.horizon * cfg.iterations * args.episodes
    with rollout_precision(args.precision, torch.device(args.device)):  # the floor at the step's arithmetic
        rate = matmul_gflops(args.device)
    floor = flops / rate / 1e9  # seconds
    result = {
        "env": args.env,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "episodes": args.episodes,
        "precision": args.precision,
        "objmm_ms": round(t_objmm * 1e3, 1),
        "plain_torch_ms": round(t_plain * 1e3, 1),
        "ratio_objmm_over_plain": round(t_objmm / t_plain, 3),
        "gflop_per_step": round(flops / 1e9, 1),
        "matmul_gflops": round(rate, 1),
        "flop_floor_ms": round(floor * 1e3, 1),
        "objmm_over_floor": round(t_objmm / floor, 2),
        "matmuls_alone_ms": round(t_matmuls * 1e3, 1),
        "matmuls_alone_over_floor": round(t_matmuls / floor, 2),
        "objmm_over_its_matmuls": round(t_objmm / t_matmuls, 2),
    }
    if graph:
        result |= {
            "graph_ms": round(t_graph * 1e3, 2),
            "eager_ms_beside_graph": round(t_eager * 1e3, 2),
            "graph_over_eager": round(t_graph / t_eager, 3),
            "graph_over_floor": round(t_graph / floor, 2),
            "graph_max_action_difference": difference,
        }
    if args.compile:
        result |= {
            "compiled_ms": round(t_compiled * 1e3, 2),
            "uncompiled_ms_beside": round(t_uncompiled * 1e3, 2),
            "compiled_over_uncompiled": round(t_compiled / t_uncompiled, 3),
            "compiled_over_floor": round(t_compiled / floor, 2),
            "compile_s": round(compile_s, 1),
            "compiled_max_action_difference": compiled_difference,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
