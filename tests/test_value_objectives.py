"""The value-aware objectives against hand-computed losses: value equivalence (Grimm et al. 2020)."""

import dataclasses
import math
from pathlib import Path

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


# ----------------------------------------------------------------------------- value-gradient weighting


def test_rewards_to_go_sum_each_trajectorys_next_rows_in_step_order():
    from objmm.objectives.value_gradient import rewards_to_go

    rewards = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0])
    episode = torch.tensor([0, 1, 0, 1, 0])
    step = torch.tensor([2, 0, 0, 1, 1])  # episode 0 in step order: rows 2 (4), 4 (16), 0 (1)
    found = rewards_to_go(rewards, episode, step, horizon=2, discount=0.5)
    assert found.tolist() == [1.0, 2.0 + 0.5 * 8.0, 4.0 + 0.5 * 16.0, 8.0, 16.0 + 0.5 * 1.0]


def linear_value(objective, slopes: list[float]):
    """V(s) = slopes . s, so dV/ds = slopes on every row; the clip and scale set by hand."""
    from torch import nn

    value = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        value.weight.copy_(torch.tensor([slopes]))
    objective.value = value.requires_grad_(False)
    objective.obs_mean, objective.obs_std = torch.zeros(4), torch.ones(4)
    objective.target_std, objective.clip_norm, objective.mean_norm = torch.tensor(1.0), 100.0, 1.0


def test_value_gradient_mse_weighs_each_dimension_by_the_values_slope():
    from objmm.objectives import ValueGradientWeighted

    objective = bound(ValueGradientWeighted(loss="mse"))
    linear_value(objective, [2.0, 0.0, 1.0, 0.0])
    batch = batch_of()
    target = batch["next_obs"] - batch["obs"]
    mean = (target + torch.tensor([0.1, 5.0, -0.2, 5.0])).expand(2, -1, -1).clone().requires_grad_()
    loss = objective(Prediction(mean, None), target, batch)
    # (2 x 0.1)^2 + (0 x 5)^2 + (1 x -0.2)^2 + 0: the value does not see dimensions 1 and 3
    assert torch.allclose(loss, torch.full((2, 6), 0.04 + 0.04))
    loss.sum().backward()
    assert mean.grad[..., 1].abs().sum() == 0 and mean.grad[..., 0].abs().sum() > 0
    # the gradient's norm (sqrt 5) clipped at 1 and divided by the mean clipped norm (here 0.5)
    objective.clip_norm, objective.mean_norm = 1.0, 0.5
    clipped = objective(Prediction(mean.detach(), None), target, batch)
    assert torch.allclose(clipped, loss.detach() / 5 * 4, rtol=1e-5)


def test_value_gradient_nll_weighs_each_dimensions_nll_by_its_squared_slope():
    from objmm.objectives import ValueGradientWeighted

    objective = bound(ValueGradientWeighted(loss="nll", floor=0.0))
    linear_value(objective, [1.0, 1.0, 0.0, 0.0])
    batch = batch_of(rows=1)
    target = batch["next_obs"] - batch["obs"]
    mean, logvar = target + 0.5, torch.zeros(1, 1, 4)
    loss = objective(Prediction(mean[None], logvar), target, batch)
    per_dim = 0.5 * 0.25 + 0.5 * math.log(2 * math.pi)  # the NLL of an error of 0.5 at unit variance
    assert float(loss) == pytest.approx(2 * per_dim + 2 * per_dim)  # weights 2, 2, 0, 0 (mean 1)


def test_the_value_function_fits_the_rewards_to_go_of_real_rollouts():
    from objmm.data import load_source
    from objmm.objectives import ValueGradientWeighted
    from objmm.objectives.value_gradient import rewards_to_go

    data = load_source("random:4x100", CARTPOLE.env_id, seed=0)
    objective = bound(ValueGradientWeighted(horizon=10, steps=400))
    objective.on_fit_start(data)
    d = data.data
    targets = rewards_to_go(objective.reward(d["next_obs"], d["action"]), d["episode"], d["step"], 10, 0.99)
    x = (d["next_obs"] - objective.obs_mean) / objective.obs_std
    fitted = objective.value(x)[:, 0] * objective.target_std + objective.target_mean
    explained = 1 - float((fitted - targets).square().mean() / targets.var())
    assert explained > 0.8
    g = objective.gradient(d["next_obs"])
    assert g.norm(dim=-1).max() <= objective.clip_norm / objective.mean_norm + 1e-4
    assert float(g.norm(dim=-1).mean()) == pytest.approx(1.0, rel=1e-4)  # scaled to mean norm 1
    assert not any(p.requires_grad for p in objective.value.parameters())


