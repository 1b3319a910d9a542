"""`qwen-math report`: the console table, the PNG plots and a self-contained HTML page that
renders in a real browser (headless Chromium: Debian's `chromium`, installed by .ci/run)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qwen_math.cli import main
from qwen_math.record import SampleRecord, Turn
from qwen_math.runs.jsonl import AppendOnlyJsonl, write_json_atomic
from qwen_math.runs.manifest import Fingerprint, build_manifest
from qwen_math.runs.report import answer_agreement, load_run_report, write_html_report
from qwen_math.runs.store import RunLayout
from qwen_math.runs.views import write_dataset_views, write_run_metrics

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
)


# --- a finished run, written with the run's own writer and views ------------------------
def sample_record(dataset: str, idx: int, sample: int, answer: str | None, gold: str, *,
                  level: int, subject: str, tool: bool = False) -> SampleRecord:
    turns = [Turn(text=f"Let me compute.\n```python\nprint({answer})\n```", code=f"print({answer})",
                  status="ok", output=str(answer), appended=f"\n```output\n{answer}\n```\n",
                  exec_duration_s=0.01)] if tool else []
    turns.append(Turn(text=f"The answer is $\\boxed{{{answer}}}$." if answer else "I give up."))
    return SampleRecord(
        dataset=dataset, idx=idx, sample=sample, question_id=f"{dataset}/{idx}",
        question=f"Question {idx}: what is {gold}?", turns=tuple(turns), answer=answer, gold=gold,
        correct=answer == gold, finish_reason="eos" if answer else "length",
        grade_status=("correct" if answer == gold else "wrong") if answer else "no_answer",
        mode="tir" if tool else "cot", seed=idx * 10 + sample, prompt_tokens=30,
        completion_tokens=12, metadata={"level": level, "subject": subject},
        generation_time_s=0.5,
    )


#: per problem: gold and the answers of its 4 samples (None = no answer)
PROBLEMS = {
    0: ("4", ["4", "4", "4", "4"]),
    1: ("9", ["9", "8", "9", "7"]),
    2: ("12", ["11", "11", "12", "11"]),  # majority wrong, pass@4 right
    3: ("1/2", [None, "2", "2", None]),  # all wrong
    4: ("3", ["3", "3", "5", "3"]),
    5: ("10", ["10", None, "10", "10"]),
}
SUBJECTS = ("Algebra", "Geometry")


def write_finished_run(root: Path, dataset: str = "math500", problems: dict = PROBLEMS,
                       temperature: float = 0.7) -> Path:
    records = [
        sample_record(dataset, idx, s, answer, gold, level=1 + idx % 3, subject=SUBJECTS[idx % 2],
                      tool=s % 2 == 1)
        for idx, (gold, answers) in problems.items()
        for s, answer in enumerate(answers)
    ]
    layout = RunLayout(root)
    with AppendOnlyJsonl(layout.samples(dataset)) as writer:
        for record in records:
            writer.append(record.to_json())
    fields = {"sampling.n": 4, "sampling.temperature": temperature, "mode": "tir"}
    manifest = build_manifest(
        config={"datasets": [dataset], "model": "tiny", "backend": "scripted", "mode": "tir",
                "sampling": {"n": 4, "temperature": temperature}},
        fingerprint=Fingerprint(fields), datasets={dataset: {"problems": len(problems)}},
        prompt={"sha256": "x"},
    )
    write_json_atomic(layout.manifest, manifest)
    problems_ = [type("P", (), {"idx": idx}) for idx in problems]
    metrics = write_dataset_views(layout, dataset, records, problems_, wall_duration_s=2.0)
    write_run_metrics(layout, [metrics], [dataset])
    return root


@pytest.fixture
def finished_run(tmp_path) -> Path:
    return write_finished_run(tmp_path / "run")


# --- console table ------------------------------------------------------------------------
def test_console_table_lists_datasets_and_metrics(finished_run, capsys):
    assert main(["report", str(finished_run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["dataset", "problems", "n", "k", "acc", "maj@k", "pass@k"]
    row = out[2].split()
    assert row[:4] == ["math500", "6", "4", "4"]
    assert row[4] == f"{13 / 24:.3f}"  # acc: 13 correct samples of 24
    # its interval: Wilson over the 6 problems' mean accuracy (eval.metrics.interval)
    assert "[0.214, 0.837]" in out[2]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "/nonexistent/run"], "no such run directory"),
        (["compare", "/nonexistent/a", "/nonexistent/b"], "no such run directory"),
    ],
)
def test_missing_run_is_a_usage_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unfinished_run_says_how_to_finish_it(finished_run, capsys):
    RunLayout(finished_run).dataset_metrics("math500").unlink()
    assert main(["report", str(finished_run)]) == 2
    assert "rerun the same `qwen-math eval` command" in capsys.readouterr().err


# --- HTML and PNG -------------------------------------------------------------------------
def test_html_report_is_self_contained_with_decodable_plots(finished_run, capsys):
    assert main(["report", str(finished_run), "--html"]) == 0
    out_dir = RunLayout(finished_run).report_dir
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    # self-contained: no external resource of any kind
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    images = re.findall(r'<img class="plot" id="plot-([^"]+)"[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert [name for name, _ in images] == ["curves", "breakdown_math500", "agreement"]
    for name, data in images:
        png = base64.b64decode(data)
        assert png == (out_dir / f"{name}.png").read_bytes()
        assert_png_has_content(png)
    # the trace viewer shows the failed problems (majority wrong) with their transcripts
    assert "2 of 6 problems" in page
    assert "print(2)" in page and "```output" in page
    # problem 3 has samples without an answer: shown as such, never as "None"
    assert not [line for line in re.findall(r"<summary>(.*?)</summary>", page) if "None" in line]
    assert "answers (no answer), 2, 2, (no answer)" in page
    # the run replayed a script: the header names no model it did not use
    assert "model=(none: replayed)" in page and "model=tiny" not in page


@pytest.mark.parametrize(
    "preds, expected",
    [
        (["1", "1", "2", "1"], 0.75),
        (["1", None, "2", None], 0.25),
        ([None, None], 0.0),
        (["1/2", "1 / 2"], 1.0),  # spaces do not split the vote
        ([], None),
    ],
)
def test_answer_agreement(preds, expected):
    assert answer_agreement({"pred": preds}) == expected


def assert_png_has_content(png: bytes) -> None:
    import matplotlib.image as mpimg

    pixels = mpimg.imread(io.BytesIO(png), format="png")
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


# --- a real browser -----------------------------------------------------------------------
def chromium_binary() -> str | None:
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


#: appended to a copy of the page: records where each element landed and whether each image
#: decoded, so the screenshot's pixels can be checked in those rectangles.
PROBE = """<script>
window.addEventListener('load', () => {
  const rect = el => { const r = el.getBoundingClientRect();
    return {x: r.left, y: r.top, w: r.width, h: r.height}; };
  const table = document.getElementById('metrics');
  const plots = [...document.querySelectorAll('img.plot')].map(img => ({
    id: img.id, ok: img.complete && img.naturalWidth > 0, rect: rect(img)}));
  document.body.setAttribute('data-probe', JSON.stringify({
    table: rect(table), rows: table.rows.length, plots,
    width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight}));
});
</script>"""


def run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_html_report_renders_in_headless_chromium(finished_run, tmp_path):
    chromium = chromium_binary()
    if chromium is None:
        pytest.skip("chromium is not installed (CI installs Debian's `chromium`; locally: apt-get install chromium)")
    report = write_html_report(load_run_report(finished_run))
    probe_page = tmp_path / "probe.html"
    probe_page.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                          encoding="utf-8")
    width = 1200  # the same width for both runs: the layout (and so the rectangles) depends on it
    dom = run_chromium(chromium, tmp_path / "profile-dom", f"--window-size={width},900",
                       "--dump-dom", probe_page.as_uri())
    match = re.search(r"data-probe=\"([^\"]+)\"", dom.stdout)
    assert match, f"chromium produced no probe: {dom.stderr[-2000:]}"
    probe = json.loads(match.group(1).replace("&quot;", '"'))
    assert probe["rows"] == 2  # header + one dataset
    assert [p["id"] for p in probe["plots"]] == ["plot-curves", "plot-breakdown_math500", "plot-agreement"]
    assert all(p["ok"] and p["rect"]["w"] > 100 and p["rect"]["h"] > 100 for p in probe["plots"]), probe

    # screenshot the whole page and check that the table and each plot left visible pixels
    height = int(probe["height"]) + 50
    shot = tmp_path / "report.png"
    result = run_chromium(chromium, tmp_path / "profile-shot", f"--screenshot={shot}",
                          f"--window-size={width},{height}", probe_page.as_uri())
    assert shot.is_file(), f"no screenshot: {result.stderr[-2000:]}"
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.shape[1] == width
    for name, rect in [("table", probe["table"])] + [(p["id"], p["rect"]) for p in probe["plots"]]:
        x, y, w, h = (int(rect[k]) for k in ("x", "y", "w", "h"))
        region = pixels[y : y + h, x : x + w]
        assert region.size and region.std() > 0.05, f"{name} looks blank in the screenshot"
