"""The paper's attack search (Sec. 4.3): separable CMA-ES on the flat vector of a model's last layer.

Why separable CMA-ES (`cma`'s `CMA_diagonal: True`): the head has thousands of parameters (P 200
wide: 1608; the paper's 500 wide: 4008; PE: 5x that). Full CMA-ES keeps an n x n covariance,
O(n^2) memory and time per sample, and learns it at a rate of about 1/n^2 per generation, so over
the few dozen generations an attack can afford it stays near its initial isotropic shape; the
diagonal variant learns n variances at a rate of about 1/n, at O(n) a sample (Ros & Hansen 2008).

The LL bound is a soft penalty in the ranking (the paper: "a large penalty if the model validation
likelihood drops below the original value"): fitness = reward + `penalty` x max(0, bound - LL), so
a candidate just below the bound still ranks by its reward and CMA-ES's recombination is not spent
on climbing the LL alone. Only a candidate within the bound can become the attacked model. A
candidate whose penalty alone exceeds the start model's |reward| is not run: it ranks below every
candidate that was (fitness |start reward| + its penalty). `penalty: 1e6` is the hard rejection of
the first version (every candidate below the bound ranked by its LL alone).

The two groups of head columns differ in scale (the cartpole P model's mean weights have a standard
deviation of 0.04, its log-variance weights 0.31): each group gets its own initial step
(`sigma`, `logvar_sigma`), through cma's per-coordinate `CMA_stds`.

Each generation's candidates are evaluated K (`stack`) at a time through one batched network, every
candidate on the same episode starts and the same planner samples (common random numbers, as in
`objmm population`), so the differences in fitness are the models'.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch


class Head:
    """The last layer of a model as one flat vector (weights, then biases), and models with another
    vector in its place."""

    def __init__(self, module):
        self.module = module
        layer = module.model.net.layers[-1]
        self.shapes = [layer.weight.shape, layer.bias.shape]

    def logvar_columns(self) -> np.ndarray:
        """A mask over `vector()`: True where the entry is in a log-variance column (the head's
        outputs are the means, then the log-variances, in its last dimension)."""
        layer = self.module.model.net.layers[-1]
        outputs = self.module.model.net.out_dim
        column = torch.cat([torch.arange(layer.weight.numel()), torch.arange(layer.bias.numel())]) % (2 * outputs)
        return (column >= outputs).numpy()

    def group_stds(self) -> tuple[float, float]:
        """The standard deviation of the head's mean weights and of its log-variance weights."""
        weight = self.module.model.net.layers[-1].weight.detach()
        outputs = self.module.model.net.out_dim
        return float(weight[..., :outputs].std()), float(weight[..., outputs:].std())

    def vector(self) -> np.ndarray:
        layer = self.module.model.net.layers[-1]
        return self.flat(layer.weight, layer.bias)

    @staticmethod
    def flat(weight: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
        """A head's weight and bias as one vector (weights, then biases)."""
        return torch.cat([weight.detach().flatten(), bias.detach().flatten()]).double().cpu().numpy()

    def with_vector(self, theta: np.ndarray):
        """A copy of the module whose last layer holds `theta`."""
        module = copy.deepcopy(self.module)
        layer = module.model.net.layers[-1]
        flat = torch.as_tensor(np.asarray(theta), dtype=layer.weight.dtype, device=layer.weight.device)
        n = layer.weight.numel()
        with torch.no_grad():
            layer.weight.copy_(flat[:n].view(self.shapes[0]))
            layer.bias.copy_(flat[n:].view(self.shapes[1]))
        return module


def new_cma(theta: np.ndarray, sigma: float, popsize: int | None, seed: int, stds: np.ndarray | None = None):
    """Separable CMA-ES from `theta`, with step `sigma` (times `stds` per coordinate, if given) and
    cma's default population unless given."""
    import cma

    options = {
        "CMA_diagonal": True,
        "seed": seed % (2**31 - 1) + 1,
        "verbose": -9,
        "tolfun": 0,
        "tolx": 0,
        "tolflatfitness": 10**9,
    }
    if popsize:
        options["popsize"] = popsize
    if stds is not None:
        options["CMA_stds"] = np.asarray(stds, dtype=float)
    return cma.CMAEvolutionStrategy(theta, sigma, options)


def cma_generation(state: dict, head: Head, measure_ll: Callable, measure_rewards: Callable, s) -> dict:
    """One generation: ask, measure every candidate's LL (`measure_ll(module)`), run the episodes of
    those whose penalty does not already rank them last (`measure_rewards(modules, prefix)`, K at a
    time), tell the penalised fitness (`s`: the attack's settings); the generation's record, with
    `state["best"]` (within the bound only) and `state["history"]` brought up to date."""
    es = state["es"]
    g, bound, start = len(state["history"]) + 1, state["start"]["ll"], state["start"]["reward"]
    t0 = time.perf_counter()
    candidates = es.ask()
    modules = [head.with_vector(x) for x in candidates]
    lls = np.array([measure_ll(m) for m in modules])
    penalties = s.penalty * np.maximum(bound - lls, 0)
    run = np.flatnonzero(penalties <= abs(start))
    rewards = np.full(len(candidates), np.nan)
    if len(run):
        prefix = f"  generation {g}/{s.generations}, {len(run)} candidates: "
        rewards[run] = measure_rewards([modules[i] for i in run], prefix)
    # a candidate not run ranks below every one that was: no reward plus its penalty gets there
    fitness = np.where(np.isnan(rewards), abs(start), rewards) + penalties
    es.tell(candidates, fitness.tolist())
    inside = np.flatnonzero((lls >= bound) & ~np.isnan(rewards))
    record = {
        "generation": g,
        "inside_bound": int(len(inside)),
        "run": int(len(run)),
        "popsize": len(candidates),
        "sigma": float(es.sigma),
        "seconds": time.perf_counter() - t0,
    }
    if len(run):
        i = run[np.argmin(fitness[run])]  # the member CMA-ES ranks first, in or out of the bound
        record.update(ranked_first_reward=float(rewards[i]), ranked_first_ll=float(lls[i]))
    if len(inside):
        i = inside[np.argmin(rewards[inside])]
        record.update(member_reward=float(rewards[i]), member_ll=float(lls[i]))
        if rewards[i] < state["best"]["reward"]:
            state["best"] = {
                "theta": np.asarray(candidates[i]),
                "reward": float(rewards[i]),
                "ll": float(lls[i]),
                "generation": g,
            }
    record.update(best_reward=state["best"]["reward"], best_ll=state["best"]["ll"])
    state["history"].append(record)
    return record


def describe_generation(record: dict, generations: int) -> str:
    """One generation's progress line (of either search: CMA-ES's sigma, or the gradient search's surrogate)."""
    member = (
        f"best member reward {record['member_reward']:.1f} (LL {record['member_ll']:.4f})"
        if "member_reward" in record
        else "no member within the bound"
    )
    search = f"sigma {record['sigma']:.4g}" if "sigma" in record else f"surrogate {record['surrogate']:.2f}"
    ran = f" ({record['run']} run)" if "run" in record else ""
    return (
        f"generation {record['generation']}/{generations}: {record['inside_bound']}/{record['popsize']} within the "
        f"LL bound{ran}, {member}; best so far {record['best_reward']:.1f} (LL {record['best_ll']:.4f}), {search}, "
        f"{record['seconds']:.0f} s"
    )
