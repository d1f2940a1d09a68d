"""kill -9 at points spread over a run (training, an episode, a save): the run resumes, or starts
again, and ends with the same numbers as a run that was never killed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from objmm.cli import main
from objmm.data import TransitionDataset

ROOT = Path(__file__).resolve().parents[1]
PETS = ["pets", "--config", str(ROOT / "configs" / "pets" / "tiny.yaml"), "--pets.trials", "4"]
FIT = ["fit", "--config", str(ROOT / "configs" / "fit" / "tiny.yaml"), "--trainer.max_epochs", "3"]


def killed(args: list[str], seconds: float) -> None:
    """Start `objmm args` in a process of its own and SIGKILL it after `seconds`."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    command = [sys.executable, "-c", "from objmm.cli import main; main()", *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(seconds)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def references(tmp_path_factory, objmm_in) -> Path:
    """The runs that were never killed, made once for every kill point."""
    where = tmp_path_factory.mktemp("references")
    objmm_in(
        where,
        [*PETS, "--pets.run_dir", "reference"],
        [*FIT, "--trainer.logger.init_args.project", "reference"],
        [*DATA, "--out", "data_reference"],
    )
    return where


def pets_numbers(run: Path) -> list[dict]:
    history = json.loads((run / "state.json").read_text())["history"]
    return [{k: v for k, v in h.items() if not k.startswith("seconds")} for h in history]


DATA = ["data", "sampled", "--env.id", "objmm/PETSHalfCheetah-v0", "--size", "4000"]
SLOW = pytest.mark.slow


# seconds after start: during start-up and the initial data, during trials (training, episodes, saves)
@pytest.mark.parametrize("seconds", [pytest.param(2.5, marks=SLOW), 5.0, pytest.param(6.5, marks=SLOW), 8.0])
def test_pets_killed_anywhere_ends_as_if_never_killed(seconds, in_tmp, references):
    killed([*PETS, "--pets.run_dir", "run"], seconds)
    if (in_tmp / "run" / "state.json").exists():
        main(["pets", "--resume", "run"])
    else:  # killed before its first state: it starts again
        main([*PETS, "--pets.run_dir", "run"])
    assert pets_numbers(in_tmp / "run") == pets_numbers(references / "reference")
    reference, run = (TransitionDataset.load(d / "dataset") for d in (references / "reference", in_tmp / "run"))
    assert torch.equal(reference.data["next_obs"], run.data["next_obs"])


def final_weights(project: Path) -> dict:
    (checkpoint,) = project.glob("*/checkpoints/epoch=2-*.ckpt")
    return torch.load(checkpoint, weights_only=False)["state_dict"]


@pytest.mark.parametrize("seconds", [6.0, pytest.param(9.0, marks=SLOW)])
def test_fit_killed_anywhere_ends_as_if_never_killed(seconds, in_tmp, references):
    killed([*FIT, "--trainer.logger.init_args.project", "run"], seconds)
    checkpoints = list((in_tmp / "runs" / "run").glob("*/checkpoints/*.ckpt"))
    resume = ["--ckpt_path", str(checkpoints[0])] if checkpoints else []
    main([*FIT, "--trainer.logger.init_args.project", "run", *resume])
    reference, run = final_weights(references / "runs" / "reference"), final_weights(in_tmp / "runs" / "run")
    assert all(torch.equal(reference[k], run[k]) for k in reference)


@pytest.mark.parametrize("seconds", [4.0, pytest.param(5.5, marks=SLOW)])
def test_a_killed_dataset_command_leaves_no_half_dataset(seconds, in_tmp, references):
    killed([*DATA, "--out", "out"], seconds)
    if (in_tmp / "out").exists():  # killed after its rename: a whole dataset
        assert len(TransitionDataset.load(in_tmp / "out")) == 4000
    main([*DATA, "--out", "out"])  # the same command again finishes the job
    reference = TransitionDataset.load(references / "data_reference")
    assert torch.equal(TransitionDataset.load("out").data["obs"], reference.data["obs"])


@pytest.mark.parametrize("command", ["fit", "pets"])
def test_ctrl_c_says_where_to_resume(command, in_tmp):
    args = [*FIT, "--trainer.max_epochs", "200"] if command == "fit" else [*PETS, "--pets.trials", "200"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    process = subprocess.Popen(
        [sys.executable, "-c", "from objmm.cli import main; main()", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Ctrl-C once the run has saved something to resume from (a fixed sleep raced slow machines)
    saved = "runs/objmm-tests/*/checkpoints/*.ckpt" if command == "fit" else "runs/pets_tiny/models/trial_01.pt"
    deadline = time.monotonic() + 180
    while not list(in_tmp.glob(saved)) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    last = err.strip().splitlines()[-1]
    if command == "fit":
        assert last.startswith("objmm: interrupted; in epoch ") and "--ckpt_path runs/objmm-tests/" in last, last
    else:
        assert last == "objmm: interrupted; resume with: objmm pets --resume runs/pets_tiny", last


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped one, on purpose
def test_a_ctrl_c_swallowed_by_garbage_collection_still_stops_the_job():
    """Python drops a KeyboardInterrupt raised inside a finaliser ("Exception ignored in ..."); objmm's
    handler remembers it, and the next batch or episode step raises it again."""
    from objmm import interrupts

    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between these bytecodes, inside the finaliser
                pass

    with interrupts.handled():
        interrupts.check()  # nothing pressed yet
        Finalised()  # collected at once: the interrupt is raised inside __del__ and dropped
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    interrupts.check()  # the request ends with the command
