"""`objmm reproduce`: the paper's experiments at one scale, in order, each fed what it needs, and
a report that sets every number beside the paper's.

    objmm reproduce --scale smoke                 # every experiment on tiny settings, minutes on 2 cores
    objmm reproduce --scale cpu --only fig3,attack
    objmm reproduce --config configs/reproduce/paper.yaml --reproduce.ray.address auto

`--scale NAME` is `--config configs/reproduce/NAME.yaml` (run from the repository's root, where
`configs/` is). A scale is a list of steps, each an ordinary objmm command on its config with a few
settings on top; a step's folder is `<out>/<step name>` (`{dir}` in its settings, `{out}` the
reproduction's folder), and a step that reads another's output names it in `needs`, so the steps
run in the order the list gives. `reproduce.json` in `out` keeps every finished step (its command
line, its config, its wall time over every attempt): the same command again skips those, and the step that was
running when a kill came goes on where it stopped (every command resumes). `--only` runs the steps
of the names or groups given (`fig3`, `attack`, ...), refusing one whose inputs no finished step has
made. With `reproduce.ray.address`, every step whose command runs pieces (sweeps, population,
re-weighting, babbling) runs them on that Ray cluster.

At the end, `report/report.md` (and the same table to W&B): for each of the paper's effects, our
number with its interval, the paper's, and a verdict, every number read from the steps' result
files (`objmm.experiments.findings`, written down by `report`), with each step's figures, wall time and the machine.
A scale longer than one sitting runs in parts: `--only` a part, then the next part with
`--reproduce.earlier` naming the last report's folder, whose steps it keeps (`report.write_report`).

Not an `ExperimentRun` of its own kind: it runs the others, in this process, one after another;
its own W&B run starts only when they have finished (a W&B run open in the process would swallow
theirs: Lightning's W&B logger joins a run in progress).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from objmm.commands import dispatch
from objmm.errors import ObjmmError, objmm_cause
from objmm.experiments import findings, report
from objmm.experiments.framework import ExperimentRun, RaySettings, ResultsFile, finish_wandb, run_experiment
from objmm.experiments.framework.clock import AttemptClock
from objmm.experiments.framework.config import changed_settings

RECORD = "reproduce.json"
CLOCKS = "reproduce_clocks.json"  # the running step's seconds so far, so a resumed step is timed whole
SCALES_DIR = Path("configs/reproduce")
#: the section that holds a command's Ray settings, for the commands that run pieces
RAY_SECTIONS = {
    "pets-sweep": "sweep",
    "fit-sweep": "sweep",
    "population": "population",
    "reweight": "reweight",
    "babbling": "babbling",
}


@dataclass
class Step:
    """One experiment of a reproduction.

    Args:
        name: its name, and its folder under `reproduce.out` (`{dir}` in `args`).
        command: the objmm command, with its subcommand where it has one (`data on-policy`).
        config: the command's config file.
        args: settings on top of the config (`population.out: "{dir}"`); `{out}` is the reproduction's
            folder, `{dir}` the step's.
        group: what `--only` calls it besides its name (`fig3`, `attack`, ...).
        needs: the steps whose outputs it reads.
        report: what the report reads from its folder (a reader of `objmm.experiments.findings`:
            `population`, `attack`, `reweight`, `fit_sweep`, `babbling`, `goals`, `pairs`, `pets_sweep`), or empty.
        minutes: its projected wall time at this scale, from measured rates (printed up front).
    """

    name: str
    command: str
    config: str | None = None
    args: dict = field(default_factory=dict)  # plain `dict`: jsonargparse would build a class_path of `Any`
    group: str = ""
    needs: list[str] = field(default_factory=list)
    report: str = ""
    minutes: float = 0.0


@dataclass
class ReproduceSettings:
    """The `reproduce:` section.

    Args:
        scale: the scale's name, as the report gives it (`smoke`, `cpu`, `paper`).
        steps: the experiments, in the order they run.
        only: run only the steps of these names or groups (empty: all).
        out: the steps' folders, `reproduce.json` and `report/`.
        ray: with an address, the steps that run pieces run them on this Ray cluster.
        redo: steps (names or groups) to run again although finished: their records are dropped
            (their wall times carried into the redo's, which goes on from them) and their commands go
            on in their folders, each resuming what it can (a sweep given more seeds runs only the
            new ones; a step whose command refuses its folder's other settings says so).
        earlier: the folder of an earlier report of this scale (`docs/reproduce/cpu`): the steps that
            have not run in `out` keep that report's findings, figures, wall times and dates where
            their settings have not changed since, so a scale too long for one sitting is
            reproduced in parts, each report building on the last.
    """

    scale: str = "smoke"
    steps: list[Step] = field(default_factory=list)
    only: list[str] = field(default_factory=list)
    out: str = "runs/reproduce"
    ray: RaySettings = field(default_factory=RaySettings)
    redo: list[str] = field(default_factory=list)
    earlier: str = ""

    def __post_init__(self):
        self.steps = [Step(**s) if isinstance(s, dict) else s for s in self.steps]
        names = [s.name for s in self.steps]
        if not names:
            raise ObjmmError("reproduce.steps is empty; a scale lists at least one experiment")
        for i, step in enumerate(self.steps):
            if names.count(step.name) > 1:
                raise ObjmmError(f"reproduce.steps: two steps are named {step.name!r}")
            for need in step.needs:
                if need not in names[:i]:
                    raise ObjmmError(f"reproduce.steps: {step.name} needs {need!r}, which is not a step before it")
            if step.report and step.report not in findings.READERS:
                raise ObjmmError(
                    f"reproduce.steps: {step.name} has report {step.report!r}; known: {', '.join(findings.READERS)}"
                )
        known = set(names) | {s.group for s in self.steps if s.group}
        for setting, chosen in (("--only", self.only), ("reproduce.redo", self.redo)):
            unknown = [name for name in chosen if name not in known]
            if unknown:
                raise ObjmmError(
                    f"{setting}: unknown step or group {unknown[0]!r}; this scale has {', '.join(sorted(known))}"
                )


def scale_arguments(argv: list[str]) -> list[str]:
    """`--scale NAME` -> `--config configs/reproduce/NAME.yaml`; `--only a,b` -> `--reproduce.only [a,b]`."""
    argv = list(argv)
    if "--scale" in argv:
        i = argv.index("--scale")
        if i + 1 >= len(argv):
            raise ObjmmError("--scale needs a name")
        name = argv[i + 1]
        config = SCALES_DIR / f"{name}.yaml"
        if not config.is_file():
            scales = sorted(p.stem for p in SCALES_DIR.glob("*.yaml"))
            where = (
                f"scales: {', '.join(scales)}" if scales else f"no {SCALES_DIR} here: run from objmm's repository root"
            )
            raise ObjmmError(f"--scale: unknown scale {name!r}; {where}")
        argv[i : i + 2] = ["--config", str(config)]
    if "--only" in argv:
        i = argv.index("--only")
        if i + 1 >= len(argv):
            raise ObjmmError("--only needs step or group names, comma-separated")
        names = [n.strip() for n in argv[i + 1].split(",") if n.strip()]
        argv[i : i + 2] = ["--reproduce.only", json.dumps(names)]
    return argv


def fill(value, out: Path, folder: Path):
    """A step's setting with `{out}` and `{dir}` replaced (in strings, lists and dicts)."""
    if isinstance(value, str):
        return value.replace("{out}", str(out)).replace("{dir}", str(folder))
    if isinstance(value, list):
        return [fill(v, out, folder) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, out, folder) for k, v in value.items()}
    return value


def step_argv(step: Step, out: Path, ray: RaySettings) -> list[str]:
    """The command line a step runs (`objmm` left out)."""
    argv = step.command.split()
    if step.config:
        argv += ["--config", step.config]
    for key, value in fill(step.args, out, out / step.name).items():
        argv += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    section = RAY_SECTIONS.get(argv[0])
    if ray.address and section:
        argv += [f"--{section}.ray.address", ray.address, f"--{section}.ray.cpus_per_task", str(ray.cpus_per_task)]
        argv += [f"--{section}.ray.gpus_per_task", str(ray.gpus_per_task)]
        if ray.num_cpus:
            argv += [f"--{section}.ray.num_cpus", str(ray.num_cpus)]
    return argv


def config_text(step: Step) -> dict:
    """The step's config file as data (what a finished step is compared on, with its command line)."""
    if not step.config:
        return {}
    path = Path(step.config)
    if not path.is_file():
        raise ObjmmError(f"reproduce: step {step.name}'s config {path} does not exist")
    return yaml.safe_load(path.read_text()) or {}


class ReproduceRun(ExperimentRun):
    section, settings_class, resume_file = "reproduce", ReproduceSettings, RECORD
    settings: ReproduceSettings

    def __init__(self, cli):
        super().__init__(cli)
        self.record: ResultsFile | None = None

    def log_config(self) -> None:
        """Deferred to the end (see the module's docstring): the steps' W&B runs come first."""

    def selected(self, names: list[str] | None = None) -> list[Step]:
        """The steps `names` (default `--only`) name, by name or group; all when empty."""
        only = set(self.settings.only if names is None else names)
        return [s for s in self.settings.steps if not only or s.name in only or s.group in only]

    def prepare(self) -> None:
        s = self.settings
        self.out.mkdir(parents=True, exist_ok=True)
        self.record = ResultsFile(self.out / RECORD, {"scale": s.scale}, "steps", "name", "reproduce.out")
        by_name = {step.name: step for step in s.steps}
        chosen = self.selected()
        if s.redo:
            for step in self.selected(s.redo):
                done = self.record.pieces.pop(step.name, None)
                if done is not None:  # the redo goes on in the step's folder: its time adds to the finished one's
                    AttemptClock.carry(self.out / CLOCKS, step.name, done["seconds"], done.get("attempts", 1))
            self.record.write()
        for step in s.steps:  # a finished step made with other settings: say which and what differs
            done = self.record.pieces.get(step.name)
            if done is None:
                continue
            before = {"argv": argv_settings(done["argv"]), "config": done["config"]}
            now = step_settings(step, self.out)
            changed = changed_settings(before, now) or ([f"argv: {now['argv']}"] if before != now else [])
            if changed:
                raise ObjmmError(
                    f"{self.out}: step {step.name} (objmm {step.command}) was made with other settings "
                    f"({'; '.join(changed[:3])}); use another reproduce.out, or move {self.out / step.name} away"
                )
        names = {step.name for step in chosen}
        for step in chosen:
            for need in step.needs:
                if need not in names and need not in self.record:
                    make = by_name[need]
                    raise ObjmmError(
                        f"reproduce: {step.name} needs {need} (objmm {make.command}), which has not run in {self.out}; "
                        f"add --only {make.group or make.name}, or run without --only"
                    )
        for step in chosen:
            config_text(step)
        if s.earlier:
            report.earlier_summary(Path(s.earlier), s.scale)

    def run(self) -> Path:
        s, record = self.settings, self.record
        chosen = self.selected()
        todo = [step for step in chosen if step.name not in record]
        minutes = sum(step.minutes for step in todo)
        unknown = sum(not step.minutes for step in todo)
        print(
            f"reproduce: scale {s.scale}, {len(chosen)} steps ({len(chosen) - len(todo)} done), about "
            f"{minutes:.0f} min to go by the scale's projections"
            + (f" ({unknown} of the steps to run have none)" if unknown else "")
            + f" -> {self.out}",
            flush=True,
        )
        for i, step in enumerate(todo, 1):
            argv = step_argv(step, self.out, s.ray)
            print(f"reproduce: step {i}/{len(todo)}, {step.name}: objmm {shlex.join(argv)}", flush=True)
            with AttemptClock(self.out / CLOCKS, step.name) as clock:
                run_step(step, argv)
            record.add(
                {
                    "name": step.name,
                    "argv": step_argv(step, self.out, RaySettings()),
                    "config": config_text(step),
                    "seconds": clock.seconds,
                    "attempts": clock.attempts,
                    "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "machine": report.machine(),
                }
            )
            clock.forget()
        written = report.write_report(
            self.out,
            s.scale,
            s.steps,
            record.pieces,
            earlier=Path(s.earlier) if s.earlier else None,
            digests={step.name: step_digest(step) for step in s.steps},
        )
        super().log_config()
        self.publish(
            f"{len(written.findings)} findings, {len(written.figures)} figures",
            [written.path],
            figures={f"{f.stem}": f for f in written.figures},
            tables={"findings": [f.as_row() for f in written.findings]},
        )
        return written.path


def argv_settings(argv: list[str]) -> dict:
    """A step's command line as data: `{"command": [...], "--setting": value, ...}`, each value read as
    JSON where it is, so two command lines that differ only in the order of their settings (a scale
    rewritten with sorted keys) are the same."""
    words = list(argv[: next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))])
    settings: dict = {"command": words}
    for key, value in zip(argv[len(words) :: 2], argv[len(words) + 1 :: 2], strict=False):
        try:
            settings[key] = json.loads(value)
        except ValueError:
            settings[key] = value
    return settings


