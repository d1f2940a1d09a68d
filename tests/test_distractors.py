"""The cartpole with distractor entries (issue 21's stress axis): the cartpole's entries and reward
untouched, the distractors moved by nothing the agent does, the true simulator and PETS on it, and a
bad count in one line."""

from pathlib import Path

import numpy as np
import pytest
import torch

from objmm.envs import get_task, make_env
from objmm.envs.distractors import advance
from objmm.envs.simulator import SimulatorDynamics

ROOT = Path(__file__).resolve().parents[1]
D4 = "objmm/PETSCartpole-d4-v0"


def rollout(env_id: str, actions: list[float], seed: int = 3):
    env = make_env(env_id)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for a in actions:
        obs, reward, *_ = env.step([a])
        observations.append(obs)
        rewards.append(reward)
    env.close()
    return np.array(observations), np.array(rewards)


def test_the_cartpole_entries_and_reward_are_the_plain_cartpoles_and_the_distractors_ignore_the_action():
    actions = [2.0, -1.0, 0.5, 3.0, -3.0]
    plain, plain_rewards = rollout("objmm/PETSCartpole-v0", actions)
    with_z, rewards = rollout(D4, actions)
    assert with_z.shape == (6, 8) and np.array_equal(with_z[:, :4], plain) and np.allclose(rewards, plain_rewards)
    other, _ = rollout(D4, [-a for a in actions])
    assert np.array_equal(other[:, 4:], with_z[:, 4:]) and not np.array_equal(other[:, :4], with_z[:, :4])
    assert np.allclose(with_z[3, 4:], advance(with_z[0, 4:], 3))
    # pairs rotate (their norm is kept), and they do move
    assert np.allclose(np.hypot(with_z[:, 4], with_z[:, 5]), np.hypot(with_z[0, 4], with_z[0, 5]))
    assert not np.allclose(with_z[1, 4:], with_z[0, 4:])


def test_the_true_simulator_steps_the_distractors_too():
    observations, _ = rollout(D4, [1.0, -2.0])
    simulator = SimulatorDynamics(D4, threads=1)
    obs = torch.as_tensor(observations[:2])
    predicted = simulator(obs, torch.tensor([[1.0], [-2.0]]))
    assert torch.allclose(predicted, torch.as_tensor(observations[1:]), atol=1e-9)


def test_pets_learns_a_model_of_all_the_entries(in_tmp, objmm_in):
    objmm_in(
        in_tmp, ["pets", "--config", str(ROOT / "configs" / "pets" / "tiny.yaml"), "--env.id", D4, "--pets.trials", "1"]
    )
    from objmm.training.saved_models import load_model

    module, _ = load_model(in_tmp / "runs" / "pets_tiny" / "models" / "trial_00.pt")
    prediction = module.model(torch.zeros(3, 8), torch.zeros(3, 1))
    assert prediction.mean.shape[-1] == 8 and module.model.task.model_input_dim == 9


def test_a_distractor_count_below_zero_is_one_line(in_tmp, error_of):
    message = error_of(
        "pets", "--config", str(ROOT / "configs" / "pets" / "tiny.yaml"), "--env.id", "objmm/PETSCartpole-d-2-v0"
    )
    assert "the number of distractors must be >= 0, not -2" in message
    with pytest.raises(Exception, match="unknown env id 'objmm/Nope-v0'; known: .*PETSCartpole-d<n>-v0"):
        get_task("objmm/Nope-v0")
