"""The report of `objmm reproduce`: `summary.json` (every finding, the steps, the machine) and
`report.md`, rendered from the summary alone, with the figures copied beside it. What each finding
says and how its verdict is decided is `findings.py`."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from objmm import atomic
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


def write_report(out: Path, scale: str, steps: list, done: dict[str, dict]) -> Report:
    """`out/report/summary.json` (every number of the report, read from the finished steps' result
    files), `report.md` rendered from it alone (`render`), and the figures, copied to `figures/`."""
    folder = out / "report"
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    findings, figures = [], []
    for step in steps:
        if not step.report or step.name not in done:
            continue
        section = READERS[step.report](out / step.name)
        for finding in section.findings:
            finding.step = step.name
        findings += section.findings
        for figure in section.figures:
            if figure.is_file():
                copy = folder / "figures" / f"{step.name}_{figure.name}"
                shutil.copyfile(figure, copy)
                figures.append(copy)
    covered = {f.item for f in findings}
    unfinished = [s for s in steps if s.report and s.name not in done]
    missing = NOT_RUN_YET if unfinished else NOT_RUN
    findings += [Finding(item, item, "", "", missing) for item in ITEMS if item not in covered]
    summary = {
        "scale": scale,
        "machine": machine(),
        "findings": [{"item": f.item, **f.as_row()} for f in findings],
        "steps": [
            {
                "name": s.name,
                "command": s.command,
                **({k: done[s.name][k] for k in ("argv", "seconds")} if s.name in done else {}),
            }
            for s in steps
        ],
        "figures": [f.name for f in figures],
    }
    atomic.write_json(folder / "summary.json", summary)
    path = folder / "report.md"
    atomic.write_text(path, render(summary))
    return Report(path, findings, figures)


def render(summary: dict) -> str:
    """The report's Markdown from its summary alone: a committed report can be checked against its summary."""
    done = [s for s in summary["steps"] if "seconds" in s]
    total = sum(s["seconds"] for s in done)
    lines = [
        f"# objmm reproduce: scale {summary['scale']}",
        "",
        f"Machine: {summary['machine']}. Wall time of the {plural(len(done), 'step')} run: {total / 60:.1f} min.",
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
        "| step | command | wall time |",
        "| --- | --- | --- |",
        *(
            f"| {s['name']} | `objmm {shlex.join(s['argv'])}` | {s['seconds'] / 60:.1f} min |"
            if "seconds" in s
            else f"| {s['name']} | `objmm {s['command']}` | not run |"
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