def step_settings(step: Step, out: Path) -> dict:
    """What a step is: its command line in `out` as settings (`argv_settings`) and its config file's contents."""
    return {"argv": argv_settings(step_argv(step, out, RaySettings())), "config": config_text(step)}


def step_digest(step: Step) -> str:
    """`step_settings` as a short hash, wherever the reproduction's folder is (`{out}` left unfilled). An
    earlier report's step is carried only while its digest is the same."""
    made = step_settings(step, Path("{out}"))
    return hashlib.sha256(json.dumps(made, sort_keys=True).encode()).hexdigest()[:16]


def run_step(step: Step, argv: list[str]) -> None:
    """One step in this process: its command, then its W&B run closed, as `objmm` would."""
    try:
        dispatch(argv)
    except KeyboardInterrupt:
        finish_wandb(exit_code=130)
        raise
    except Exception as error:
        cause = objmm_cause(error)
        finish_wandb(exit_code=2)
        if cause is None:
            raise
        raise ObjmmError(f"reproduce: step {step.name} (objmm {step.command}): {cause}") from None
    finish_wandb(exit_code=0)


def main(argv: list[str]) -> None:
    run_experiment(
        "reproduce",
        "The paper's experiments at one scale (`--scale smoke|cpu|paper`), in order, and a report.",
        scale_arguments(argv),
        ReproduceRun,
    )
