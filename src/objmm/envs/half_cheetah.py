"""The PETS half cheetah (REFERENCE.md), its batched torch reward and model preprocessing."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium
import mujoco
import numpy as np
import torch

from objmm.envs.base import PETSMujocoEnv
from objmm.envs.task import Task

ENV_ID = "objmm/PETSHalfCheetah-v0"
# The standard model; PETS's copy differs only in rendering details.
_ASSET = Path(gymnasium.__file__).parent / "envs" / "mujoco" / "assets" / "half_cheetah.xml"
_TOTAL_MASS = 14.0  # the asset's compiler settotalmass="14"


def load_half_cheetah_model() -> mujoco.MjModel:
    """The asset compiled without its deprecated `settotalmass` attribute, then scaled to the same
    total mass the way MuJoCo asks (mj_setTotalmass + mj_setConst): every model array is equal to
    the bit, and MuJoCo no longer warns or writes MUJOCO_LOG.TXT into the working directory."""
    xml = _ASSET.read_text()
    attribute = f' settotalmass="{_TOTAL_MASS:g}"'
    if attribute not in xml:
        raise RuntimeError(f"{_ASSET} no longer has{attribute}: check the half cheetah's masses")
    model = mujoco.MjModel.from_xml_string(xml.replace(attribute, ""))
    mujoco.mj_setTotalmass(model, _TOTAL_MASS)
    mujoco.mj_setConst(model, mujoco.MjData(model))
    return model


def half_cheetah_reward(next_obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """Forward velocity minus 0.1 |a|^2. next_obs [..., 18], action [..., 6] -> [...]."""
    assert next_obs.shape[-1] == 18 and action.shape[-1] == 6, (next_obs.shape, action.shape)
    return next_obs[..., 0] - 0.1 * (action**2).sum(-1)


def half_cheetah_model_inputs(obs: torch.Tensor) -> torch.Tensor:
    """obs [..., 18] -> [obs[1], sin obs[2], cos obs[2], obs[3:]] [..., 18] (the x velocity is dropped)."""
    angle = obs[..., 2:3]
    return torch.cat([obs[..., 1:2], torch.sin(angle), torch.cos(angle), obs[..., 3:]], dim=-1)


class PETSHalfCheetahEnv(PETSMujocoEnv):
    """Observation [(x_after - x_before) / dt, qpos[1:] (8), qvel (9)]; 6 torques in [-1, 1];
    1000 steps of 0.05 s (five 0.01 s steps), no termination."""

    metadata = {"render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"], "render_fps": 20}
    asset = str(_ASSET)
    frame_skip_steps = 5
    reset_noise_default = 0.001

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        # gymnasium's MujocoEnv._initialize_simulation (as of gymnasium 1.4), with our loader
        model = load_half_cheetah_model()
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        return model, mujoco.MjData(model)

    @staticmethod
    def state_from_observation(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """obs [..., 18] -> (qpos [..., 9] with x = 0, qvel [..., 9]); x does not change the dynamics."""
        qpos = np.concatenate([np.zeros_like(obs[..., :1]), obs[..., 1:9]], axis=-1)
        return qpos, obs[..., 9:18]

    @staticmethod
    def observation_from_state(qpos_before: np.ndarray, qpos: np.ndarray, qvel: np.ndarray, dt: float) -> np.ndarray:
        velocity = (qpos[..., :1] - qpos_before[..., :1]) / dt
        return np.concatenate([velocity, qpos[..., 1:], qvel], axis=-1)


# Box of the sampled dataset: velocities from PETS-scale running, angles from the joint limits.
_JOINT_LOW = (-0.52, -0.785, -0.4, -1.0, -1.2, -0.5)
_JOINT_HIGH = (1.05, 0.785, 0.785, 0.7, 0.87, 0.5)
TASK = Task(
    env_id=ENV_ID,
    name="PETS half cheetah",
    obs_dim=18,
    action_dim=6,
    action_low=-1.0,
    action_high=1.0,
    episode_steps=1000,
    reward_fn=half_cheetah_reward,
    model_inputs=half_cheetah_model_inputs,
    model_input_dim=18,
    delta_targets=(False,) + (True,) * 17,
    # [x velocity, rootz, rooty, 6 joint angles, x/z/angular root velocities, 6 joint velocities]
    state_low=(-2.0, -0.5, -math.pi, *_JOINT_LOW, -2.0, -5.0, -15.0) + (-30.0,) * 6,
    state_high=(15.0, 0.5, math.pi, *_JOINT_HIGH, 15.0, 5.0, 15.0) + (30.0,) * 6,
    obs_names=(
        "x_velocity",
        "rootz",
        "rooty",
        "bthigh",
        "bshin",
        "bfoot",
        "fthigh",
        "fshin",
        "ffoot",
        "rootx_dot",
        "rootz_dot",
        "rooty_dot",
        "bthigh_dot",
        "bshin_dot",
        "bfoot_dot",
        "fthigh_dot",
        "fshin_dot",
        "ffoot_dot",
    ),
    periodic_dims=(2,),
    expert_reward=10000.0,
    expert_size=3000,
    on_policy_trials=100,
    table1_cem=(30, 500, 50, 5),
    paper_fig3_rho=(("expert", 0.07), ("on_policy", 0.46), ("sampled", 0.19)),
    paper_app_c_rho=(("random", 0.49), ("large", 0.54), ("trajectory", 0.63)),
)
PETSHalfCheetahEnv.task = TASK
ENV_CLASS = PETSHalfCheetahEnv
