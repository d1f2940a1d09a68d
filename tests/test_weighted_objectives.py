"""Re-weighted losses (Sec. 5, App. D, online): d*, the weights, hand-computed losses, the pool, bad input."""

import math
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from objmm.data import TransitionDataset, random_rollouts
from objmm.data.distance import min_distance, min_distance_brute_force
from objmm.data.uniform_pool import UniformPool, near_reference_dataset
from objmm.envs import get_task
from objmm.envs.simulator import SimulatorDynamics
from objmm.models.ensemble import Prediction
from objmm.objectives import DistanceWeighted, GaussianNLL, RewardWeighted
from objmm.training import DynamicsModule
from objmm.training.saved_models import load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
CARTPOLE = "objmm/PETSCartpole-v0"
TASK = get_task(CARTPOLE)


def test_d_star_in_chunks_equals_brute_force_and_wraps_the_angle(device):
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(1000, 5, generator=generator, dtype=torch.float64).to(device) * 4  # angles outside [-pi, pi]
    reference = torch.randn(37, 5, generator=generator, dtype=torch.float64).to(device) * 4
    for scale in (None, [1.0, 2.0, 0.5, 3.0, 1.5]):
        chunked = min_distance(points, reference, periodic=(1,), scale=scale, chunk_rows=7)
        assert torch.allclose(chunked, min_distance_brute_force(points, reference, (1,), scale), atol=1e-12)
    # pi - 0.1 and -pi + 0.1 are 0.2 apart on the circle, not 2 pi - 0.2
    a = torch.tensor([[0.0, math.pi - 0.1, 0.0, 0.0, 0.0]], device=device)
    b = torch.tensor([[0.0, -math.pi + 0.1, 0.0, 0.0, 0.0], [7.0, math.pi - 0.1, 0.0, 0.0, 0.0]], device=device)
    assert min_distance(a, b, periodic=(1,)).item() == pytest.approx(0.2, abs=1e-6)
    assert min_distance(a, b).item() == pytest.approx(2 * math.pi - 0.2, abs=1e-6)  # no wrap: the other way round


def expert_like(path: Path) -> Path:
    """Two 3-step trajectories saved as a dataset: the first is the reference."""
    obs = torch.tensor([[[0.0, 3.0, 0.0, 0.0], [0.1, 3.1, 0.0, 0.0], [0.2, 3.2, 0.0, 0.0]],
                        [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]])  # fmt: skip
    action = torch.zeros(2, 3, 1)
    TransitionDataset.from_trajectories(CARTPOLE, obs, action, obs + 0.01).save(path)
    return path


def test_distance_weighted_takes_its_reference_from_the_trajectory_it_is_told(tmp_path):
    """`first_trajectory`: the reference is that trajectory of the expert (objmm reweight's sets drawn
    near several of them), and one the expert does not hold is one line."""
    from objmm.errors import ObjmmError
    from objmm.objectives import build_objective

    expert = str(expert_like(tmp_path / "expert"))
    second = DistanceWeighted(expert=expert, first_trajectory=1)
    second.bind(TASK, {})
    assert second.reference[:, 0].tolist() == [1.0, 1.0, 1.0]  # the second trajectory's x, not the first's
    assert build_objective(second.spec()).first_trajectory == 1  # a saved model's objective keeps it
    with pytest.raises(ObjmmError, match="holds 2 trajectories, fewer than the 3 needed"):
        DistanceWeighted(expert=expert, first_trajectory=2).bind(TASK, {})


