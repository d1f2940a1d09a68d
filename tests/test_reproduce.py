"""`objmm reproduce`: the smoke scale end to end, its report read from the result files, the same
command again (and after a kill -9) ending with the same report, and its bad input in one line."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import kill_when

from objmm.experiments import findings as paper_findings
from objmm.experiments import report
from objmm.experiments.reproduce import Step

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["reproduce", "--scale", "smoke"]


def with_configs(directory: Path) -> Path:
    """`directory` with the repository's configs/ in it, as a scale's paths expect."""
    (directory / "configs").symlink_to(ROOT / "configs")
    return directory


def findings(out: Path) -> list[str]:
    """The report's table of effects, one line a finding."""
    text = (out / "report" / "report.md").read_text()
    table = text.split("## The paper's effects")[1].split("## The steps")[0]
    return [line for line in table.splitlines() if line.startswith("| ")][2:]  # the header and its rule off


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, objmm_in) -> Path:
    """The smoke scale run once, never killed."""
    where = with_configs(tmp_path_factory.mktemp("smoke"))
    objmm_in(where, SMOKE)
    return where / "runs" / "reproduce" / "smoke"


def test_the_smoke_scale_runs_every_step_and_reports_each_effect(smoke):
    done = json.loads((smoke / "reproduce.json").read_text())["steps"]
    steps = yaml.safe_load((ROOT / "configs" / "reproduce" / "smoke.yaml").read_text())["reproduce"]["steps"]
    assert [d["name"] for d in done] == [s["name"] for s in steps]
    written = report.write_report(smoke, "smoke", [Step(**s) for s in steps], {d["name"]: d for d in done})
    # every item of the paper the report knows has a finding: the smoke scale runs them all
    assert sorted({f.item for f in written.findings} - {"PETS runs"}) == sorted(paper_findings.ITEMS)
    assert not [f for f in written.findings if f.verdict in (paper_findings.NOT_RUN, paper_findings.NOT_RUN_YET)]
    assert len(findings(smoke)) == len(written.findings)
    figures = sorted(p.name for p in (smoke / "report" / "figures").iterdir())
    assert len(figures) == 10 and {"population_fig3.png", "goals_fig12.png", "goals_fig13.png"} <= set(figures)


def test_the_reports_numbers_are_the_result_files(smoke):
    """Every rho in the report is the one correlations.json holds (no number typed by hand)."""
    rows = json.loads((smoke / "population" / "correlations.json").read_text())["correlations"]
    by_set = {r["dataset"]: r for r in rows if r["method"] == "pearson" and r["ll"] == "random/paper_ll"}
    lines = findings(smoke)
    for name, row in by_set.items():
        line = next(line for line in lines if f"{name.replace('_', '-')} set" in line)
        assert f"{row['rho']:+.2f} [{row['low']:+.2f}, {row['high']:+.2f}]" in line
        assert f"| {row['paper_rho']:+.2f} |" in line
    attack = json.loads((smoke / "attack" / "attack.json").read_text())
    line = next(line for line in lines if line.startswith("| Sec. 4.3"))
    fresh = attack["fresh_episodes"]
    assert f"{fresh['start_reward']:.1f} -> {fresh['attacked_reward']:.1f}" in line
    # the drop's interval, paired by episode, in percent of the start's mean reward
    each = np.subtract(fresh["start_rewards"], fresh["attacked_rewards"]) / fresh["start_reward"]
    low, high = (float(x) for x in re.search(r"\[([-+.\d]+)%, ([-+.\d]+)%\], paired over 2 fresh", line).groups())
    assert -100 * each.max() - 0.05 <= low <= high <= -100 * each.min() + 0.05


def test_fig8_is_judged_on_the_small_s_half_of_the_papers_grid(tmp_path):
    """The paper's gain is "for smaller dataset sizes": every cell with S <= 158 counts, not the smallest
    S alone (at S = 10 nothing learns), and the large-S cells do not."""

    def cell(size: int, mean: float, low: float, high: float) -> dict:
        return {"size": size, "distance": {"minus_baseline": {"mean": mean, "low": low, "high": high}}}

    cells = [cell(10, -0.3, -2.9, 2.7), cell(91, 20.0, 5.0, 35.0), cell(2500, -30.0, -50.0, -10.0)]
    (tmp_path / "reweight.json").write_text(json.dumps({"cells": {str(i): c for i, c in enumerate(cells)}}))
    (found,) = paper_findings.reweight(tmp_path).findings
    assert found.effect.endswith("reward at S = 10, 91")
    assert found.ours.startswith("gain in 1, loss in 0 of 2 cells; best +20.0 [+5.0, +35.0]")
    assert found.verdict == paper_findings.REPRODUCED
    # a grid of large S alone is judged at its smallest
    (tmp_path / "reweight.json").write_text(json.dumps({"cells": {"0": cells[2], "1": cell(827, -1.0, -3.0, 1.0)}}))
    (found,) = paper_findings.reweight(tmp_path).findings
    assert "S = 827" in found.effect and found.verdict == paper_findings.NOT_REPRODUCED


