"""PETS's cross-entropy-method MPC planner, as a torchrl policy over TensorDicts.

Each call plans for a batch of N states at once (N parallel episodes): N x population action
sequences are rolled through the dynamics as one batch, scored with the known reward, and the
first action of the final mean is returned. The solution, shifted by one step, is the next call's
initial mean (warm start). torchrl's stock `CEMPlanner` has neither warm start nor action
bounds and steps a TensorDict per horizon step (1.35x slower than plain tensors here), so
`planning` below is written as plain batched tensor ops on `env.dynamics` / `env.reward`.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from tensordict import TensorDictBase
from torchrl.modules.planners import MPCPlannerBase

from objmm.envs import Task
from objmm.errors import ObjmmError, require_at_least_one
from objmm.planning.cuda_graph import CapturedCall
from objmm.planning.model_env import Dynamics, ModelEnv, rollout

PRECISIONS = ("float32", "tf32", "bfloat16")

#: where the standard normal's CDF puts -2 and 2, mapped to erfinv's (-1, 1)
_TRUNCATED_AT = math.erf(2 / math.sqrt(2))


def truncated_normal(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Standard normal draws truncated to [-2, 2], by the inverse CDF: one uniform draw a value and no
    value read on the host. Hand-written because torch 2.13's `nn.init.trunc_normal_` is a rejection
    sampler that reads `mask.any()` on the host each round: a CUDA graph cannot capture that, and
    how many draws it takes depends on the draws. This is the inverse-CDF method torch used before
    (2.11 did: its `trunc_normal_` was captured on the H200), so the draws do not depend on torch's
    version."""
    uniform = torch.empty(shape, device=device).uniform_(-_TRUNCATED_AT, _TRUNCATED_AT, generator=generator)
    return uniform.erfinv_().mul_(math.sqrt(2)).clamp_(-2.0, 2.0)


@contextmanager
def rollout_precision(precision: str, device: torch.device, captured: bool = False):
    """The arithmetic `CEMConfig.precision` names, for the model calls inside this block only.
    `captured`: the block is (or warms up) a step captured as a CUDA graph."""
    if precision == "bfloat16":
        # a captured CUDA graph must not keep autocast's cast weights across replays (torch's advice);
        # the warm-up before the capture does as the capture does, or a compiled model call
        # (`cem.compile`), whose guards include autocast's cache, would compile again inside the capture
        cache = not (captured or (device.type == "cuda" and torch.cuda.is_current_stream_capturing()))
        with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache):
            yield
    elif precision == "tf32" and device.type == "cuda":
        # a global flag with no context manager of torch's own: set for the block, then restored
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
    else:
        yield