def test_distance_weighted_nll_equals_the_hand_computed_value(tmp_path, device):
    objective = DistanceWeighted(expert=str(expert_like(tmp_path / "expert")), c=2.0)
    objective.bind(TASK, {})
    assert objective.reference.shape == (3, 5)  # only the first trajectory
    # row 1 sits on a reference point (d* = 0); row 2 is 0.5 from (0.1, 3.1, 0, 0, 0) in x_dot and 1.2 in action
    obs = torch.tensor([[0.0, 3.0, 0.0, 0.0], [0.1, 3.1, 0.5, 0.0]], device=device)
    action = torch.tensor([[0.0], [1.2]], device=device)
    batch = TensorDict(obs=obs, action=action, next_obs=obs, batch_size=[2])
    mean = torch.tensor([[[0.1, 0.0, 0.0, 0.0], [0.0, 0.2, 0.0, 0.0]]], device=device)
    logvar = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [math.log(4.0), 0.0, 0.0, 0.0]]], device=device)
    target = torch.zeros(1, 2, 4, device=device)
    loss = objective(Prediction(mean, logvar), target, batch)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    nll_1 = 0.5 * 0.1**2 + 4 * half_log_2pi
    nll_2 = 0.5 * math.log(4.0) + 0.5 * 0.2**2 + 4 * half_log_2pi
    expected = [2.0 * nll_1, 2.0 * math.exp(-math.hypot(0.5, 1.2)) * nll_2]
    assert loss.shape == (1, 2) and loss[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert GaussianNLL()(Prediction(mean, logvar), target, batch)[0].tolist() == pytest.approx([nll_1, nll_2], rel=1e-6)
    floored = DistanceWeighted(expert=objective.expert, c=2.0, floor=0.6)  # 2 exp(-1.3) = 0.545 is raised to 0.6
    floored.bind(TASK, {})
    assert floored.weight(batch).tolist() == pytest.approx([2.0, 0.6])


def test_the_linear_kernel_weighs_1_on_the_reference_and_0_at_the_edge_normalised_to_mean_1(tmp_path):
    objective = DistanceWeighted(expert=str(expert_like(tmp_path / "expert")), kernel="linear")
    objective.bind(TASK, {})
    # rows at d* = 0 (on the reference), 1 and 2 (the farthest: the edge) from (0, 3, 0, 0, 0)
    obs = torch.tensor([[0.0, 3.0, 0.0, 0.0], [0.0, 3.0, 1.0, 0.0], [0.0, 3.0, 0.0, 2.0]])
    rows = TransitionDataset.from_tensors(CARTPOLE, obs, torch.zeros(3, 1), obs)
    objective.on_fit_start(rows)
    assert objective.edge == pytest.approx(2.0)
    # raw weights 1, 0.5, 0 (mean 0.5): normalised 2, 1, 0; Kish's effective size 1.5^2 / (3 x 1.25)
    assert objective.weight(rows.data).tolist() == pytest.approx([2.0, 1.0, 0.0], abs=1e-6)
    assert objective.effective_fraction == pytest.approx(1.5**2 / (3 * 1.25))
    # without normalisation, the raw weights; exp's weights normalised the same way
    raw = DistanceWeighted(expert=objective.expert, kernel="linear", normalise=False)
    raw.bind(TASK, {})
    raw.on_fit_start(rows)
    assert raw.weight(rows.data).tolist() == pytest.approx([1.0, 0.5, 0.0], abs=1e-6)
    exp = DistanceWeighted(expert=objective.expert)
    exp.bind(TASK, {})
    exp.on_fit_start(rows)
    expected = torch.tensor([1.0, math.exp(-1), math.exp(-2)])
    assert exp.weight(rows.data).tolist() == pytest.approx((expected / expected.mean()).tolist(), rel=1e-5)
    # a set whose every row weighs 0 cannot be normalised: one line that says so
    far = TransitionDataset.from_tensors(CARTPOLE, obs[2:].repeat(2, 1), torch.zeros(2, 1), obs[2:].repeat(2, 1))
    with pytest.raises(Exception, match="every one of the 2 rows trained on weighs 0"):
        objective.on_fit_start(far)


def test_reward_weighted_mse_equals_the_hand_computed_value(device):
    objective = RewardWeighted(floor=0.05, loss="mse")
    objective.bind(TASK, {})
    # next states: the pole upright over x = 0 (reward 1 - 0.01 a^2) and hanging down (exp(-4), under the floor)
    next_obs = torch.tensor([[0.0, math.pi, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], device=device)
    action = torch.tensor([[2.0], [0.0]], device=device)
    batch = TensorDict(obs=torch.zeros(2, 4, device=device), action=action, next_obs=next_obs, batch_size=[2])
    mean = torch.ones(1, 2, 4, device=device) * torch.tensor([0.2, 0.4], device=device).view(1, 2, 1)
    loss = objective(Prediction(mean, None), torch.zeros(1, 2, 4, device=device), batch)
    assert loss[0].tolist() == pytest.approx([(1 - 0.04) * 0.2**2, 0.05 * 0.4**2], rel=1e-5)
    assert not objective.needs_variance and DistanceWeighted(loss="mse").name == "distance_weighted_mse"


def test_online_reweighting_takes_the_best_training_episode_as_its_reference():
    # episode 0 hangs down (reward ~0), episode 1 holds the pole up (reward ~1 a step)
    hang = torch.zeros(1, 4, 4)
    up = torch.tensor([0.0, math.pi, 0.0, 0.0]).expand(1, 4, 4)
    obs = torch.cat([hang, up])
    data = TransitionDataset.from_trajectories(CARTPOLE, obs, torch.zeros(2, 4, 1), obs)
    module = DynamicsModule(members=1, width=8, depth=1, objective=DistanceWeighted())
    module.objective.on_fit_start(data)
    assert torch.equal(module.objective.reference[:, :4], up[0])
    assert module.objective.reference_rewards == [pytest.approx(4.0, abs=1e-4)]
    one_step = TransitionDataset.from_tensors(CARTPOLE, torch.zeros(3, 4), torch.zeros(3, 1), torch.zeros(3, 4))
    with pytest.raises(Exception, match="no trajectories"):
        module.objective.on_fit_start(one_step)


def test_a_weighted_model_saves_and_loads_with_its_objective(tmp_path):
    expert = str(expert_like(tmp_path / "expert"))
    module = DynamicsModule(
        members=1, width=8, depth=1, objective=DistanceWeighted(expert=expert, trajectories=1, c=0.5)
    )
    loaded, _ = load_model(save_model(tmp_path / "m.pt", module))
    assert isinstance(loaded.objective, DistanceWeighted)
    assert (loaded.objective.expert, loaded.objective.c) == (expert, 0.5)
    assert torch.equal(loaded.objective.reference, module.objective.reference)


def test_the_pool_is_drawn_again_exactly_and_near_sets_keep_their_bound():
    pool = UniformPool(CARTPOLE, 5000, seed=3, chunk=1024)
    everything = torch.cat([pool.rows(c) for c in range(pool.chunks)])
    assert everything.shape == (5000, 5)
    low, high = pool.low, pool.high
    assert bool(((everything >= low) & (everything <= high)).all())
    picks = torch.tensor([4999, 0, 1500, 1024, 1023])
    assert torch.equal(pool.take(picks), everything[picks])
    reference = everything[:50]
    distances = pool.distances(reference)
    assert torch.allclose(distances, min_distance_brute_force(everything, reference, (1,)), atol=1e-5)
    near = near_reference_dataset(pool, distances, size=40, bound=2.0, seed=0)
    rows = torch.cat([near.data["obs"], near.data["action"]], dim=-1)
    assert len(near) == 40 and bool((min_distance(rows, reference, (1,)) <= 2.0 + 1e-5).all())
    # stepped in the simulator: next_obs is the true next state of each kept row
    stepped = SimulatorDynamics(CARTPOLE)(near.data["obs"].double(), near.data["action"].double())
    assert torch.allclose(near.data["next_obs"], stepped.float(), atol=1e-5)
    few = near_reference_dataset(pool, distances, size=10_000, bound=1.0)  # fewer near rows than asked for
    assert len(few) == int((distances <= 1.0).sum()) == few.metadata["pool_rows_within_bound"]


def test_a_weighted_objective_without_its_expert_is_one_line(in_tmp, error_of):
    tiny = str(ROOT / "configs" / "fit" / "tiny.yaml")
    objective = ["--model.objective", "objmm.objectives.DistanceWeighted"]
    message = error_of("fit", "--config", tiny, *objective, "--model.objective.expert", "no/such/expert")
    assert message.startswith("objmm: error: DistanceWeighted.expert: no expert dataset at no/such/expert")
    assert "\n" not in message
    random_rollouts("objmm/PETSHalfCheetah-v0", 1, 5).save("cheetah")
    message = error_of("fit", "--config", tiny, *objective, "--model.objective.expert", "cheetah")
    assert "expert dataset of objmm/PETSHalfCheetah-v0, but the model is for objmm/PETSCartpole-v0" in message
    assert "\n" not in message