def test_a_value_gradient_objective_before_its_fit_and_bad_settings_are_one_line():
    from objmm.errors import ObjmmError
    from objmm.objectives import ValueGradientWeighted

    objective = bound(ValueGradientWeighted())
    batch = batch_of()
    with pytest.raises(ObjmmError, match="fitted at the start of a fit"):
        objective(Prediction(torch.zeros(1, 6, 4), None), torch.zeros(6, 4), batch)
    with pytest.raises(ObjmmError, match="horizon, steps >= 1"):
        ValueGradientWeighted(horizon=0)
    no_reward = dataclasses.replace(CARTPOLE, reward_fn=None)
    with pytest.raises(
        ObjmmError, match="ValueGradientWeighted needs the task's reward; objmm/PETSCartpole-v0 has none"
    ):
        ValueGradientWeighted().bind(no_reward, {})


# ----------------------------------------------------------------------------- multi-step


@pytest.fixture
def rollouts():
    """Two 10-step cartpole rollouts, a small model of them, and the MultiStep objective fitted to them."""
    from objmm.data import load_source
    from objmm.models import DynamicsModel

    torch.manual_seed(0)
    data = load_source("random:2x10", CARTPOLE.env_id, seed=0)
    model = DynamicsModel(CARTPOLE.env_id, members=2, width=8, depth=1, probabilistic=True)
    model.fit_normaliser(data.data["obs"], data.data["action"])
    return data, model


def multi_step(model, data, **settings):
    from objmm.objectives import MultiStep

    objective = MultiStep(**settings)
    objective.bind(CARTPOLE, {})
    objective.attach(model)
    objective.on_fit_start(data)
    return objective


def test_multi_step_with_one_step_is_the_one_step_loss(rollouts):
    from objmm.objectives import gaussian_nll

    data, model = rollouts
    batch = data.data[:7]
    prediction, target = model(batch["obs"], batch["action"]), model.targets(batch["obs"], batch["next_obs"])
    one = multi_step(model, data, steps=1)(prediction, target, batch)
    assert torch.equal(one, gaussian_nll(prediction.mean, prediction.logvar, target))


def test_multi_step_equals_the_rollout_computed_by_hand(rollouts):
    from objmm.objectives import gaussian_nll

    data, model = rollouts
    d = data.data
    rows = [0, 3, 9, 12]  # row 9 ends episode 0: its rollout is its first step alone
    batch = d[rows]
    prediction, target = model(batch["obs"], batch["action"]), model.targets(batch["obs"], batch["next_obs"])
    found = multi_step(model, data, steps=3, discount=0.5)(prediction, target, batch)
    for i, row in enumerate(rows):
        for e in range(2):
            losses = [float(gaussian_nll(prediction.mean[e, i], prediction.logvar[e, i], target[i]).detach())]
            state = model.next_obs(d["obs"][row], prediction.mean[e, i])
            for j in (1, 2):
                nxt = row + j
                if nxt >= len(d) or int(d["episode"][nxt]) != int(d["episode"][row]):
                    break
                p = model(state.expand(2, 1, -1), d["action"][nxt].expand(2, 1, -1))  # member e's own row
                losses.append(float(gaussian_nll(p.mean[e, 0], p.logvar[e, 0], d["next_obs"][nxt] - state).detach()))
                state = model.next_obs(state, p.mean[e, 0])
            weights = [0.5**j for j in range(len(losses))]
            expected = sum(w * v for w, v in zip(weights, losses, strict=True)) / sum(weights)
            assert float(found[e, i].detach()) == pytest.approx(expected, rel=1e-5), (row, e)
    # the rollout's later steps reach the model's weights through its own predicted states
    found.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_rows_of_another_dataset_end_their_rollout_and_one_step_data_is_refused(rollouts):
    from objmm.data import load_source
    from objmm.errors import ObjmmError
    from objmm.objectives import gaussian_nll

    data, model = rollouts
    other = load_source("random:2x10", CARTPOLE.env_id, seed=5).data[:6]  # the same episode and step numbers
    prediction, target = model(other["obs"], other["action"]), model.targets(other["obs"], other["next_obs"])
    found = multi_step(model, data, steps=3)(prediction, target, other)
    assert torch.allclose(found, gaussian_nll(prediction.mean, prediction.logvar, target))
    with pytest.raises(ObjmmError, match="MultiStep needs trajectories"):
        multi_step(model, load_source("grid:2", CARTPOLE.env_id), steps=3)
    with pytest.raises(ObjmmError, match="steps >= 1"):
        multi_step(model, data, steps=0)


def test_a_multi_step_fit_on_one_step_data_is_one_line(in_tmp, error_of):
    config = str(Path(__file__).resolve().parents[1] / "configs" / "fit" / "tiny.yaml")
    message = error_of("fit", "--config", config, "--model.objective", "objmm.objectives.MultiStep")
    assert message.splitlines()[-1].startswith("objmm: error: MultiStep needs trajectories")
