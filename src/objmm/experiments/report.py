"""The report of `objmm reproduce`: `summary.json` (every finding, the steps, the machine) and
`report.md`, rendered from the summary alone, with the figures copied beside it. What each finding
says and how its verdict is decided is `findings.py`."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from objmm import atomic
from objmm.errors import ObjmmError
from objmm.experiments.findings import (
    ITEMS,
    NOT_RUN,
    NOT_RUN_YET,
    READERS,
    RULES,
    Finding,
    plural,
)


@dataclass
class Report:
    path: Path
    findings: list[Finding]
    figures: list[Path]


def machine() -> str:
    import torch

    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} CPU cores, no GPU"
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}" for name in ("objmm", "torch", "lightning", "torchrl", "mujoco")
    )
    return f"{platform.machine()} {platform.system()}, {where}; Python {platform.python_version()}, {versions}"


def write_report(
    out: Path, scale: str, steps: list, done: dict[str, dict], earlier: Path | None = None, digests: dict | None = None
) -> Report:
    """`out/report/summary.json` (every number of the report, read from the finished steps' result
    files), `report.md` rendered from it alone (`render`), and the figures, copied to `figures/`.

    With `earlier` (the folder of an earlier report of this scale: its `summary.json` and `figures/`),
    a step that has not run in `out` but ran in that report, with the settings it has now (`digests`:
    step name -> `reproduce.step_digest`), keeps that report's findings, figures, wall time, date and
    machine: a scale too long for one sitting is reproduced in parts, each report building on the last."""
    folder = out / "report"
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    digests = digests or {}
    carried = carried_steps(earlier, scale, steps, done, digests) if earlier else {}
    findings, figures, entries = [], [], []
    for step in steps:
        entry, step_figures = {"name": step.name, "command": step.command}, []
        if step.name in done:
            record = done[step.name]
            entry.update({k: record[k] for k in ("argv", "seconds", "attempts", "finished", "machine") if k in record})
            entry["digest"] = digests.get(step.name, "")
            section = READERS[step.report](out / step.name) if step.report else None
            for finding in section.findings if section else []:
                finding.step = step.name
                findings.append(finding)
            for figure in section.figures if section else []:
                if figure.is_file():
                    copy = folder / "figures" / f"{step.name}_{figure.name}"
                    shutil.copyfile(figure, copy)
                    step_figures.append(copy)
        elif step.name in carried:
            entry, rows = carried[step.name]
            findings += [Finding(r["item"], r["effect"], r["paper"], r["objmm"], r["verdict"], r["step"]) for r in rows]
            for name in entry.get("figures", []):
                copy = folder / "figures" / name
                if earlier.resolve() != folder.resolve():
                    shutil.copyfile(earlier / "figures" / name, copy)
                step_figures.append(copy)
        if step_figures:
            entry["figures"] = [f.name for f in step_figures]
        figures += step_figures
        entries.append(entry)
    covered = {f.item for f in findings}
    unfinished = [s for s in steps if s.report and s.name not in done and s.name not in carried]
    missing = NOT_RUN_YET if unfinished else NOT_RUN
    findings += [Finding(item, item, "", "", missing) for item in ITEMS if item not in covered]
    summary = {
        "scale": scale,
        "machine": machine(),
        "findings": [{"item": f.item, **f.as_row()} for f in findings],
        "steps": entries,
        "figures": [f.name for f in figures],
    }
    atomic.write_json(folder / "summary.json", summary)
    path = folder / "report.md"
    atomic.write_text(path, render(summary))
    return Report(path, findings, figures)


def earlier_summary(earlier: Path, scale: str) -> dict:
    """The summary of an earlier report of this scale (its folder), or one line that says why not."""
    path = Path(earlier) / "summary.json"
    if not path.is_file():
        raise ObjmmError(f"reproduce.earlier: {earlier} holds no summary.json (the folder of an earlier report)")
    try:
        summary = json.loads(path.read_text())
        scale_before = summary["scale"]
        if not isinstance(summary["steps"], list) or not isinstance(summary["findings"], list):
            raise TypeError
    except (ValueError, KeyError, TypeError) as error:
        raise ObjmmError(f"reproduce.earlier: {path} is not a report's summary ({type(error).__name__})") from None
    if scale_before != scale:
        raise ObjmmError(f"reproduce.earlier: {earlier} is a report of scale {scale_before!r}, not {scale!r}")
    return summary


def carried_steps(earlier: Path, scale: str, steps: list, done: dict, digests: dict) -> dict[str, tuple[dict, list]]:
    """Step name -> (its entry in the earlier report, its findings there), for the steps to carry:
    finished there, not here, and made there with the settings they have now (a step whose config or
    settings changed since is run again, not carried)."""
    summary = earlier_summary(earlier, scale)
    entries, rows = summary["steps"], summary["findings"]
    by_name = {entry["name"]: entry for entry in entries if "seconds" in entry}
    carried = {}
    for step in steps:
        entry = by_name.get(step.name)
        if step.name in done or entry is None:
            continue
        if not entry.get("digest") or entry["digest"] != digests.get(step.name):
            print(f"reproduce: {step.name} in {earlier} was made with other settings; not carried", flush=True)
            continue
        for name in entry.get("figures", []):
            if not (Path(earlier) / "figures" / name).is_file():
                raise ObjmmError(f"reproduce.earlier: {earlier}/figures/{name} ({step.name}'s figure) is missing")
        carried[step.name] = (entry, [r for r in rows if r.get("step") == step.name])
    return carried


def wall_time(step: dict) -> str:
    """A step's wall time over its attempts (a step killed and resumed ran more than once)."""
    attempts = step.get("attempts", 1)
    return f"{step['seconds'] / 60:.1f} min" + (f" over {attempts} attempts" if attempts > 1 else "")


def render(summary: dict) -> str:
    """The report's Markdown from its summary alone: a committed report can be checked against its summary."""
    done = [s for s in summary["steps"] if "seconds" in s]
    total = sum(s["seconds"] for s in done)
    machines = {}  # machine -> the steps run on it (a report carried from earlier sittings may have several)
    for s in done:
        machines.setdefault(s.get("machine", summary["machine"]), []).append(s["name"])
    where = (
        f"Machine: {summary['machine']}."
        if len(machines) <= 1
        else "Machines: " + "; ".join(f"{m} ({', '.join(names)})" for m, names in machines.items()) + "."
    )
    lines = [
        f"# objmm reproduce: scale {summary['scale']}",
        "",
        f"{where} Wall time of the {plural(len(done), 'step')} run: {total / 60:.1f} min.",
        "",
        "## The paper's effects",
        "",
        "| effect | the paper | objmm | verdict | step |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {f['effect']} | {f['paper']} | {f['objmm']} | {f['verdict']} | {f['step']} |"
            for f in summary["findings"]
        ),
        "",
        "## The steps",
        "",
        "| step | command | wall time | finished |",
        "| --- | --- | --- | --- |",
        *(
            f"| {s['name']} | `objmm {shlex.join(s['argv'])}` | {wall_time(s)} | {s.get('finished', '')} |"
            if "seconds" in s
            else f"| {s['name']} | `objmm {s['command']}` | not run | |"
            for s in summary["steps"]
        ),
        "",
        "## Figures",
        "",
        *(f"![{Path(name).stem}](figures/{name})\n" for name in summary["figures"]),
        "## How the verdicts are decided",
        "",
        *(f"- {name}: {rule}." for name, rule in RULES.items()),
        "",
    ]
    return "\n".join(lines)
