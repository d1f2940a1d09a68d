import math

import gymnasium
import numpy as np
import pytest
import torch

import objmm.envs  # noqa: F401  (registers the envs)
from objmm.envs import get_task, make_env
from objmm.envs.cartpole import cartpole_model_inputs, cartpole_reward
from objmm.errors import ObjmmError

CARTPOLE = "objmm/PETSCartpole-v0"


def test_cartpole_is_registered_with_the_reference_facts():
    env = gymnasium.make(CARTPOLE)
    inner = env.unwrapped
    assert env.spec.max_episode_steps == 200
    assert inner.dt == pytest.approx(0.04)
    assert inner.model.opt.timestep == pytest.approx(0.02)
    assert inner.model.opt.integrator == 1  # RK4
    assert (inner.model.geom_contype == 0).all()
    assert inner.model.actuator_gear[0, 0] == 100
    assert list(inner.model.jnt_range[0]) == [-2.5, 2.5]
    assert env.action_space.low[0] == -3 and env.action_space.high[0] == 3


def test_observation_layout_and_reset_noise():
    env = make_env(CARTPOLE)
    starts = np.stack([env.reset(seed=s)[0] for s in range(300)])
    assert starts.shape == (300, 4)
    assert np.abs(starts.mean(0)).max() < 0.03
    assert np.allclose(starts.std(0), 0.1, atol=0.02)
    inner = env.unwrapped
    obs = env.step(np.array([3.0]))[0]
    assert np.allclose(obs, np.concatenate([inner.data.qpos, inner.data.qvel]))  # [x, theta, x_dot, theta_dot]
    assert obs[2] > starts[-1][2]  # pushing right accelerates the cart to the right


def test_episode_runs_200_steps_without_termination():
    env = make_env(CARTPOLE)
    env.reset(seed=0)
    for t in range(200):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (t == 199)


def test_reward_at_known_states():
    upright = torch.tensor([0.0, math.pi, 0.0, 0.0])
    down = torch.tensor([0.0, 0.0, 0.0, 0.0])
    zero = torch.zeros(1)
    assert cartpole_reward(upright, zero).item() == pytest.approx(1.0, abs=1e-6)
    assert cartpole_reward(down, zero).item() == pytest.approx(math.exp(-4), rel=1e-5)
    # the goal moves with x_goal, and the action costs 0.01 a^2
    shifted = torch.tensor([0.5, math.pi, 0.0, 0.0])
    assert cartpole_reward(shifted, zero, x_goal=0.5).item() == pytest.approx(1.0, abs=1e-6)
    assert cartpole_reward(shifted, zero).item() < 0.6
    assert cartpole_reward(upright, torch.tensor([2.0])).item() == pytest.approx(0.96, abs=1e-6)


@pytest.mark.parametrize("x_goal", [0.0, 0.7])
def test_cartpole_torch_reward_equals_env_reward_for_any_goal(x_goal):
    env = make_env(CARTPOLE, x_goal=x_goal)
    env.reset(seed=1)
    rng = np.random.default_rng(0)
    reward_fn = get_task(CARTPOLE).reward(x_goal=x_goal)
    for _ in range(100):
        action = rng.uniform(-4, 4, size=1)  # beyond the bounds too: both clip the same way
        obs, reward, *_ = env.step(action)
        expected = reward_fn(torch.from_numpy(obs), torch.from_numpy(np.clip(action, -3, 3))).item()
        assert reward == pytest.approx(expected, abs=1e-12)


def test_model_inputs_are_sin_cos_x_xdot_thetadot():
    obs = torch.tensor([[0.3, 1.0, -0.2, 2.0]])
    expected = torch.tensor([[math.sin(1.0), math.cos(1.0), 0.3, -0.2, 2.0]])
    assert torch.allclose(cartpole_model_inputs(obs), expected)


