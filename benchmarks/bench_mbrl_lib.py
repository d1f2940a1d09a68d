"""One Table 1 cartpole planning step: objmm's planner against mbrl-lib 0.2.0's, in one run.

mbrl-lib lives in its own folder, off objmm's environment: it pins packages objmm has outgrown
(gymnasium 0.26, hydra 1.0), and its code imports under the newer hydra and omegaconf below.

    pip install --target .mbrl-lib --no-deps mbrl==0.2.0 omegaconf==2.3.0 hydra-core==1.3.2 \
        antlr4-python3-runtime==4.9.3 termcolor
    PYTHONPATH=.mbrl-lib python benchmarks/bench_mbrl_lib.py [--repeats 7] [--device cpu] [--bfloat16]

Both plan one episode's step with the same work: PE 5 x 500 x 2 (SiLU), expectation over the
members (no particles: mbrl-lib's `expectation` propagation with one particle), CEM 400
candidates x horizon 25 x 5 iterations, 40 elites, alpha 0.1, truncated normal candidates, the
cartpole's known reward and model inputs (sin and cos of the angle). mbrl-lib's side is its own
`TrajectoryOptimizerAgent` over its `ModelEnv` and `OneDTransitionRewardModel(GaussianMLP)`, as its
PETS example builds them; objmm's is `CEMPlanner.plan`. The calls are interleaved.

`--bfloat16` also times objmm's step with `cem.precision: bfloat16`, in the same interleaving: context
beside the target, not the same step (mbrl-lib has no such setting, and the target is float32's).
"""

from __future__ import annotations

import argparse
import functools
import json
from dataclasses import replace

import gymnasium as gym
import numpy as np
import torch
from bench_planning import timed_together

import objmm.envs  # noqa: F401  (registers the envs)
from objmm.models import DynamicsModel
from objmm.planning import CEMConfig, CEMPlanner, ModelEnv

ENV_ID = "objmm/PETSCartpole-v0"


def mbrl_lib_agent(task, cfg: CEMConfig, width: int, depth: int, members: int, device: str, env):
    """mbrl-lib's PETS planner at these settings, over a model of this shape (random weights and
    input statistics from random rows: the planning step's cost does not depend on them)."""
    import mbrl.models
    import mbrl.planning
    import omegaconf

    in_size = task.model_inputs(torch.zeros(1, task.obs_dim)).shape[-1] + task.action_dim
    net = mbrl.models.GaussianMLP(
        in_size,
        task.obs_dim,
        device,
        num_layers=depth,
        ensemble_size=members,
        hid_size=width,
        propagation_method="expectation",
        activation_fn_cfg={"_target_": "torch.nn.SiLU"},
    )
    model = mbrl.models.OneDTransitionRewardModel(
        net, target_is_delta=True, normalize=True, learned_rewards=False, obs_process_fn=task.model_inputs
    )
    model.input_normalizer.update_stats(torch.randn(256, in_size).numpy())
    reward = task.reward()

    def reward_fn(action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return reward(next_obs, action).unsqueeze(-1)

    def termination_fn(action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(next_obs.shape[0], 1, dtype=torch.bool, device=next_obs.device)

    model_env = mbrl.models.ModelEnv(env, model, termination_fn, reward_fn)
    agent_cfg = omegaconf.OmegaConf.create(
        {
            "_target_": "mbrl.planning.TrajectoryOptimizerAgent",
            "_recursive_": False,  # hydra >= 1.1 instantiates nested configs; mbrl-lib builds its optimizer itself
            "planning_horizon": cfg.horizon,
            "replan_freq": 1,
            "verbose": False,
            "action_lb": "???",
            "action_ub": "???",
            "optimizer_cfg": {
                "_target_": "mbrl.planning.CEMOptimizer",
                "num_iterations": cfg.iterations,
                "elite_ratio": cfg.elites / cfg.population,
                "population_size": cfg.population,
                "alpha": cfg.alpha,
                "lower_bound": "???",
                "upper_bound": "???",
                "return_mean_elites": True,
                "device": device,
            },
        }
    )
    return mbrl.planning.create_trajectory_optim_agent_for_model(model_env, agent_cfg, num_particles=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--bfloat16", action="store_true", help="also objmm's step with cem.precision bfloat16")
    args = parser.parse_args()
    try:
        import mbrl
    except ImportError:
        raise SystemExit("bench_mbrl_lib: mbrl-lib is not importable; install it as this script's help says") from None
    torch.manual_seed(0)
    cfg, depth, members = CEMConfig(horizon=25, population=400, elites=40, iterations=5), 2, 5
    model = DynamicsModel(ENV_ID, members=members, width=args.width, depth=depth).to(args.device).eval()
    task = model.task
    model_env = ModelEnv(task, model.predict_next, task.reward(), args.device)
    planner = CEMPlanner(model_env, cfg)
    env = gym.make(ENV_ID)
    agent = mbrl_lib_agent(task, cfg, args.width, depth, members, args.device, env)
    obs, _ = env.reset(seed=0)
    obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=args.device).unsqueeze(0)

    def objmm_step(planner=planner):
        planner.reset()
        return planner.plan(obs_tensor)

    def mbrl_lib_step():
        agent.reset()
        return agent.act(obs)

    sides = [objmm_step, mbrl_lib_step]
    if args.bfloat16:
        sides.append(functools.partial(objmm_step, CEMPlanner(model_env, replace(cfg, precision="bfloat16"))))
    with torch.no_grad():
        t_objmm, t_mbrl, *t_bfloat16 = timed_together(sides, args.repeats, args.device)
    found = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "mbrl_lib": mbrl.__version__,
        "width": args.width,
        "objmm_ms": round(t_objmm * 1e3, 1),
        "mbrl_lib_ms": round(t_mbrl * 1e3, 1),
        "mbrl_lib_over_objmm": round(t_mbrl / t_objmm, 2),
        "numpy": np.__version__,
    }
    if t_bfloat16:
        found["objmm_bfloat16_ms"] = round(t_bfloat16[0] * 1e3, 1)
        found["mbrl_lib_over_objmm_bfloat16"] = round(t_mbrl / t_bfloat16[0], 2)
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
