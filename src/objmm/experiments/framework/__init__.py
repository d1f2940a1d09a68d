"""The experiment framework: what every `objmm` experiment shares, written once.

- `config`: the settings (LightningCLI with the shared sections, an experiment's typed section,
  `plain` settings for resume keys, the W&B run named after the experiment's folder);
- `run`: `ExperimentRun` and `run_experiment` (parse, check, log, run; Ctrl-C's "go on" line), and
  `open_experiment` (parsed and checked, not run: for a caller that steps several runs itself);
- `results`: `ResultsFile`, keyed pieces written atomically, other settings refused, damage named;
- `runner`: `run_pieces`, an experiment's independent pieces in this process or on Ray;
- `clock`: `AttemptClock`, a resumable job's wall time over all its attempts.

A new experiment is a settings dataclass, an `ExperimentRun` subclass with `prepare` and `run`,
and its figure; `main(argv)` is one `run_experiment` call.
"""

from objmm.experiments.framework.config import ObjmmCLI, experiment_cli, plain
from objmm.experiments.framework.results import ResultsFile
from objmm.experiments.framework.run import ExperimentRun, finish_wandb, open_experiment, run_experiment
from objmm.experiments.framework.runner import RaySettings, run_pieces

__all__ = [
    "ExperimentRun",
    "ObjmmCLI",
    "RaySettings",
    "ResultsFile",
    "experiment_cli",
    "finish_wandb",
    "open_experiment",
    "plain",
    "run_experiment",
    "run_pieces",
]
