import numpy as np
import pytest
import torch

from objmm.data import TransitionDataset, grid_dataset, load_source, random_rollouts
from objmm.data.generate import step_from_observations
from objmm.envs import make_env
from objmm.errors import ObjmmError

CARTPOLE = "objmm/PETSCartpole-v0"


def test_grid_covers_every_combination_and_steps_the_simulator():
    grid = grid_dataset(CARTPOLE, points=3)
    assert len(grid) == 3**5
    obs, action = grid.data["obs"], grid.data["action"]
    assert sorted(action.unique().tolist()) == [-3.0, 0.0, 3.0]
    assert len(torch.unique(torch.cat([obs, action], 1), dim=0)) == 3**5
    env = make_env(CARTPOLE).unwrapped
    env.reset(seed=0)
    i = 100
    env.set_state(obs[i, :2].double().numpy(), obs[i, 2:].double().numpy())
    expected = env.step(action[i].numpy())[0]
    assert np.allclose(grid.data["next_obs"][i].numpy(), expected, atol=1e-5)


def test_default_grid_is_7_to_the_5():
    assert len(load_source("grid", CARTPOLE)) == 16807


def test_random_rollouts_are_trajectories():
    data = random_rollouts(CARTPOLE, episodes=3, horizon=5, seed=1)
    assert len(data) == 15 and data.has_trajectories()
    trajectories = data.trajectories()
    assert len(trajectories) == 3
    rows = data.data[trajectories[1]]
    assert rows["step"].tolist() == list(range(5))
    assert torch.allclose(rows["next_obs"][:-1], rows["obs"][1:])  # each step starts where the last ended


def test_save_and_load_give_identical_contents_and_metadata(tmp_path):
    data = random_rollouts(CARTPOLE, episodes=2, horizon=4)
    data.save(tmp_path / "d")
    data.save(tmp_path / "d")  # replacing an existing dataset works
    loaded = TransitionDataset.load(tmp_path / "d")
    assert (loaded.data == data.data).all()
    assert loaded.metadata == data.metadata
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_split_keeps_trajectories_whole_and_is_disjoint():
    data = random_rollouts(CARTPOLE, episodes=20, horizon=5)
    train, val = data.split(0.9, seed=0)
    assert len(train) == 90 and len(val) == 10
    assert not set(train.data["episode"].tolist()) & set(val.data["episode"].tolist())


def test_nan_in_a_dataset_is_named():
    obs = torch.zeros(5, 4)
    obs[3, 2] = float("nan")
    with pytest.raises(ObjmmError, match="obs holds NaN or inf \\(first at row 3\\)"):
        TransitionDataset.from_tensors(CARTPOLE, obs, torch.zeros(5, 1), torch.zeros(5, 4))


def test_wrong_shapes_are_named():
    with pytest.raises(ObjmmError, match=r"obs has shape \[5, 3\], but objmm/PETSCartpole-v0 needs \[N, 4\]"):
        TransitionDataset.from_tensors(CARTPOLE, torch.zeros(5, 3), torch.zeros(5, 1), torch.zeros(5, 4))


def test_unknown_source_is_named():
    with pytest.raises(ObjmmError, match="'grdi' is neither a saved dataset"):
        load_source("grdi", CARTPOLE)


def test_step_from_observations_matches_env_step():
    obs = torch.tensor([[0.1, 3.0, 0.0, 1.0]])
    env = make_env(CARTPOLE).unwrapped
    env.reset(seed=0)
    env.set_state(np.array([0.1, 3.0]), np.array([0.0, 1.0]))
    expected = env.step(np.array([1.5]))[0]
    assert np.allclose(step_from_observations(CARTPOLE, obs, torch.tensor([[1.5]])).numpy(), expected)


@pytest.mark.parametrize(
    "source,rows,kind",
    [
        ("babbling:3x10", 30, "babbling"),
        ("random:2x5", 10, "random"),
        ("sampled:40", 40, "sampled"),
        ("grid:2", 32, "grid"),
    ],
)
def test_every_source_spec_makes_its_dataset(source, rows, kind):
    dataset = load_source(source, CARTPOLE)
    assert len(dataset) == rows and dataset.metadata["source"] == kind