def test_the_report_is_its_summary_rendered(smoke):
    """report.md is made from summary.json alone, so a committed report can be checked against it."""
    summary = json.loads((smoke / "report" / "summary.json").read_text())
    assert report.render(summary) == (smoke / "report" / "report.md").read_text()
    assert len(summary["findings"]) == len(findings(smoke))
    # every step ran once here; a step killed and resumed says over how many attempts its time ran
    assert {s["attempts"] for s in summary["steps"]} == {1} and "attempts" not in report.render(summary)
    first = {**summary["steps"][0], "seconds": 90.0, "attempts": 2}
    assert f"| {first['name']} | `objmm {shlex.join(first['argv'])}` | 1.5 min over 2 attempts |" in report.render(
        {**summary, "steps": [first, *summary["steps"][1:]]}
    )


@pytest.mark.parametrize(
    "committed", sorted((ROOT / "docs" / "reproduce").glob("*/summary.json")), ids=lambda p: p.parent.name
)
def test_a_committed_report_is_its_committed_summary(committed):
    """The reports under docs/reproduce/ (what docs/experiments.md points at) say what their summaries say."""
    assert report.render(json.loads(committed.read_text())) == (committed.parent / "report.md").read_text()


def test_the_same_command_again_skips_every_step_and_writes_the_same_report(smoke, objmm_in, capsys):
    before = findings(smoke)
    capsys.readouterr()
    objmm_in(smoke.parents[2], SMOKE)
    out = capsys.readouterr().out
    assert "12 steps (12 done)" in out and "step 1/" not in out
    assert findings(smoke) == before


@pytest.mark.slow
def test_killed_anywhere_the_same_command_ends_with_the_same_report(smoke, tmp_path, objmm_in):
    where = with_configs(tmp_path)
    record = where / "runs" / "reproduce" / "smoke" / "reproduce.json"

    def three_steps_done() -> bool:  # then the kill lands inside the population, or just after
        return record.is_file() and len(json.loads(record.read_text())["steps"]) >= 3

    kill_when(SMOKE, where, three_steps_done)
    objmm_in(where, SMOKE)
    assert findings(record.parent) == findings(smoke)


def test_a_scale_in_parts_keeps_the_earlier_reports_steps(smoke, tmp_path, objmm_in, capsys):
    """A second sitting that runs one step, with the first sitting's report as `earlier`, reports every
    step: the one it ran and the others carried (findings, figures, wall time, date) from that report;
    a step whose settings changed since is not carried but left to run."""
    earlier = smoke / "report"
    where = with_configs(tmp_path)
    objmm_in(where, [*SMOKE, "--only", "expert", "--reproduce.earlier", str(earlier)])
    part = where / "runs" / "reproduce" / "smoke"
    assert findings(part) == findings(smoke)
    before, now = (json.loads((f / "report" / "summary.json").read_text()) for f in (smoke, part))
    assert now["figures"] == before["figures"] and len(list((part / "report" / "figures").iterdir())) == 10
    steps_before = {s["name"]: s for s in before["steps"]}
    for step in now["steps"]:
        same = {k: step[k] for k in ("seconds", "finished")} == {
            k: steps_before[step["name"]][k] for k in ("seconds", "finished")
        }
        assert same == (step["name"] != "expert"), step["name"]  # expert ran here; the rest is carried
    # goals' settings changed since: App. B is left to run, the rest is still carried
    scale = yaml.safe_load((ROOT / "configs" / "reproduce" / "smoke.yaml").read_text())
    goals = next(s for s in scale["reproduce"]["steps"] if s["name"] == "goals")
    goals["args"]["goals.episodes"] = 5
    (where / "changed.yaml").write_text(yaml.safe_dump(scale))
    capsys.readouterr()
    objmm_in(where, ["reproduce", "--config", "changed.yaml", "--only", "expert", "--reproduce.earlier", str(earlier)])
    assert "goals in " in capsys.readouterr().out
    lines = findings(part)
    assert [line for line in lines if line.startswith("| App. B |")] == ["| App. B |  |  | not run yet |  |"]
    assert len([line for line in lines if "| goals |" in line]) == 0
    assert len(lines) == len(findings(smoke)) - len([line for line in findings(smoke) if "| goals |" in line]) + 1


