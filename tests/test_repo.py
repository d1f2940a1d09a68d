"""The README's commands, CI, Docker and configs stay in step with each other."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from objmm.cli import main
from objmm.data import TransitionDataset

ROOT = Path(__file__).resolve().parents[1]
README_COMMANDS = re.findall(r"^(python3 -m venv .*)$", (ROOT / "README.md").read_text(), re.M)


def test_readme_starts_with_setup_plus_main_job_and_setup_plus_tests():
    first_lines = (ROOT / "README.md").read_text().splitlines()[:8]
    assert README_COMMANDS[0] in first_lines and README_COMMANDS[1] in first_lines
    assert README_COMMANDS[0].endswith("objmm fit --config configs/fit/cartpole_pe.yaml")
    assert README_COMMANDS[1].endswith("python -m pytest")


def test_ci_runs_the_readme_test_command():
    assert README_COMMANDS[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_dockerfile_installs_like_the_readme_and_lints_clean():
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    pip_step = re.search(r"pip install [^&]*", README_COMMANDS[0]).group(0).strip()
    assert f"RUN {pip_step}" in dockerfile
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    dockerfiles = sorted(str(path) for path in (ROOT / "docker").glob("*Dockerfile"))
    assert len(dockerfiles) == 2  # the image's, and docker/check.sh's stand-in base
    result = subprocess.run([hadolint, *dockerfiles], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_passes_ruff():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def command_of(config: Path) -> list[str]:
    """Configs are laid out as the commands are: `configs/<command>/`; `models/` holds model sections."""
    if config.parent.name == "models":  # a model section, read by fit and pets configs alike
        return ["pets", "--config", str(config.parents[1] / "pets" / "tiny.yaml"), "--model", str(config)]
    if config.parent.name == "data":
        return ["data", "expert", "--config", str(config)]
    return [config.parent.name, "--config", str(config)]


def test_configs_are_laid_out_as_the_commands():
    from objmm.cli import COMMANDS

    folders = {p.name for p in (ROOT / "configs").iterdir() if p.is_dir()}
    assert folders - {"models", "data"} <= set(COMMANDS), folders - set(COMMANDS)
    assert not list((ROOT / "configs").glob("*.yaml"))  # every config in its command's folder


@pytest.mark.parametrize("config", sorted((ROOT / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command_of(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert ("steps:" if config.parent.name == "reproduce" else "cem") in capsys.readouterr().out


@pytest.mark.parametrize(
    "command",
    [
        ["fit", "--config", str(ROOT / "configs" / "fit" / "tiny.yaml"), "--trainer.max_epochs", "1"],
        ["pets", "--config", str(ROOT / "configs" / "pets" / "tiny.yaml"), "--pets.trials", "1"],
        ["data", "grid", "--points", "2", "--out", "g"],
    ],
    ids=lambda c: c[0],
)
def test_print_config_round_trips(command, in_tmp, capsys):
    """Print a subcommand's whole config, then run from the printed file alone: the same run."""
    subcommand = command[:2] if command[0] == "data" else command[:1]
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    Path("printed.yaml").write_text(printed)
    main([*subcommand, "--config", "printed.yaml"])
    if command[0] == "pets":
        assert json.loads(Path("runs/pets_tiny/state.json").read_text())["finished_trials"] == 1
    elif command[0] == "data":
        assert len(TransitionDataset.load("g")) == 2**5
    else:
        assert list(Path("runs").glob("wandb/offline-run-*/files/reward_vs_nll.png"))


#: each command's help names its own settings (a help printed for another parser would not)
OWN_SETTINGS = {
    "fit": ["--model.objective", "--trainer.callbacks", "--ckpt_path"],
    "pets": ["--pets.trials", "--pets.cem.horizon", "--resume FOLDER"],
    "pets-sweep": ["--sweep.seeds", "--pets.trials"],
    "population": ["--population.models", "--population.stack", "--resume FOLDER"],
    "fit-sweep": ["--sweep.models", "--trainer.callbacks"],
    "attack": ["--attack.method", "--attack.gradient.lr", "--resume FOLDER"],
    "reweight": ["--reweight.sizes", "--reweight.objectives", "--resume FOLDER"],
    "pairs": ["--pairs.tolerance", "--pairs.expert"],
    "data grid": ["--points", "--env.id"],
    "data on-policy": ["--run", "--trials"],
}


@pytest.mark.parametrize("command", list(OWN_SETTINGS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command.split(), "--help"])
    assert exit_info.value.code in (0, None)
    out = " ".join(capsys.readouterr().out.split())  # help text wraps at the terminal's width
    for expected in ["--config", "--print_config", *OWN_SETTINGS[command]]:
        assert expected in out, expected