def test_unknown_env_id_is_a_clear_error():
    with pytest.raises(ObjmmError, match="unknown env id 'objmm/Nope-v0'.*PETSCartpole"):
        make_env("objmm/Nope-v0")


HALF_CHEETAH = "objmm/PETSHalfCheetah-v0"


def test_half_cheetah_reference_facts():
    env = make_env(HALF_CHEETAH)
    inner = env.unwrapped
    assert env.spec.max_episode_steps == 1000
    assert inner.dt == pytest.approx(0.05) and inner.frame_skip == 5
    obs, _ = env.reset(seed=0)
    assert obs.shape == (18,) and obs[0] == 0.0
    assert np.abs(obs[1:]).max() < 0.01  # reset noise N(0, 0.001)
    assert env.action_space.shape == (6,)


def test_half_cheetah_first_entry_is_the_root_displacement_over_dt():
    env = make_env(HALF_CHEETAH)
    env.reset(seed=3)
    inner = env.unwrapped
    rng = np.random.default_rng(0)
    for _ in range(20):
        x_before = inner.data.qpos[0]
        obs = env.step(rng.uniform(-1, 1, 6))[0]
        assert obs[0] == pytest.approx((inner.data.qpos[0] - x_before) / 0.05, abs=1e-12)
        assert np.allclose(obs[1:9], inner.data.qpos[1:]) and np.allclose(obs[9:], inner.data.qvel)


def test_half_cheetah_model_has_the_assets_masses_without_mujocos_deprecation_log(tmp_path, monkeypatch):
    import mujoco

    from objmm.envs.half_cheetah import _ASSET

    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    model = make_env(HALF_CHEETAH).unwrapped.model
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert model.body_mass.sum() == pytest.approx(14.0, abs=1e-12)
    with_attribute = mujoco.MjModel.from_xml_path(str(_ASSET))  # the deprecated settotalmass path
    for name in ("body_mass", "body_inertia", "body_invweight0", "dof_invweight0", "actuator_acc0"):
        np.testing.assert_array_equal(getattr(model, name), getattr(with_attribute, name), err_msg=name)


@pytest.mark.parametrize("env_id", [CARTPOLE, HALF_CHEETAH])
def test_env_reward_is_the_task_torch_reward(env_id):
    task = get_task(env_id)
    env = make_env(env_id)
    env.reset(seed=2)
    rng = np.random.default_rng(1)
    for _ in range(50):
        action = rng.uniform(task.action_low * 1.3, task.action_high * 1.3, size=task.action_dim)
        obs, reward, *_ = env.step(action)
        clipped = np.clip(action, task.action_low, task.action_high)
        assert reward == pytest.approx(
            task.reward_fn(torch.from_numpy(obs), torch.from_numpy(clipped)).item(), abs=1e-12
        )


def test_half_cheetah_model_inputs_and_targets():
    from objmm.envs.half_cheetah import half_cheetah_model_inputs

    obs = torch.arange(18.0).expand(3, 18)
    features = half_cheetah_model_inputs(obs)
    assert features.shape == (3, 18)
    assert torch.allclose(features[0, :3], torch.tensor([1.0, math.sin(2.0), math.cos(2.0)]))
    assert torch.equal(features[0, 3:], obs[0, 3:])
    assert get_task(HALF_CHEETAH).delta_targets == (False,) + (True,) * 17


@pytest.mark.parametrize("env_id", [CARTPOLE, HALF_CHEETAH])
def test_state_conversions_round_trip(env_id):
    env = make_env(env_id)
    env.reset(seed=0)
    inner = env.unwrapped
    obs = env.step(env.action_space.sample())[0]
    qpos, qvel = inner.state_from_observation(obs[None])
    inner.set_state(qpos[0], qvel[0])
    again = inner.observation_from_state(qpos, inner.data.qpos[None], inner.data.qvel[None], inner.dt)[0]
    assert np.allclose(again[1:], obs[1:])
