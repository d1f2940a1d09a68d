"""One way to run an experiment: parse, check, log, run, finish; Ctrl-C says how to go on.

An experiment is a subclass of `ExperimentRun` that names its section (`section`, a settings
dataclass `settings_class`, whose `out` is the experiment's folder) and the file the same command
goes on from (`resume_file`), and writes `prepare()` (read and check its inputs: a bad one fails
here, before a W&B run or a file exists) and `run()`. `run_experiment` parses the config (with
`--resume FOLDER`, the one saved in that folder), calls `prepare`, saves the whole config into the
folder and logs it to the experiment's W&B run (named after its folder and continued across
resumes), then `run`; `publish` ends it: figures to W&B and the "results are in" line. The same
command again goes on: a results file (`results.ResultsFile`) keeps what is done.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.experiments.framework.config import changed_settings, experiment_cli


class ExperimentRun:
    """What an experiment reads from its parsed config: its own section (`settings`), the env, the
    seed, the device, the logger, and its folder (`out`)."""

    section: str
    settings_class: type
    resume_file: str
    #: the setting of the section that names the experiment's folder
    out_setting: str = "out"
    #: other experiments' sections this one reads too (name -> settings class), e.g. `pets`
    other_sections: dict[str, type] = {}

    def __init__(self, cli):
        self.cli = cli
        self.settings = getattr(cli.config_init, self.section)
        env = cli.config_init.env
        self.env = {"id": env.id, "kwargs": dict(env.kwargs or {})}
        self.seed = cli.datamodule.seed
        self.device = str(cli.trainer.strategy.root_device)
        self.logger = cli.trainer.logger
        self.out = Path(getattr(self.settings, self.out_setting))

    @classmethod
    def config_file(cls) -> str:
        """The run's whole config, saved in its folder: what `--resume FOLDER` runs again."""
        return f"{cls.section}_config.yaml"

    @property
    def resume_from(self) -> Path:
        """What the same command goes on from after a kill or Ctrl-C."""
        return self.out / self.resume_file

    def interrupted(self, command: str) -> str:
        """The line a Ctrl-C ends with: how to go on."""
        return f"the same objmm {command} command goes on from {self.resume_from}"

    def prepare(self) -> None:
        """Read and check the inputs (models, datasets): a bad one fails here, before anything is written."""

    def run(self):
        raise NotImplementedError

    def check_saved_config(self, may_change: tuple[str, ...] = ()) -> None:
        """A run goes on only with its own settings (`may_change` aside): a learning rate or planner
        changed halfway would leave a run made with neither the old settings nor the new."""
        saved = yaml.safe_load((self.out / self.config_file()).read_text())
        now = yaml.safe_load(self.cli.parser.dump(self.cli.config, skip_none=False))
        changed = changed_settings(saved, now, may_change)
        if changed:
            raise ObjmmError(
                f"{self.out} holds a {self.section} run with other settings ({'; '.join(changed[:3])}); go on with "
                f"its own (objmm {self.section} --resume {self.out}) or use another {self.section}.{self.out_setting}"
            )

    def save_config(self) -> None:
        """The whole parsed config into the run's folder, once its inputs have been accepted."""
        atomic.write_text(self.out / self.config_file(), self.cli.parser.dump(self.cli.config, skip_none=False))

    def log_config(self) -> None:
        """The whole parsed config into the experiment's W&B run (and any other logger)."""
        if self.logger:
            self.logger.log_hyperparams(self.cli.config.as_dict())

    def publish(
        self,
        summary: str,
        files: list[Path],
        figures: dict[str, Path] | None = None,
        metrics: dict[str, float] | None = None,
        tables: dict[str, list[dict]] | None = None,
    ) -> None:
        """The end of a run: its figures (name -> PNG), numbers and tables (name -> rows) to W&B,
        figures and tables under the experiment's section; one line of what it found and where."""
        if self.logger and (figures or metrics or tables):
            import wandb

            logged = {f"{self.section}/{k}": wandb.Image(str(p)) for k, p in (figures or {}).items()}
            for name, rows in (tables or {}).items():
                columns = sorted({k for row in rows for k in row})
                logged[f"{self.section}/{name}"] = wandb.Table(columns, [[r.get(k) for k in columns] for r in rows])
            self.logger.experiment.log({**logged, **(metrics or {})})
        print(f"{self.section}: {summary} -> " + ", ".join(str(f) for f in files), flush=True)


def resume_arguments(argv: list[str], command: str, runner: type[ExperimentRun]) -> list[str]:
    """`--resume FOLDER [settings]` -> the run's saved config, those settings on top, in its folder."""
    if "--resume" not in argv:
        return argv
    i = argv.index("--resume")
    if i + 1 >= len(argv):
        raise ObjmmError(f"--resume needs an objmm {command} run directory")
    folder, rest = argv[i + 1], argv[:i] + argv[i + 2 :]
    setting = f"--{runner.section}.{runner.out_setting}"
    if any(a.split("=")[0] in (setting, "--config") for a in rest):
        raise ObjmmError(f"--resume RUN_DIR takes the run's own config and directory; drop --config / {setting}")
    config = Path(folder) / runner.config_file()
    if not config.is_file():
        raise ObjmmError(f"{folder} is not an objmm {command} run (no {config.name} in it)")
    return ["--config", str(config), *rest, setting, folder]


def run_experiment(command: str, description: str, argv: list[str], runner: type[ExperimentRun]):
    """Parse an experiment's config (the shared sections and `runner.section`; with `--resume
    FOLDER`, the config saved there), check its inputs, save and log its config and run it. Ctrl-C
    ends with the line that the same command goes on from `resume_from` (written as it goes)."""
    run = open_experiment(command, description, argv, runner)
    run.log_config()
    try:
        return run.run()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(run.interrupted(command)) from None


def open_experiment(command: str, description: str, argv: list[str], runner: type[ExperimentRun]) -> ExperimentRun:
    """`run_experiment` up to the run: parsed, its inputs checked and its config saved, for a caller
    that runs several experiments' pieces itself (stacked PETS runs)."""
    argv = resume_arguments(argv, command, runner)
    cli = experiment_cli(
        command,
        f"{description} The same command again goes on where a run stopped; `objmm {command} --resume "
        f"FOLDER [--{runner.section}.setting VALUE ...]` runs the config saved in the run's folder again.",
        argv,
        {runner.section: runner.settings_class, **runner.other_sections},
        run_dir=f"{runner.section}.{runner.out_setting}",
    )
    run = runner(cli)
    run.prepare()
    run.save_config()
    return run


def finish_wandb(exit_code: int) -> None:
    """Close the W&B run so its offline files are complete when objmm returns (also when called in-process)."""
    if "wandb" not in sys.modules:  # nothing imported W&B, so no run was started
        return
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=exit_code)
    # W&B caches settings (the working directory it resolves relative run dirs against) process-wide;
    # tearing it down lets a later in-process call (a notebook, the tests) start clean.
    wandb.teardown()
