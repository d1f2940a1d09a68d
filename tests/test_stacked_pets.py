"""Stacked PETS runs (`pets-sweep` with `sweep.stack`): K runs trained as one network and planned in
one CEM call per step, each run's numbers those it has alone."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import CARTPOLE, histories

from objmm.cli import main
from objmm.data import load_source
from objmm.experiments.framework.config import wandb_run_id
from objmm.objectives import MultiStep
from objmm.training import DynamicsModule, TransitionDataModule
from objmm.training.stacked import StackedDynamicsModule, fit_stacked
from objmm.training.trainer import bare_trainer

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["pets-sweep", "--config", str(ROOT / "configs" / "pets-sweep" / "tiny.yaml")]


def models_and_data(k: int, device: torch.device, **model) -> tuple[list[DynamicsModule], list[TransitionDataModule]]:
    """K small models, each with its own initialisation and its own random rollouts."""
    modules, datamodules = [], []
    for seed in range(k):
        module = DynamicsModule(
            CARTPOLE, members=3, width=32, depth=2, lr=0.003, weight_decay=[1e-4, 2e-4, 3e-4], **model
        )
        module.model.reset_parameters(torch.Generator().manual_seed(seed))
        rows = load_source("random:2x40", CARTPOLE, seed=seed)
        datamodule = TransitionDataModule(CARTPOLE, batch_size=16, ensemble_size=3, seed=seed)
        datamodule = datamodule.with_dataset(rows, fit_index=seed, split="rows")
        datamodule.setup("fit")
        modules.append(module.to(device))
        datamodules.append(datamodule)
    return modules, datamodules


@pytest.mark.parametrize("probabilistic", [True, False])
def test_stacked_training_ends_where_each_model_ends_alone(probabilistic, device):
    modules, datamodules = models_and_data(3, device, probabilistic=probabilistic)
    alone = copy.deepcopy(modules)
    losses = fit_stacked(modules, datamodules, bare_trainer(3, str(device)))
    for module, one, datamodule, loss in zip(modules, alone, copy.deepcopy(datamodules), losses, strict=True):
        trainer = bare_trainer(3, str(device))
        trainer.fit(one, datamodule=datamodule)
        assert loss == pytest.approx(float(trainer.callback_metrics["train/loss"]), rel=1e-5)
        mine, theirs = module.state_dict(), one.state_dict()
        for name, value in theirs.items():
            torch.testing.assert_close(mine[name].to(value.device), value, rtol=1e-4, atol=1e-5, msg=name)
    start = models_and_data(1, device, probabilistic=probabilistic)[0][0]
    moved = (modules[0].model.net.head.weight - start.model.net.head.weight).abs().max()
    assert moved > 1e-3  # they did train (model 0 started where a fresh seed-0 model starts)


def test_a_stack_takes_only_models_of_one_shape_and_a_stateless_loss(device):
    modules, _ = models_and_data(2, device)
    other = DynamicsModule(CARTPOLE, members=3, width=16, depth=2, lr=0.003, weight_decay=[1e-4, 2e-4, 3e-4])
    with pytest.raises(Exception, match="model 1 of the stack differs from model 0 in architecture, objective or lr"):
        StackedDynamicsModule([modules[0], other])
    multi = DynamicsModule(CARTPOLE, members=3, width=32, depth=2, objective=MultiStep())
    with pytest.raises(
        Exception, match="stacked training takes the NLL or MSE objective; model 1 trains with MultiStep"
    ):
        StackedDynamicsModule([modules[0], multi])


def assert_same_runs(a: dict[str, list[dict]], b: dict[str, list[dict]]) -> None:
    assert a.keys() == b.keys()
    for run in a:
        assert len(a[run]) == len(b[run]), run
        for mine, theirs in zip(a[run], b[run], strict=True):
            assert mine.keys() == theirs.keys()
            for key, value in theirs.items():
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-5), f"{run} trial {mine['trial']} {key}"


@pytest.fixture(scope="module")
def alone(tmp_path_factory, objmm_in) -> Path:
    """The tiny sweep (D and PE, seeds 0 and 1, 3 trials, incremental), one run after another."""
    where = tmp_path_factory.mktemp("alone")
    objmm_in(where, [*SWEEP, "--pets.trials", "3", "--pets.training", "incremental", "--pets.incremental_epochs", "1"])
    return where / "runs" / "sweep_tiny"


def test_stacked_runs_equal_the_runs_alone_and_log_each_to_its_own_wandb_run(alone, in_tmp, capsys):
    main([*SWEEP, "--pets.trials", "3", "--pets.training", "incremental", "--pets.incremental_epochs", "1",
          "--sweep.stack", "2", "--sweep.out", "stacked"])  # fmt: skip
    out = capsys.readouterr().out
    assert "pets-sweep: 2 stacks (D_s0+D_s1, PE_s0+PE_s1)" in out  # two stacks of 2
    assert "pets-sweep: stack D_s0+D_s1" in out and "pets-sweep: stack PE_s0+PE_s1" in out
    assert "trial 3/3: 2 episodes step" in out
    assert_same_runs(histories(in_tmp / "stacked"), histories(alone))
    index = json.loads((in_tmp / "stacked" / "index.json").read_text())["runs"]
    assert [e["run"] for e in index] == ["D_s0", "D_s1", "PE_s0", "PE_s1"]
    for run in ("D_s0", "PE_s1"):
        state = json.loads((in_tmp / "stacked" / run / "state.json").read_text())
        assert state["wandb_trials"] == 3
        assert (in_tmp / "stacked" / run / "pets_curve.png").stat().st_size > 10_000  # drawn once, at the end
        (part,) = Path("runs/wandb").glob(f"offline-run-*-{wandb_run_id('pets', f'stacked/{run}')}")
        log = next(part.glob("run-*.wandb")).read_bytes()
        assert b"reward/mean" in log and b"pets_curve" in log and run.encode() in log


def test_a_stack_whose_runs_a_kill_left_apart_catches_up_and_goes_on(alone, in_tmp, capsys):
    """One run of a stack saved its trial and the other had not: the one behind catches up alone,
    then both go on together, and every run still equals its run alone."""
    shutil.copytree(alone.parent.parent / "runs", in_tmp / "runs")  # for the configs' relative paths
    shutil.rmtree(in_tmp / "runs" / "sweep_tiny")
    args = [*SWEEP, "--pets.training", "incremental", "--pets.incremental_epochs", "1", "--sweep.stack", "2",
            "--sweep.models", '{PE: {members: 2, width: 16, depth: 1, probabilistic: true, lr: 0.003}}']  # fmt: skip
    main([*args, "--pets.trials", "1"])
    main(["pets", "--resume", "runs/sweep_tiny/PE_s0", "--pets.trials", "2"])  # PE_s0 one trial ahead
    capsys.readouterr()
    main([*args, "--pets.trials", "3"])
    out = capsys.readouterr().out
    assert "trial 2/3: training on 90 rows" in out and "trial 3/3: 2 episodes step" in out
    stacked = histories(in_tmp / "runs" / "sweep_tiny")
    assert_same_runs(stacked, {run: h for run, h in histories(alone).items() if run.startswith("PE")})


def test_a_stack_of_less_than_one_run_is_refused(in_tmp, error_of):
    assert error_of(*SWEEP, "--sweep.stack", "0") == "objmm: error: sweep.stack must be at least 1, got 0"


def test_a_stack_s_runs_record_one_episode_time_and_each_its_own_save(in_tmp):
    """The K runs of a stack share one episode: its seconds are the same for each run, not growing by
    the saves of the runs closed before it; each run's own save is `seconds/save`."""
    main([*SWEEP, "--pets.trials", "2", "--sweep.stack", "2", "--sweep.out", "stacked"])
    states = {run: json.loads((in_tmp / "stacked" / run / "state.json").read_text()) for run in ("PE_s0", "PE_s1")}
    for first, second in zip(states["PE_s0"]["history"], states["PE_s1"]["history"], strict=True):
        for key in ("seconds/episode", "seconds/planning", "seconds", "seconds/training"):
            assert first[key] == second[key], key
        assert 0 < first["seconds/save"] and 0 < second["seconds/save"]
