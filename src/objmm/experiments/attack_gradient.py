"""The attack's first-order search (`attack.method: gradient`): a surrogate of the planner's choice,
descended through the model's own rollouts, with the LL held at the bound.

The planner (CEM with expectation propagation) ranks action sequences by the return the model's
mean predictions give them, and acts on the best. The surrogate copies that choice on a fixed
*decoy set*: `states` start states drawn from the validation set (where the controller goes), and
`sequences` uniform random action sequences of the planner's horizon from each, whose true returns
the simulator gives once. Per state, the model's predicted returns R_pred pick a sequence by a
softmax at `temperature`; the surrogate is the true return of that soft choice,
sum_j softmax(R_pred / T)_j R_true_j, averaged over states. Descending it teaches the model to
predict high returns for truly bad sequences, and the planner follows.

Only the head's mean columns serve the surrogate (the planner never reads the variance). They are
moved in *whitened* coordinates U: per member and output, dW = V diag(1 / sqrt(lambda + floor))
U, where V, lambda are the eigenvectors and values of the LL's curvature in that column (the
head inputs' second moment over the validation rows, weighted by the start model's precision).
There a unit step costs about the same LL in every direction, so a step may go far in directions
the data never sees (103 of the 201 eigenvalues of the cartpole P model's head are below 1e-6 of the
largest) and not at all in those it pins. The log-variance columns only raise the LL: every step,
a few Adam steps on the validation NLL alone (unless `refit_logvar: false`, which leaves them as
they were: the search then spends only the LL the mean columns can win back). When the LL falls
below `bound + margin`, the step climbs the LL instead of the surrogate. Each generation is `steps`
steps; its candidate is the head after them, raised above the bound if it is not, and `objmm
attack` keeps it only if its LL, measured as for every CMA-ES candidate, is at or above the bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.nn import functional as F

from objmm.data import TransitionDataset
from objmm.envs import get_task
from objmm.envs.simulator import SimulatorDynamics
from objmm.errors import ObjmmError, require_at_least_one
from objmm.models.ensemble import ensemble_linear
from objmm.objectives import gaussian_nll
from objmm.planning.model_env import rollout
from objmm.training.metrics import paper_ll_from_nll

#: log-variance Adam steps per surrogate step, and their rate
VARIANCE_STEPS, VARIANCE_LR = 5, 1e-3
#: at most this many LL-climbing steps to bring a generation's candidate above the bound
MAX_RAISE_STEPS = 500


@dataclass
class GradientSettings:
    """`attack.gradient:` the first-order search (used with `attack.method: gradient`).

    Args:
        steps: optimiser steps per generation.
        lr: Adam's step in whitened units (a unit step costs about 0.5 LL).
        states: decoy start states, drawn from the validation set.
        sequences: uniform random action sequences (the planner's horizon) per decoy state.
        temperature: of the softmax over predicted returns that stands in for the planner's choice.
        margin: the search keeps the LL this far above the bound.
        floor: the whitening's curvature floor, relative to each column's largest eigenvalue.
        refit_logvar: the log-variance columns climb the LL every step (False: they stay the start
            model's, and the search has only the mean columns and the LL the bound leaves it).
    """

    steps: int = 40
    lr: float = 0.01
    states: int = 128
    sequences: int = 64
    temperature: float = 1.0
    margin: float = 0.01
    floor: float = 1e-4
    refit_logvar: bool = True

    def __post_init__(self):
        require_at_least_one("attack.gradient", steps=self.steps, states=self.states, sequences=self.sequences)
        if not (self.lr > 0 and self.temperature > 0 and self.floor > 0 and self.margin >= 0):
            raise ObjmmError(
                "attack.gradient: lr, temperature and floor must be positive and margin not negative, got "
                f"{self.lr}, {self.temperature}, {self.floor}, {self.margin}"
            )


class GradientSearch:
    """The search's state (U, the log-variance columns, both optimisers) and one generation of it."""

    def __init__(
        self,
        model,
        validation: TransitionDataset,
        env: dict,
        horizon: int,
        bound: float,
        settings: GradientSettings,
        seed: int,
        device: str,
    ):
        self.model, self.settings, self.bound = model, settings, bound
        net = model.net
        self.members, self.outputs = net.members, net.out_dim
        self.task = get_task(env["id"])
        self.reward = self.task.reward(**env["kwargs"])
        head = net.head
        self.mean_weight = head.weight.detach()[..., : self.outputs].clone()
        self.mean_bias = head.bias.detach()[..., : self.outputs].clone()
        with torch.no_grad():
            data = validation.data.to(device)
            self.features = net.features(model.network_inputs(data["obs"], data["action"]))  # [E, N, W]
            self.targets = model.targets(data["obs"], data["next_obs"])
            start_logvar = net.bounded_logvar(
                self.head_output(head.weight[..., self.outputs :], head.bias[..., self.outputs :])
            )
            self.whiten = self.whitening(start_logvar)
            self.starts, self.actions, self.true_returns = self.decoys(data["obs"], env, horizon, seed)
        self.u = torch.zeros(self.members, self.outputs, self.features.shape[-1] + 1, device=device, requires_grad=True)
        self.logvar_weight = head.weight.detach()[..., self.outputs :].clone().requires_grad_(True)
        self.logvar_bias = head.bias.detach()[..., self.outputs :].clone().requires_grad_(True)
        self.mean_opt = torch.optim.Adam([self.u], lr=settings.lr)
        self.logvar_opt = torch.optim.Adam([self.logvar_weight, self.logvar_bias], lr=VARIANCE_LR)

    # ----------------------------------------------------------------- set-up
    def head_output(self, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return ensemble_linear(self.features, weight, bias)

    def whitening(self, logvar: torch.Tensor) -> torch.Tensor:
        """[E, O, W+1, W+1]: per member and output, the map from U to the column's change (weights, bias)."""
        inputs = torch.cat([self.features, torch.ones_like(self.features[..., :1])], dim=-1).double()  # [E, N, W+1]
        precision = torch.exp(-logvar).double()  # [E, N, O]
        # the paper LL is a mean over members, rows and outputs; its curvature in column (e, k):
        scale = self.members * inputs.shape[1] * self.outputs
        curvature = torch.einsum("eni,enk,enj->ekij", inputs, precision, inputs) / scale
        values, vectors = torch.linalg.eigh(curvature)
        values = values.clamp_min(0) + self.settings.floor * values.amax(-1, keepdim=True)
        return (vectors / values.sqrt().unsqueeze(-2)).float()

    def decoys(self, obs: torch.Tensor, env: dict, horizon: int, seed: int):
        """Start states from the validation rows, random sequences from each, their true returns."""
        s = self.settings
        generator = torch.Generator().manual_seed(seed)
        rows = torch.randperm(len(obs), generator=generator)[: s.states]
        starts = obs[rows].repeat_interleave(s.sequences, 0)  # [S*M, O]
        low, high = self.task.action_low, self.task.action_high
        shape = (len(starts), horizon, self.task.action_dim)
        actions = (torch.rand(shape, generator=generator) * (high - low) + low).to(obs)
        states = SimulatorDynamics(env["id"], **env["kwargs"]).trajectory(starts, actions)
        true_returns = self.reward(states, actions).sum(-1).view(len(rows), s.sequences)
        return starts, actions, true_returns

    # ----------------------------------------------------------------- the head, the LL, the surrogate
    def mean_head(self) -> tuple[torch.Tensor, torch.Tensor]:
        change = torch.einsum("ekij,ekj->eik", self.whiten, self.u)  # [E, W+1, O]
        return self.mean_weight + change[:, :-1], self.mean_bias + change[:, -1:]

    def ll(self, mean_weight, mean_bias, logvar_weight, logvar_bias) -> torch.Tensor:
        """The paper LL on the validation rows (what `objmm attack` measures), differentiably."""
        mean = self.head_output(mean_weight, mean_bias)
        logvar = self.model.net.bounded_logvar(self.head_output(logvar_weight, logvar_bias))
        nll = gaussian_nll(mean, logvar, self.targets).mean(0)
        return paper_ll_from_nll(nll, self.outputs).mean()

    def surrogate(self, mean_weight: torch.Tensor, mean_bias: torch.Tensor) -> torch.Tensor:
        """The true return of the sequence the model's predicted returns choose (softly), per state."""
        states = rollout(partial(self.model.mean_next, head=(mean_weight, mean_bias)), self.starts, self.actions)
        predicted = self.reward(states, self.actions).sum(-1).view_as(self.true_returns)
        choice = F.softmax(predicted / self.settings.temperature, dim=1)
        return (choice * self.true_returns).sum(1).mean()

    def step(self, climb_only: bool = False) -> float:
        """One step: the log-variance columns on the LL, then U on the surrogate (or on the LL when
        it is within `margin` of the bound). Returns the surrogate before the step (nan if it climbed)."""
        for _ in range(VARIANCE_STEPS if self.settings.refit_logvar else 0):
            self.logvar_opt.zero_grad()
            (-self.ll(*self.mean_head_detached(), self.logvar_weight, self.logvar_bias)).backward()
            self.logvar_opt.step()
        self.mean_opt.zero_grad()
        mean_weight, mean_bias = self.mean_head()
        ll = self.ll(mean_weight, mean_bias, self.logvar_weight.detach(), self.logvar_bias.detach())
        surrogate = float("nan")
        if climb_only or ll.item() < self.bound + self.settings.margin:
            (-ll).backward()
        else:
            loss = self.surrogate(mean_weight, mean_bias)
            surrogate = loss.item()
            loss.backward()
        self.mean_opt.step()
        return surrogate

    def mean_head_detached(self):
        with torch.no_grad():
            return self.mean_head()

    @torch.no_grad()
    def current_ll(self) -> float:
        return self.ll(*self.mean_head(), self.logvar_weight, self.logvar_bias).item()

    def generation(self) -> dict:
        """`steps` steps, then the LL raised above the bound if it is not: the generation's record."""
        surrogates = [self.step() for _ in range(self.settings.steps)]
        raised = 0
        while self.current_ll() < self.bound + self.settings.margin / 2 and raised < MAX_RAISE_STEPS:
            self.step(climb_only=True)
            raised += 1
        measured = [x for x in surrogates if not np.isnan(x)]
        return {"surrogate": self.current_surrogate(), "surrogate_steps": len(measured), "raise_steps": raised}

    @torch.no_grad()
    def current_surrogate(self) -> float:
        return self.surrogate(*self.mean_head()).item()

    @torch.no_grad()
    def head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The search's whole head: weight [E, W, 2O] and bias [E, 1, 2O], means then log-variances."""
        mean_weight, mean_bias = self.mean_head()
        return torch.cat([mean_weight, self.logvar_weight], dim=-1), torch.cat([mean_bias, self.logvar_bias], dim=-1)

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        return {
            "u": self.u.detach().cpu(),
            "logvar_weight": self.logvar_weight.detach().cpu(),
            "logvar_bias": self.logvar_bias.detach().cpu(),
            "mean_opt": _to_cpu(self.mean_opt.state_dict()),
            "logvar_opt": _to_cpu(self.logvar_opt.state_dict()),
        }

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.u.copy_(state["u"])
            self.logvar_weight.copy_(state["logvar_weight"])
            self.logvar_bias.copy_(state["logvar_bias"])
        self.mean_opt.load_state_dict(state["mean_opt"])
        self.logvar_opt.load_state_dict(state["logvar_opt"])


def gradient_generation(state: dict, search: GradientSearch, head, measure_ll, measure_rewards, s) -> dict:
    """`gradient.steps` first-order steps; their head is the generation's one candidate, measured
    and kept as a CMA-ES candidate is (`attack_cma.cma_generation`; `s`: the attack's settings)."""
    g, bound = len(state["history"]) + 1, state["start"]["ll"]
    t0 = time.perf_counter()
    record = {"generation": g, **search.generation()}
    theta = head.flat(*search.head())
    module = head.with_vector(theta)
    ll = measure_ll(module)  # measured as every CMA-ES candidate is: the search's own LL does not decide
    record.update(popsize=1, inside_bound=int(ll >= bound))
    if ll >= bound:
        reward = float(measure_rewards([module], f"  generation {g}/{s.generations}: ")[0])
        record.update(member_reward=reward, member_ll=ll)
        if reward < state["best"]["reward"]:
            state["best"] = {"theta": theta, "reward": reward, "ll": ll, "generation": g}
    record.update(best_reward=state["best"]["reward"], best_ll=state["best"]["ll"])
    record["seconds"] = time.perf_counter() - t0
    state["history"].append(record)
    return record


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value