@dataclass
class CEMConfig:
    """CEM settings. Table 1: cartpole 25/400/40/5, half cheetah 30/500/50/5."""

    horizon: int = 25
    population: int = 400
    elites: int = 40
    iterations: int = 5
    #: weight of the previous mean/variance in each CEM update (PETS: 0.1)
    alpha: float = 0.1
    #: iCEM's memory (Pinneri et al. 2020): the share of each iteration's elites that replaces as many
    #: new candidates in the next iteration, and (shifted one step) in the next step's first one.
    #: 0 is PETS's CEM, the default; the cost of a step does not change.
    keep_elites: float = 0.0
    #: the arithmetic of the candidates' rollouts through the model: `float32` (the default);
    #: `tf32`, float32 matmuls on TF32 tensor cores (CUDA only: the same as float32 on a CPU);
    #: `bfloat16`, the model's matmuls under bfloat16 autocast (the states and rewards stay float32).
    #: `benchmarks/bench_precision.py` measures what each does to real rewards (docs/benchmarks.md).
    precision: Literal["float32", "tf32", "bfloat16"] = "float32"
    #: on CUDA, each planning step replays one captured CUDA graph (`objmm.planning.cuda_graph`):
    #: the same draws and arithmetic as the eager step, without launching its kernels one by one from
    #: Python. Captured at a planner's first step for each number of rows (one eager step's time).
    #: Ignored on a CPU and with the simulator as the dynamics. On by default: on an H200 it planned
    #: every action to the bit as the eager step did, in 0.33x its time for one cartpole episode and
    #: 0.28x for the half cheetah's (docs/benchmarks.md); the device tests check the equality.
    cuda_graph: bool = True
    #: each model call of the rollouts through `torch.compile` (inductor fuses the elementwise work
    #: around the matmuls: inputs' transform and normalisation, SiLU and bias, the members' mean and
    #: the state update), compiled at a planner's first step (a few seconds; a new model of the same
    #: shape reuses it) and, on CUDA, captured with the rest of the step. Off by default: on a CPU it
    #: took 1.01-1.04x eager's time; on a GPU the one-episode step is ~16 kernels a model call, and
    #: their count, not their arithmetic, is what is left of its time (`benchmarks/census_planning.py`).
    #: Its rounding differs from eager's in the last bits, as any fused kernel's does.
    compile: bool = False

    def __post_init__(self):
        require_at_least_one(
            "cem", horizon=self.horizon, population=self.population, elites=self.elites, iterations=self.iterations
        )
        if self.elites > self.population:
            raise ObjmmError(f"cem.elites ({self.elites}) must not exceed cem.population ({self.population})")
        if not 0 <= self.alpha < 1:
            raise ObjmmError(f"cem.alpha must be in [0, 1), got {self.alpha}")
        if not 0 <= self.keep_elites <= 1:
            raise ObjmmError(f"cem.keep_elites must be in [0, 1], got {self.keep_elites}")
        if self.precision not in PRECISIONS:
            raise ObjmmError(f"cem.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    @property
    def kept(self) -> int:
        """Elites carried from one iteration (and step) to the next."""
        return round(self.keep_elites * self.elites)


class CEMPlanner(MPCPlannerBase):
    def __init__(self, env: ModelEnv, config: CEMConfig | None = None):
        super().__init__(env, action_key="action")
        self.config = config or CEMConfig()
        self.register_buffer("low", env.action_spec.space.low.clone())
        self.register_buffer("high", env.action_spec.space.high.clone())
        self._mean: torch.Tensor | None = None  # warm start [N, H, A]
        self._kept: torch.Tensor | None = None  # the last step's best elites, shifted [N, K, H, A]
        self.seed_noise(0)  # also starts `_captured`, the steps captured as CUDA graphs
        # the model call compiled (`cem.compile`); the simulator rolls whole sequences in C already
        compiled = self.config.compile and not hasattr(env.dynamics, "trajectory")
        self._compiled_dynamics = torch.compile(env.dynamics, dynamic=False) if compiled else None

    @classmethod
    def for_dynamics(
        cls,
        task: Task,
        dynamics: Dynamics,
        config: CEMConfig | None = None,
        env_kwargs: dict | None = None,
        device: torch.device | str = "cpu",
    ) -> CEMPlanner:
        """A planner over `dynamics` (a model's `predict_next`, or the simulator) that scores candidates
        with the task's reward in the env made with `env_kwargs` (e.g. the cartpole's x_goal)."""
        return cls(ModelEnv(task, dynamics, task.reward(**(env_kwargs or {})), device=device), config)

    def reset(self) -> None:
        """Forget the warm start (call at the start of each batch of episodes)."""
        self._mean = None
        self._kept = None

    def seed_noise(self, seed: int | list[int], blocks: int = 1) -> None:
        """Draw the candidates from this planner's own random stream, (re)seeded with `seed` (0 when
        made; torch's global generator is never used). With `blocks` > 1, each of that many equal
        blocks of rows gets the same samples (the rows of K stacked models: block k is model k's
        episodes): a model then plans exactly as it does alone, in a stack of any K, and all models
        meet the same samples (common random numbers). One draw per CEM iteration, whatever K.

        A list of seeds gives each block its own stream instead (K stacked PETS runs, each planning
        with its own seed): block k draws what a planner seeded with `seed[k]` alone draws."""
        seeds = seed if isinstance(seed, list) else [seed]
        if isinstance(seed, list):
            blocks = len(seed)
        self._noise_generators = [torch.Generator(self.low.device).manual_seed(int(s)) for s in seeds]
        self._noise_blocks = blocks
        # (rows, with kept elites) -> the step as a CUDA graph; a captured step draws from the
        # generators it was captured with, so new generators start it anew
        self._captured: dict[tuple, CapturedCall] = {}

    def _noise(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Truncated standard normal candidates' noise [N, P, H, A], within 2 standard deviations."""
        if shape[0] % self._noise_blocks:
            raise ObjmmError(f"{shape[0]} rows do not split into {self._noise_blocks} equal blocks")
        block = (shape[0] // self._noise_blocks, *shape[1:])
        draws = [truncated_normal(block, generator, device) for generator in self._noise_generators]
        if len(draws) > 1:  # a stream per block
            return torch.cat(draws)
        noise = draws[0]
        return noise if self._noise_blocks == 1 else noise.repeat(self._noise_blocks, *([1] * (len(shape) - 1)))

    def planning(self, tensordict: TensorDictBase) -> torch.Tensor:
        obs = tensordict["observation"]
        batch_shape = obs.shape[:-1]
        actions = self.plan(obs.reshape(-1, obs.shape[-1]))
        return actions.reshape(*batch_shape, -1)

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [N, O] -> first action [N, A] of the best action sequence for each row."""
        n = obs.shape[0]
        if self._mean is None or self._mean.shape[0] != n:
            mid = (self.low + self.high) / 2
            self._mean, self._kept = mid.expand(n, self.config.horizon, -1).clone(), None
        step = self.step
        if self._captures(obs):
            key = (n, self._kept is not None)
            if key not in self._captured:
                try:
                    captured = CapturedCall(self.step, (obs, self._mean, self._kept), self._noise_generators)
                except RuntimeError as error:  # an op of the dynamics or reward that a graph cannot hold
                    first = (str(error).strip() or type(error).__name__).splitlines()[0]
                    raise ObjmmError(
                        f"cem.cuda_graph: the planning step could not be captured as a CUDA graph ({first}); "
                        "set cem.cuda_graph false"
                    ) from None
                self._captured[key] = captured
            step = self._captured[key]
        action, self._mean, self._kept = step(obs, self._mean, self._kept)
        return action

    def _captures(self, obs: torch.Tensor) -> bool:
        """Whether the step for `obs` is replayed as a captured CUDA graph (`cem.cuda_graph`)."""
        return self.config.cuda_graph and obs.device.type == "cuda" and not hasattr(self.env.dynamics, "trajectory")

    def step(
        self, obs: torch.Tensor, mean: torch.Tensor, kept: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One planning step from the warm start `mean` [N, H, A] (and iCEM's `kept` elites
        [N, K, H, A], or None): the action [N, A], and the next step's warm start and kept elites.
        Reads no value on the host, so that it can be captured as one CUDA graph."""
        cfg = self.config
        n = obs.shape[0]
        low, high = self.low, self.high
        mid = (low + high) / 2
        var = ((high - low) / 4).square().expand_as(mean)
        for _ in range(cfg.iterations):
            # keep 2 standard deviations inside the action bounds (PETS)
            bound_var = torch.minimum((mean - low) / 2, (high - mean) / 2).square()
            std = torch.minimum(var, bound_var).sqrt()
            noise = self._noise((n, cfg.population, *mean.shape[1:]), obs.device)
            candidates = mean.unsqueeze(1) + std.unsqueeze(1) * noise  # [N, P, H, A]
            if kept is not None:  # iCEM: the best of before stand in for the last new candidates
                candidates = torch.cat([candidates[:, : cfg.population - kept.shape[1]], kept], dim=1)
            returns = self.evaluate(obs, candidates)  # [N, P]
            top = returns.topk(cfg.elites, dim=1).indices  # best first
            elites = candidates.gather(1, top[:, :, None, None].expand(-1, -1, *mean.shape[1:]))
            kept = elites[:, : cfg.kept] if cfg.kept else None
            mean = cfg.alpha * mean + (1 - cfg.alpha) * elites.mean(1)
            var = cfg.alpha * var + (1 - cfg.alpha) * elites.var(1, unbiased=False)
        warm_start = torch.cat([mean[:, 1:], mid.expand(n, 1, -1)], dim=1)
        if kept is not None:  # shifted like the mean, their last action the middle of the range
            kept = torch.cat([kept[:, :, 1:], mid.expand(n, kept.shape[1], 1, -1)], dim=2)
        # the one place actions are bounded: the truncated normal keeps candidates inside, and this
        # keeps the answer inside whatever the arithmetic did (torchrl's spec would clamp it silently)
        return torch.minimum(torch.maximum(mean[:, 0], low), high), warm_start, kept

    def evaluate(self, obs: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Sum of rewards of each candidate sequence: obs [N, O], candidates [N, P, H, A] -> [N, P]."""
        n, p, horizon, _ = candidates.shape
        start = obs.unsqueeze(1).expand(n, p, obs.shape[-1]).reshape(n * p, -1)
        flat = candidates.reshape(n * p, horizon, -1)
        with rollout_precision(self.config.precision, obs.device, captured=self._captures(obs)):
            states = self._rollout(start, flat)
        total = self.env.reward(states.float(), flat).sum(-1)
        # a model that predicts NaN/inf makes that candidate the worst, not the planner crash
        return torch.nan_to_num(total, nan=-1e9, posinf=-1e9, neginf=-1e9).view(n, p)

    def _rollout(self, start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The states after each action [B, H, O], through the compiled model call where `cem.compile`."""
        if self._compiled_dynamics is None:
            return self.env.predict_trajectory(start, actions)
        try:
            return rollout(self._compiled_dynamics, start, actions)
        # dynamo's or inductor's failure, from deep inside (torch.compile above imported torch._dynamo)
        except torch._dynamo.exc.TorchDynamoException as error:
            first = (str(error).strip() or type(error).__name__).splitlines()[0]
            raise ObjmmError(
                f"cem.compile: torch.compile could not compile the model call ({first}); set cem.compile false"
            ) from None
