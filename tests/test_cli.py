"""End-to-end `objmm fit` on tiny configs, and the one-line errors for bad input."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from objmm.cli import main
from objmm.data import TransitionDataset

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "fit" / "tiny.yaml")


def fit(*extra: str) -> None:
    main(["fit", "--config", TINY, *extra])


def test_tiny_fit_writes_an_offline_wandb_run_with_reward_and_figure(in_tmp):
    fit()
    runs = list((in_tmp / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    log = next(runs[0].glob("run-*.wandb")).read_bytes()
    for metric in (b"reward/mean", b"val/nll", b"random/nll", b"train/loss", b"summary/best_reward_epoch"):
        assert metric in log
    files = runs[0] / "files"
    assert (files / "reward_vs_nll.png").stat().st_size > 10_000
    assert list((files / "media" / "images").glob("reward_vs_nll_*.png"))
    assert "EpisodeRewardCallback" in (files / "objmm_config.yaml").read_text()
    assert list((in_tmp / "runs").glob("objmm-tests/*/checkpoints/*.ckpt"))


def final_checkpoint(run_id: str | None = None) -> dict:
    pattern = f"objmm-tests/{run_id or '*'}/checkpoints/epoch=2-*.ckpt"
    return torch.load(next(Path("runs").glob(pattern)), weights_only=False)


def test_a_resumed_fit_ends_identical_to_an_uninterrupted_one_in_the_same_run(in_tmp, capsys):
    fit("--trainer.max_epochs", "3")
    uninterrupted = final_checkpoint()
    for run in Path("runs/objmm-tests").iterdir():
        os.rename(run, Path("runs") / f"done-{run.name}")
    fit("--trainer.max_epochs", "2")  # stopped after epoch 1, as a kill after its checkpoint would leave it
    (run,) = Path("runs/objmm-tests").iterdir()
    checkpoint = next((run / "checkpoints").glob("*.ckpt"))
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1
    fit("--trainer.max_epochs", "3", "--ckpt_path", str(checkpoint))
    out = capsys.readouterr().out
    assert "epoch 2: episode reward" in out and "epoch 0: episode reward" in out.split("epoch 2")[0]
    assert [p.name for p in Path("runs/objmm-tests").iterdir()] == [run.name]  # the same run and folder
    assert len(list(Path("runs/wandb").glob(f"offline-run-*-{run.name}"))) == 2  # one W&B run id, two parts
    resumed = final_checkpoint(run.name)
    for key, value in uninterrupted["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    rewards = [c for name, c in uninterrupted["callbacks"].items() if "EpisodeReward" in name][0]
    rewards_resumed = [c for name, c in resumed["callbacks"].items() if "EpisodeReward" in name][0]
    assert rewards == rewards_resumed and len(rewards["reward_history"]) == 3


def test_objective_is_chosen_by_class_path(in_tmp):
    """The model section's objective is what trains and validates: its `val/loss` is the MSE under
    MSE and the NLL under GaussianNLL (the same model and data otherwise)."""
    last = {}
    for objective, loss in (("objmm.objectives.MSE", "mse"), ("objmm.objectives.GaussianNLL", "nll")):
        fit("--model.objective", objective, "--trainer.max_epochs", "1", "--trainer.logger.init_args.project", loss)
        checkpoint = torch.load(next(Path("runs", loss).glob("*/checkpoints/*.ckpt")), weights_only=False)
        (rewards,) = [c for name, c in checkpoint["callbacks"].items() if "EpisodeReward" in name]
        last[loss] = rewards["metrics_history"][-1]
    assert last["mse"]["val/loss"] == pytest.approx(last["mse"]["val/mse"], rel=1e-6)
    assert last["nll"]["val/loss"] == pytest.approx(last["nll"]["val/nll"], rel=1e-6)
    assert last["mse"]["val/loss"] != pytest.approx(last["mse"]["val/nll"], rel=1e-3)
    assert last["mse"]["val/nll"] != pytest.approx(last["nll"]["val/nll"], rel=1e-3)  # trained differently


def test_objmm_help_lists_every_command_and_a_mistyped_one_gets_a_guess(capsys, error_of):
    from objmm.cli import COMMANDS

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"\n  {command} " in out, command
    assert error_of("populaton") == (
        "objmm: error: unknown command 'populaton'; did you mean population? (`objmm --help` lists the commands)"
    )


def test_a_mistyped_setting_is_one_line_with_the_nearest_setting(in_tmp, error_of):
    err = error_of("pets", "--config", str(ROOT / "configs" / "pets" / "tiny.yaml"), "--pets.trails", "3")
    assert err == (
        "objmm: error: unrecognized arguments: --pets.trails 3 (--pets.trails: did you mean --pets.trials?); "
        "`objmm pets --help` lists the settings"
    )
    assert not Path("runs").exists()


def test_unknown_env_id(in_tmp, capsys, error_of):
    err = error_of("fit", "--config", TINY, "--env.id", "objmm/Nope-v0")
    assert err.splitlines()[-1].startswith("objmm: error: unknown env id 'objmm/Nope-v0'")


def test_unknown_config_key(in_tmp, capsys, error_of):
    err = error_of("fit", "--config", TINY, "--model.widht", "3")
    assert "widht" in err.splitlines()[-1]


def test_nll_on_a_deterministic_model(in_tmp, capsys, error_of):
    err = error_of(
        "fit",
        "--config",
        TINY,
        "--model.probabilistic",
        "false",
        "--model.objective",
        "objmm.objectives.GaussianNLL",
    )
    assert err == "objmm: error: objective GaussianNLL needs a probabilistic model; set model.probabilistic: true"


def bad_dataset(path: Path, obs: torch.Tensor) -> str:
    n = obs.shape[0]
    rows = TensorDict(
        obs=obs,
        action=torch.zeros(n, 1),
        next_obs=torch.zeros(n, 4),
        episode=torch.arange(n),
        step=torch.zeros(n),
        batch_size=[n],
    )
    TransitionDataset(rows, {"env_id": "objmm/PETSCartpole-v0", "name": "bad"}).save(path)
    return str(path)


def test_dataset_with_the_wrong_shape(in_tmp, capsys, error_of):
    path = bad_dataset(in_tmp / "bad", torch.zeros(50, 3))
    err = error_of("fit", "--config", TINY, "--data.train", path)
    assert err == "objmm: error: dataset 'bad': obs has shape [50, 3], but objmm/PETSCartpole-v0 needs [N, 4]"


def test_dataset_with_nan(in_tmp, capsys, error_of):
    obs = torch.zeros(50, 4)
    obs[7, 1] = float("nan")
    err = error_of("fit", "--config", TINY, "--data.train", bad_dataset(in_tmp / "nan", obs))
    assert err == "objmm: error: dataset 'bad': obs holds NaN or inf (first at row 7)"


def test_a_diverging_loss_stops_the_run(in_tmp, capsys, error_of):
    err = error_of("fit", "--config", TINY, "--model.lr", "1e30")
    assert err.startswith("objmm: error: the nll loss became") and "lower model.lr" in err


def test_the_env_section_reaches_the_model_the_data_and_the_reward_evaluation(in_tmp):
    from objmm.experiments.framework import ObjmmCLI
    from objmm.planning import CEMConfig
    from objmm.training import EpisodeRewardCallback

    cli = ObjmmCLI(args=["--config", TINY, "--env.kwargs", "{x_goal: 0.5}"], run=False)
    assert cli.model.env_kwargs == {"x_goal": 0.5} and cli.datamodule.env_kwargs == {"x_goal": 0.5}
    callback = EpisodeRewardCallback(episodes=2, cem=CEMConfig(horizon=3, population=8, elites=2, iterations=1))
    at_half = callback.evaluate(cli.model)
    cli.model.env_kwargs = {"x_goal": 0.0}
    at_zero = callback.evaluate(cli.model)
    assert not np.allclose(at_half, at_zero)  # the same model and seeds, scored at the goal it was made for


def test_a_fit_checkpoint_is_a_model_file_and_its_reward_episodes_follow_seed_everything(in_tmp):
    """`load_model` reads fit's checkpoints (objective included); the reward callback's episodes
    derive from `seed_everything`, not from a seed of their own."""
    from objmm.planning import CEMConfig
    from objmm.training import EpisodeRewardCallback
    from objmm.training.saved_models import load_model

    fit("--seed_everything", "3", "--trainer.max_epochs", "1", "--model.objective", "objmm.objectives.MSE")
    (checkpoint,) = Path("runs/objmm-tests").glob("*/checkpoints/*.ckpt")
    module, info = load_model(checkpoint)
    assert info == {"epoch": 0} and module.hparams["width"] == 32 and type(module.objective).__name__ == "MSE"
    (rewards,) = [c for n, c in torch.load(checkpoint, weights_only=False)["callbacks"].items() if "EpisodeReward" in n]
    logged = rewards["reward_history"][0][1]
    callback = EpisodeRewardCallback(episodes=2, cem=CEMConfig(horizon=5, population=16, elites=4, iterations=2))
    assert callback.evaluate(module, 0, seed=3).mean() == pytest.approx(logged, rel=1e-9)
    assert callback.evaluate(module, 0, seed=0).mean() != pytest.approx(logged, rel=1e-6)


def test_a_checkpoint_of_another_model_is_refused_not_trained(in_tmp, error_of):
    fit("--trainer.max_epochs", "1")
    (checkpoint,) = Path("runs/objmm-tests").glob("*/checkpoints/*.ckpt")
    runs = sorted(Path("runs/wandb").glob("offline-run-*"))
    err = error_of("fit", "--config", TINY, "--model.width", "64", "--ckpt_path", str(checkpoint))
    assert err == (
        f"objmm: error: --ckpt_path {checkpoint} holds a model with model.width = 32, but the config's is 64; "
        "resume a fit with its own config"
    )
    assert sorted(Path("runs/wandb").glob("offline-run-*")) == runs  # no W&B run opened for it
