"""The value-aware objectives against hand-computed losses: value equivalence (Grimm et al. 2020)."""

import math

import pytest
import torch
from tensordict import TensorDict

from objmm.data import TransitionDataset
from objmm.envs import get_task
from objmm.models.ensemble import Prediction
from objmm.objectives import ValueEquivalence, build_objective

CARTPOLE = get_task("objmm/PETSCartpole-v0")


def batch_of(rows: int = 6, seed: int = 0, scale: float = 0.1) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(rows, 4, generator=g)
    return TensorDict(
        {
            "obs": obs,
            "action": torch.randn(rows, 1, generator=g),
            "next_obs": obs + scale * torch.randn(rows, 4, generator=g),
        },
        batch_size=[rows],
    )


def bound(objective):
    objective.bind(CARTPOLE, {})
    return objective


def test_value_equivalence_equals_the_hand_computed_loss():
    objective = bound(ValueEquivalence(functions=3, width=5, state_weight=0.25, loss="nll", seed=1))
    batch = batch_of()
    train = TransitionDataset(
        TensorDict({k: batch[k] for k in ("obs", "action", "next_obs")}, batch_size=[6]).update(
            {"episode": torch.zeros(6, dtype=torch.long), "step": torch.arange(6)}
        ),
        {"env_id": CARTPOLE.env_id},
    )
    objective.on_fit_start(train)
    target = batch["next_obs"] - batch["obs"]  # every cartpole entry is a delta target
    mean = (target + 0.05 * torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(2))).requires_grad_()
    logvar = torch.full((2, 6, 4), -1.0, requires_grad=True)
    loss = objective(Prediction(mean, logvar), target, batch)

    hidden, bias, out = objective.layers
    std_mean, std = batch["next_obs"].mean(0), batch["next_obs"].std(0)

    def value(k, s):  # V_k(s) for one state, by hand
        x = (s - std_mean) / std
        return sum(float(out[k, j, 0]) * math.tanh(float(x @ hidden[k, :, j]) + float(bias[k, 0, j])) for j in range(5))

    for e in range(2):
        for b in range(6):
            predicted = batch["obs"][b] + mean[e, b].detach()
            gap = sum((value(k, predicted) - value(k, batch["next_obs"][b])) ** 2 for k in range(3)) / 3
            err = (target[b] - mean[e, b].detach()) ** 2 * math.exp(1.0) + (-1.0) + math.log(2 * math.pi)
            expected = gap + 0.25 * 0.5 * float(err.sum())
            assert float(loss.detach()[e, b]) == pytest.approx(expected, rel=1e-5)
    # the gradient reaches the model's prediction (both terms) and nothing else: the V_k are fixed tensors
    loss.sum().backward()
    assert mean.grad.abs().sum() > 0 and logvar.grad.abs().sum() > 0
    assert not any(t.requires_grad for t in objective.layers)


def test_a_perfect_prediction_leaves_only_the_state_loss_and_the_objective_round_trips():
    objective = bound(ValueEquivalence(functions=4, width=8, state_weight=0.5, loss="mse"))
    batch = batch_of()
    target = batch["next_obs"] - batch["obs"]
    loss = objective(Prediction(target.expand(3, -1, -1), None), target, batch)
    assert torch.allclose(loss, torch.zeros(3, 6), atol=1e-6)
    wrong = objective(Prediction(target.expand(3, -1, -1) + 0.3, None), target, batch)
    assert (wrong > 0.5 * 0.09 - 1e-6).all()  # the value gap adds to the state loss (0.5 x 0.3^2)
    again = bound(build_objective(objective.spec()))
    assert all(torch.equal(a, b) for a, b in zip(again.layers, objective.layers, strict=True))  # same seed, same V_k
    assert not ValueEquivalence(loss="mse").needs_variance and ValueEquivalence().needs_variance


def test_value_equivalence_with_a_bad_state_loss_is_one_line():
    from objmm.errors import ObjmmError

    with pytest.raises(ObjmmError, match="must be 'nll' or 'mse'"):
        ValueEquivalence(loss="huber")


def test_training_on_value_equivalence_lowers_the_value_gap():
    from objmm.models import DynamicsModel

    torch.manual_seed(0)
    model = DynamicsModel(CARTPOLE.env_id, members=2, width=32, depth=1, probabilistic=True)
    batch = batch_of(rows=64, seed=3, scale=1.0)
    model.fit_normaliser(batch["obs"], batch["action"])
    objective = bound(ValueEquivalence(functions=4, width=16, state_weight=0.01))
    target = model.targets(batch["obs"], batch["next_obs"])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)

    def value_gap() -> float:
        with torch.no_grad():
            predicted = batch["obs"] + model(batch["obs"], batch["action"]).mean
            return float((objective.values(predicted) - objective.values(batch["next_obs"])).square().mean())

    before = value_gap()
    for _ in range(200):
        optimiser.zero_grad()
        objective(model(batch["obs"], batch["action"]), target, batch).mean().backward()
        optimiser.step()
    assert value_gap() < 0.5 * before