def test_redo_runs_a_finished_step_again_in_its_folder(in_tmp, objmm_in, capsys):
    with_configs(in_tmp)
    objmm_in(in_tmp, [*SMOKE, "--only", "expert"])
    capsys.readouterr()
    objmm_in(in_tmp, [*SMOKE, "--only", "expert"])
    assert "1 steps (1 done)" in capsys.readouterr().out
    record = in_tmp / "runs" / "reproduce" / "smoke" / "reproduce.json"
    finished = json.loads(record.read_text())["steps"][0]
    objmm_in(in_tmp, [*SMOKE, "--only", "expert", "--reproduce.redo", json.dumps(["fig3"])])
    assert "step 1/1, expert" in capsys.readouterr().out
    # the redo went on from the finished step: its wall time is the two attempts' together
    redone = json.loads(record.read_text())["steps"][0]
    assert redone["name"] == "expert" and redone["attempts"] == finished["attempts"] + 1
    assert redone["seconds"] > finished["seconds"]


def test_bad_input_is_one_line(in_tmp, error_of):
    with_configs(in_tmp)
    assert "unknown scale 'huge'; scales: " in error_of("reproduce", "--scale", "huge")
    message = error_of(*SMOKE, "--only", "fig3,fig99")
    assert "unknown step or group 'fig99'" in message and "attack" in message
    message = error_of(*SMOKE, "--only", "pairs")
    assert "pairs needs population (objmm population), which has not run" in message
    assert "--only fig3" in message
    assert "reproduce.redo: unknown step or group 'fig99'" in error_of(*SMOKE, "--reproduce.redo", '["fig99"]')
    message = error_of(*SMOKE, "--only", "expert", "--reproduce.earlier", "nowhere")
    assert "reproduce.earlier: nowhere holds no summary.json" in message
    (in_tmp / "other").mkdir()
    (in_tmp / "other" / "summary.json").write_text(json.dumps({"scale": "cpu", "steps": [], "findings": []}))
    message = error_of(*SMOKE, "--only", "expert", "--reproduce.earlier", "other")
    assert "other is a report of scale 'cpu', not 'smoke'" in message


def test_a_finished_step_made_with_other_settings_is_named(in_tmp, error_of, objmm_in):
    with_configs(in_tmp)
    objmm_in(in_tmp, [*SMOKE, "--only", "expert"])
    partial = findings(in_tmp / "runs" / "reproduce" / "smoke")
    assert partial and all(line.endswith("| not run yet |  |") for line in partial)  # the rest is not run yet
    scale = yaml.safe_load((ROOT / "configs" / "reproduce" / "smoke.yaml").read_text())
    scale["reproduce"]["steps"][0]["args"]["size"] = 100
    (in_tmp / "changed.yaml").write_text(yaml.safe_dump(scale))
    message = error_of("reproduce", "--config", "changed.yaml", "--only", "expert")
    assert re.search(r"step expert \(objmm data expert\) was made with other settings \(.*200.*100", message)
    assert "reproduce.out" in message


def test_a_step_that_fails_names_itself(in_tmp, error_of):
    with_configs(in_tmp)
    scale = yaml.safe_load((ROOT / "configs" / "reproduce" / "smoke.yaml").read_text())
    scale["reproduce"]["steps"][0]["args"]["env.id"] = "objmm/NoSuchEnv-v0"
    (in_tmp / "bad.yaml").write_text(yaml.safe_dump(scale))
    message = error_of("reproduce", "--config", "bad.yaml", "--only", "expert")
    assert message.startswith("objmm: error: reproduce: step expert (objmm data expert):")
    assert "NoSuchEnv" in message and "\n" not in message


@pytest.mark.parametrize("scale", sorted(p.stem for p in (ROOT / "configs" / "reproduce").glob("*.yaml")))
def test_every_step_of_every_scale_is_a_command_line_its_command_accepts(scale, monkeypatch, capsys):
    """Each step's settings exist and parse (`--print_config`), so a long scale cannot fail at its tenth step
    on a mistyped setting."""
    from objmm.commands import dispatch
    from objmm.experiments.reproduce import ReproduceSettings, step_argv

    monkeypatch.chdir(ROOT)
    config = yaml.safe_load((ROOT / "configs" / "reproduce" / f"{scale}.yaml").read_text())["reproduce"]
    settings = ReproduceSettings(**{k: v for k, v in config.items() if k != "ray"})
    for step in settings.steps:
        with pytest.raises(SystemExit) as exit_info:
            dispatch([*step_argv(step, Path("runs/x"), settings.ray), "--print_config"])
        assert exit_info.value.code in (0, None), step.name
        assert capsys.readouterr().out.strip(), step.name
