"""`objmm pets`: the online loop on a tiny config, killed and resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from objmm.cli import main
from objmm.data import TransitionDataset

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "pets" / "tiny.yaml")
STEPS, INITIAL_ROWS = 30, 60  # pets_tiny: 30-step episodes after random:2x30


def objmm(*args: str) -> list[str]:
    return [sys.executable, "-c", "from objmm.cli import main; main()", *args]


def finished_trials(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "state.json").read_text())["finished_trials"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_pets_run_killed_mid_way_resumes_with_every_trial_once(in_tmp):
    run_dir = in_tmp / "run"
    env = {**os.environ, "WANDB_MODE": "offline"}
    process = subprocess.Popen(
        objmm("pets", "--config", TINY, "--pets.run_dir", str(run_dir), "--pets.trials", "4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.time() + 120
    while finished_trials(run_dir) < 2 and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before_kill = finished_trials(run_dir)
    assert 1 <= done_before_kill < 4

    resumed = subprocess.run(objmm("pets", "--resume", str(run_dir)), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"trial {done_before_kill + 1}/4" in resumed.stdout and "trial 1/4" not in resumed.stdout

    state = json.loads((run_dir / "state.json").read_text())
    assert state["finished_trials"] == 4
    assert [h["trial"] for h in state["history"]] == [0, 1, 2, 3]
    assert all("new_data/nll" in h for h in state["history"][1:])  # the resumed trial measured the saved model
    dataset = TransitionDataset.load(run_dir / "dataset")
    assert len(dataset) == INITIAL_ROWS + 4 * STEPS == state["dataset_rows"]
    episodes, counts = dataset.data["episode"].unique(return_counts=True)
    assert len(episodes) == 2 + 4 and (counts == STEPS).all()  # every trial's episode exactly once
    assert (run_dir / "pets_curve.png").stat().st_size > 10_000
    saved = sorted(p.name for p in (run_dir / "models").iterdir())
    assert saved == ["trial_00.pt", "trial_01.pt", "trial_02.pt", "trial_03.pt"]
    assert [torch.load(run_dir / "models" / name)["dataset_rows"] for name in saved] == [60, 90, 120, 150]


def test_pets_logs_every_trial_on_new_train_and_held_out_data(in_tmp, capsys, accelerator):
    main(["pets", "--config", TINY, "--pets.run_dir", "r", "--pets.trials", "2", *accelerator])
    out = capsys.readouterr().out
    assert "trial 1/2: reward" in out and "trial 2/2: reward" in out
    assert "trial 2/2: epoch 2/2, training loss" in out and "trial 2/2: episode step 14/30, reward so far" in out
    assert "pets: 2 trials in r: state.json" in out
    history = json.loads(Path("r/state.json").read_text())["history"]
    assert "new_data/nll" not in history[0] and "new_data/nll" in history[1]
    for key in ("val/nll", "val/paper_ll", "val/paper_ll_batch_median", "train_data/nll", "train/loss", "reward/mean"):
        assert all(key in h for h in history), key
    for h in history:  # the planner's time, its first step apart (a CUDA graph's capture), inside the episode's
        assert 0 < h["seconds/planning_first"] and 0 < h["seconds/planning"]
        assert h["seconds/planning_first"] + h["seconds/planning"] < h["seconds/episode"]
    log = next(Path("runs/wandb").glob("offline-run-*/run-*.wandb")).read_bytes()
    for key in (b"reward/mean", b"new_data/nll", b"train_data/nll", b"val/paper_ll", b"data/x"):
        assert key in log


def test_pets_trains_on_nine_tenths_of_every_episode(in_tmp):
    main(["pets", "--config", TINY, "--pets.run_dir", "r", "--pets.trials", "1"])
    model = torch.load("r/models/trial_00.pt")
    assert model["dataset_rows"] == INITIAL_ROWS and model["train_rows"] == 2 * 27  # 3 of each 30 held out


def test_a_fit_model_section_runs_in_pets_and_mse_models_work(in_tmp, capsys):
    # the model section that configs/fit/cartpole_de.yaml (a fit config) reads
    assert yaml.safe_load((ROOT / "configs" / "fit" / "cartpole_de.yaml").read_text())["model"] == "../models/de.yaml"
    model_section = str(ROOT / "configs" / "models" / "de.yaml")
    main(["pets", "--config", TINY, "--model", model_section, "--pets.run_dir", "de", "--pets.trials", "1"])
    saved = torch.load("de/models/trial_00.pt")
    assert saved["hparams"]["members"] == 5 and saved["hparams"]["probabilistic"] is False
    main(
        [
            "pets",
            "--config",
            TINY,
            "--model.objective",
            "objmm.objectives.MSE",
            "--model.probabilistic",
            "false",
            "--pets.run_dir",
            "mse",
            "--pets.trials",
            "2",
        ]
    )
    history = json.loads(Path("mse/state.json").read_text())["history"]
    assert "new_data/mse" in history[1] and "val/nll" not in history[1]
    assert "mse on new data" in capsys.readouterr().out


def test_half_cheetah_incremental_pets_runs(in_tmp):
    main(
        [
            "pets",
            "--config",
            TINY,
            "--env.id",
            "objmm/PETSHalfCheetah-v0",
            "--pets.run_dir",
            "hc",
            "--pets.trials",
            "2",
            "--pets.training",
            "incremental",
            "--pets.incremental_epochs",
            "1",
            "--pets.episode_steps",
            "10",
        ]
    )
    dataset = TransitionDataset.load("hc/dataset")
    assert dataset.env_id == "objmm/PETSHalfCheetah-v0" and len(dataset) == INITIAL_ROWS + 2 * 10
    assert dataset.data["obs"].shape[1] == 18


def test_resume_on_a_directory_that_is_not_a_run(in_tmp, capsys, error_of):
    Path("empty").mkdir()
    err = error_of("pets", "--resume", "empty")
    assert err == "objmm: error: empty is not an objmm pets run (no pets_config.yaml in it)"


def test_a_run_with_other_settings_into_the_same_directory_is_refused(in_tmp, capsys, error_of):
    main(["pets", "--config", TINY, "--pets.run_dir", "r", "--pets.trials", "1"])
    state = Path("r/state.json").read_text()
    err = error_of("pets", "--config", TINY, "--pets.run_dir", "r", "--data.batch_size", "8")
    assert err == (
        "objmm: error: r holds a pets run with other settings (data.batch_size: 16 -> 8); go on with its own "
        "(objmm pets --resume r) or use another pets.run_dir"
    )
    assert Path("r/state.json").read_text() == state


def test_a_run_that_failed_before_its_first_trial_can_be_started_again(in_tmp, capsys, error_of):
    err = error_of("pets", "--config", TINY, "--pets.run_dir", "r", "--data.train", "nope")
    assert "dataset source 'nope'" in err
    main(["pets", "--config", TINY, "--pets.run_dir", "r", "--pets.trials", "1"])
    assert json.loads(Path("r/state.json").read_text())["finished_trials"] == 1


def test_a_finished_run_goes_further_with_resume_and_more_trials(in_tmp, capsys):
    main(["pets", "--config", TINY, "--pets.run_dir", "r", "--pets.trials", "1"])
    main(["pets", "--resume", "r", "--pets.trials", "2"])
    assert "trial 2/2" in capsys.readouterr().out
    assert json.loads(Path("r/state.json").read_text())["finished_trials"] == 2
    assert "trials: 2" in Path("r/pets_config.yaml").read_text()


@pytest.mark.parametrize("training", ["full", "incremental"])
def test_a_resumed_run_repeats_an_uninterrupted_one(training, in_tmp):
    settings = ["--pets.training", training, "--pets.incremental_epochs", "1"]
    main(["pets", "--config", TINY, "--pets.run_dir", "whole", "--pets.trials", "3", *settings])
    main(["pets", "--config", TINY, "--pets.run_dir", "parts", "--pets.trials", "1", *settings])
    main(["pets", "--resume", "parts", "--pets.trials", "3"])

    def numbers(run: str) -> list[dict]:
        history = json.loads(Path(run, "state.json").read_text())["history"]
        return [{k: v for k, v in h.items() if not k.startswith("seconds")} for h in history]

    assert numbers("whole") == numbers("parts")
    assert torch.equal(
        TransitionDataset.load("whole/dataset").data["obs"], TransitionDataset.load("parts/dataset").data["obs"]
    )


def test_resume_with_another_architecture_is_refused_and_the_config_kept(in_tmp, capsys, error_of):
    main(["pets", "--config", TINY, "--pets.run_dir", "r", "--pets.trials", "1"])
    config = Path("r/pets_config.yaml").read_text()
    err = error_of("pets", "--resume", "r", "--model.width", "64", "--pets.trials", "2")
    assert err == (
        "objmm: error: r holds a pets run with other settings (model.width: 16 -> 64); go on with its own "
        "(objmm pets --resume r) or use another pets.run_dir"
    )
    assert Path("r/pets_config.yaml").read_text() == config
    # a plain resume still works, and how the planner runs (eager or a captured graph) is not a change
    main(["pets", "--resume", "r", "--pets.trials", "2", "--pets.cem.cuda_graph", "false"])
    assert len(json.loads(Path("r/state.json").read_text())["history"]) == 2


@pytest.mark.slow
def test_pets_swings_up_and_balances_the_cartpole(in_tmp):
    """The CPU-scale config, 5 trials (~7 min): learning, not just running. The pole hanging still
    scores about 200 x 0.018 = 4; a reward above 170 needs a fast swing-up and balancing to the end."""
    config = str(ROOT / "configs" / "pets" / "cartpole.yaml")
    main(["pets", "--config", config, "--pets.run_dir", "run", "--pets.trials", "5"])
    history = json.loads(Path("run/state.json").read_text())["history"]
    rewards = [h["reward/mean"] for h in history]
    assert rewards[0] < 100 < max(rewards) and max(rewards) > 170, rewards
    assert history[-1]["new_data/nll"] < history[1]["new_data/nll"]  # (trial 0 has no earlier model)
