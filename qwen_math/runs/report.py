"""Reports of a finished run: a console table and a self-contained HTML page with plots.

``load_run_report(run_dir)`` reads ``metrics.json`` and each dataset's ``problems.jsonl``;
``format_table`` prints datasets x metrics (acc with its 95 % interval, maj@k and pass@k at
the largest k, a power of two <= n); ``write_html_report`` writes ``RUN/report/``:

- ``curves.png``: maj@k and pass@k against k (log2 axis), one colour per dataset;
- ``breakdown_<dataset>.png``: accuracy by level and by subject, when the dataset has them;
- ``agreement.png``: per problem, the share of samples that give the most common answer;
- ``report.html``: the table, every plot embedded as a base64 PNG (the page needs no other
  file and no network), and a trace viewer for failed problems (majority answer wrong):
  each sample's answer, finish reason and full transcript with code and tool output.

The agreement histogram groups answers by exact string (after stripping spaces); the
reported maj@k in ``metrics.json`` groups *equivalent* answers (``eval.metrics``).

What it deliberately does not do: recompute or regrade (it plots what the run recorded), or
run JavaScript (the page is static HTML + CSS; ``<details>`` folds the traces).
"""

from __future__ import annotations

import base64
import html
import io
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_math.errors import UsageError
from qwen_math.paths import output_folder
from qwen_math.runs.jsonl import (
    NO_SPACE_ERRNOS,
    DiskFull,
    read_json_object,
    read_jsonl_records,
    write_text_atomic,
)
from qwen_math.runs.manifest import read_manifest
from qwen_math.runs.store import RunLayout, load_samples, require_run, run_datasets
from qwen_math.runs.views import majority_correct

log = logging.getLogger(__name__)

#: backends that replay recorded completions instead of running a model.
BACKENDS_WITHOUT_MODEL = frozenset({"scripted"})

#: failed problems shown in the trace viewer, per dataset (the page stays a few MB at most).
MAX_TRACES = 40


@dataclass(frozen=True)
class DatasetReport:
    name: str
    metrics: Mapping[str, Any]
    problems: tuple[Mapping[str, Any], ...]  # rows of problems.jsonl


@dataclass(frozen=True)
class RunReport:
    run_dir: Path
    manifest: Mapping[str, Any]
    datasets: tuple[DatasetReport, ...]


# --- loading ------------------------------------------------------------------------------

def load_run_report(run_dir: Path) -> RunReport:
    """A finished run's metrics and problem rows; an unfinished run is a ``UsageError``."""
    layout = require_run(run_dir)
    manifest = read_manifest(layout.root) or {}
    reports = []
    for name in run_datasets(manifest):
        metrics_path = layout.dataset_metrics(name)
        if not metrics_path.is_file():
            raise UsageError(
                f"{layout.root}: dataset {name} has no metrics.json yet (the run is unfinished); "
                "rerun the same `qwen-math eval` command to complete it"
            )
        metrics = read_json_object(metrics_path)
        rows = read_jsonl_records(layout.problems(name)).records
        check_problem_rows(layout.problems(name), rows)
        reports.append(DatasetReport(name, metrics, rows))
    return RunReport(layout.root, manifest, tuple(reports))


#: keys every ``problems.jsonl`` row needs for reports and comparisons, with their JSON types.
PROBLEM_ROW_KEYS: dict[str, tuple[type, ...]] = {"idx": (int, str), "pred": (list,), "score": (list,)}


def check_problem_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Each row of ``problems.jsonl`` has the keys reports read, with usable types."""
    for number, row in enumerate(rows, start=1):
        for key, types in PROBLEM_ROW_KEYS.items():
            if not isinstance(row.get(key), types) or isinstance(row.get(key), bool):
                raise UsageError(f"{path}:{number}: field {key!r} is missing or not "
                                 f"{' or '.join(t.__name__ for t in types)}; the file was edited "
                                 "or damaged (rerun the `qwen-math eval` command to rewrite it)")


# --- metric accessors (one place that knows the metrics.json keys) --------------------------

def curve(metrics: Mapping[str, Any], name: str) -> list[tuple[int, float]]:
    """``[(k, value), ...]`` of ``pass@k`` or ``maj@k``, sorted by k."""
    values = metrics.get(name, {}) or {}
    return sorted((int(k), float(v)) for k, v in values.items() if v is not None)


def at_max_k(metrics: Mapping[str, Any], name: str) -> tuple[int, float] | None:
    points = curve(metrics, name)
    return points[-1] if points else None


def interval(metrics: Mapping[str, Any], name: str,
             problems: Sequence[Mapping[str, Any]] = ()) -> tuple[float, float] | None:
    """The 95 % interval of ``acc``, ``maj@K`` or ``pass@K``.

    ``acc``'s comes from ``eval.metrics.interval`` over the problems' scores when the rows are
    given (so a run written before that function still gets a sound interval), else from
    ``acc_ci95``; ``maj@K`` / ``pass@K`` from ``maj@k_ci95`` / ``pass@k_ci95`` when recorded.
    """
    if name == "acc" and problems:
        from eval.metrics import interval as metric_interval

        scores = [row["score"] for row in problems if row.get("score")]
        if scores:
            return metric_interval([sum(map(bool, s)) / len(s) for s in scores])
    curve_name, _, k = name.partition("@")
    value = (metrics.get(f"{curve_name}@k_ci95") or {}).get(k) if k else metrics.get(f"{name}_ci95")
    if isinstance(value, Sequence) and len(value) == 2 and None not in value:
        return float(value[0]), float(value[1])
    return None


def breakdowns(metrics: Mapping[str, Any]) -> dict[str, list[tuple[str, float, int]]]:
    """``{"level": [(value, acc, samples), ...], "subject": [...]}`` from ``by_level`` etc."""
    found: dict[str, list[tuple[str, float, int]]] = {}
    for key, groups in metrics.items():
        if not key.startswith("by_") or not isinstance(groups, Mapping):
            continue
        rows = [(str(value), float(stats["acc"]), int(stats.get("samples", 0)))
                for value, stats in groups.items() if isinstance(stats, Mapping) and stats.get("acc") is not None]
        if rows:
            found[key[3:]] = sorted(rows, key=lambda row: _natural_key(row[0]))
    return found


def _natural_key(text: str) -> tuple:
    digits = "".join(ch for ch in text if ch.isdigit())
    return (int(digits) if digits else float("inf"), text)


# --- console table ------------------------------------------------------------------------

def table_rows(report: RunReport) -> tuple[list[str], list[list[str]]]:
    """datasets x (problems, n, k, acc, maj@k, pass@k) with k the largest power of 2 <= n."""
    header = ["dataset", "problems", "n", "k", "acc", "maj@k", "pass@k"]
    rows = []
    for d in report.datasets:
        m = d.metrics
        maj, pas = at_max_k(m, "maj@k"), at_max_k(m, "pass@k")
        k = maj[0] if maj else None
        rows.append([
            d.name,
            str(m.get("problems", len(d.problems))),
            str(m.get("n", "-")),
            str(k if k is not None else "-"),
            format_value(m.get("acc"), interval(m, "acc", d.problems)),
            format_value(maj[1] if maj else None, interval(m, f"maj@{k}")),
            format_value(pas[1] if pas else None, interval(m, f"pass@{k}")),
        ])
    if any(has_rewards(d) for d in report.datasets):
        header += list(REWARD_CURVES)
        for row, d in zip(rows, report.datasets, strict=True):
            row += [format_value(point[1] if (point := at_max_k(d.metrics, name)) else None) for name in REWARD_CURVES]
    return header, rows


#: the reward-model metrics (``eval.metrics.summarize_rewards``), shown when a run has rewards.
REWARD_CURVES = ("rm@k", "wmaj@k")


def has_rewards(dataset: DatasetReport) -> bool:
    return bool(dataset.metrics.get("rm@k"))


def format_value(value: float | None, ci: tuple[float, float] | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3f}"
    return f"{text} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else text


def format_table(report: RunReport) -> str:
    header, rows = table_rows(report)
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


# --- plots --------------------------------------------------------------------------------

def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(report: RunReport) -> bytes:
    """maj@k (solid) and pass@k (dashed) against k, one colour per dataset."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, d in enumerate(report.datasets):
        colour = f"C{i % 10}"
        for name, style in (("maj@k", "-o"), ("pass@k", "--s")):
            points = curve(d.metrics, name)
            if points:
                ks, values = zip(*points, strict=True)
                ax.plot(ks, values, style, color=colour, label=f"{d.name} {name}", markersize=4)
    ax.set_xscale("log", base=2)
    ks = sorted({k for d in report.datasets for name in ("maj@k", "pass@k") for k, _ in curve(d.metrics, name)})
    if ks:
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.04, 1.04)  # a curve at 0 (or 1) stays visible above (below) the axis
    ax.set_title("maj@k and pass@k")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def plot_breakdown(dataset: DatasetReport, groups: dict[str, list[tuple[str, float, int]]]) -> bytes:
    """Accuracy per level / subject of one dataset, one panel per field."""
    plt = _pyplot()
    height = max(2.4, 0.4 * max(len(rows) for rows in groups.values()) + 1.2)
    fig, axes = plt.subplots(1, len(groups), figsize=(6.0 * len(groups), height), dpi=120, squeeze=False)
    for ax, (field, rows) in zip(axes[0], groups.items(), strict=True):
        # horizontal bars: long subject names stay readable; each bar is labelled with its
        # accuracy and sample count, so a group at 0 shows as "0.00 (n=40)", not as nothing
        positions = range(len(rows))
        bars = ax.barh(positions, [row[1] for row in rows], color="C0", edgecolor="C0", height=0.6)
        ax.bar_label(bars, labels=[f"{row[1]:.2f} (n={row[2]})" for row in rows], padding=3, fontsize=8)
        ax.set_yticks(positions, [row[0] for row in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.25)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xlabel("accuracy")
        ax.set_title(f"{dataset.name}: accuracy by {field}")
        ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def answer_agreement(row: Mapping[str, Any]) -> float | None:
    """Share of a problem's samples that give its most common answer (None if none answer)."""
    preds = row.get("pred") or []
    answers = [str(p).replace(" ", "") for p in preds if p is not None]
    if not preds or not answers:
        return 0.0 if preds else None
    return Counter(answers).most_common(1)[0][1] / len(preds)


def plot_agreement(report: RunReport) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    bins = [i / 10 for i in range(11)]
    names = [d.name for d in report.datasets]
    values = [[a for a in (answer_agreement(row) for row in d.problems) if a is not None] for d in report.datasets]
    if any(values):  # datasets side by side in each bin: no translucent overlap, no mixed colour
        ax.hist(values, bins=bins, color=[f"C{i % 10}" for i in range(len(names))], label=names,
                edgecolor="white", histtype="bar")
        ax.legend(fontsize=8)
    ax.set_xlabel("share of samples giving the most common answer")
    ax.set_ylabel("problems")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title("answer agreement")
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig)


def plot_best_of_n(dataset: DatasetReport) -> bytes:
    """maj@k, rm@k, weighted maj@k and pass@k of one dataset against k."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, style in (("maj@k", "-o"), ("rm@k", "-^"), ("wmaj@k", "-.v"), ("pass@k", "--s")):
        points = curve(dataset.metrics, name)
        if points:
            ks, values = zip(*points, strict=True)
            ax.plot(ks, values, style, label=name, markersize=4)
    ax.set_xscale("log", base=2)
    ks = [k for k, _ in curve(dataset.metrics, "pass@k")]
    if ks:
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{dataset.name}: best of k")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def rewards_by_verdict(dataset: DatasetReport) -> tuple[list[float], list[float]]:
    """The rewards (``pred_score``) of correct and of wrong samples."""
    right: list[float] = []
    wrong: list[float] = []
    for row in dataset.problems:
        for score, verdict in zip(row.get("pred_score") or [], row.get("score") or [], strict=False):
            value = score[0] if isinstance(score, list) and score else score
            if isinstance(value, (int, float)):
                (right if verdict else wrong).append(float(value))
    return right, wrong


def plot_reward_histogram(dataset: DatasetReport) -> bytes:
    """Is the reward model calibrated on this run? Rewards of correct vs wrong samples."""
    plt = _pyplot()
    right, wrong = rewards_by_verdict(dataset)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    values = right + wrong
    bins = 20 if values and min(values) < max(values) else 1
    for label, data, colour in (("correct", right, "C2"), ("wrong", wrong, "C3")):
        if data:
            ax.hist(data, bins=bins, range=(min(values), max(values)) if bins > 1 else None,
                    alpha=0.55, color=colour, label=f"{label} ({len(data)})", edgecolor="white")
    ax.set_xlabel("reward")
    ax.set_ylabel("samples")
    ax.set_title(f"{dataset.name}: reward vs correctness")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return _png(fig)


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


# --- HTML ---------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:.35em .7em;text-align:left}
th{background:#e8eef7}td.num{text-align:right;font-variant-numeric:tabular-nums}
img.plot{display:block;max-width:100%;margin:1em 0;border:1px solid #ddd}
details{margin:.4em 0;border:1px solid #ddd;border-radius:4px;padding:.3em .6em}
summary{cursor:pointer}pre{white-space:pre-wrap;background:#f6f6f6;padding:.6em;font-size:85%}
.ok{color:#17702a}.bad{color:#b3261e}code.cfg{font-size:85%}
"""


def write_html_report(report: RunReport, *, card: Any = None) -> Path:
    """Write the PNG plots and ``report.html`` under ``RUN/report/``; returns the HTML path.

    ``card`` (``qwen_math.runs.card.Card``): the model-card table and one plot per block.
    """
    out = output_folder(RunLayout(report.run_dir).report_dir, what="report folder")
    plots: list[tuple[str, str, bytes]] = [("curves", "maj@k and pass@k against k", plot_curves(report))]
    if card is not None:
        from qwen_math.runs.card import card_plots

        plots = card_plots(card) + plots
    for d in report.datasets:
        groups = breakdowns(d.metrics)
        if groups:
            plots.append((f"breakdown_{d.name}", f"{d.name}: accuracy by {' and '.join(groups)}",
                          plot_breakdown(d, groups)))
    plots.append(("agreement", "answer agreement per problem", plot_agreement(report)))
    for d in report.datasets:
        if has_rewards(d):
            plots.append((f"best_of_n_{d.name}", f"{d.name}: maj@k, rm@k, weighted maj@k, pass@k",
                          plot_best_of_n(d)))
            plots.append((f"rewards_{d.name}", f"{d.name}: reward of correct vs wrong samples",
                          plot_reward_histogram(d)))
    page = render_html(report, plots, card=card)
    path = out / "report.html"
    try:
        for name, _, png in plots:
            (out / f"{name}.png").write_bytes(png)
        write_text_atomic(path, page)
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(f"disk full while writing the report in {out}; free space and rerun") from None
        raise UsageError(f"cannot write the report in {out}: {exc.strerror or exc}") from None
    return path


def render_html(report: RunReport, plots: Sequence[tuple[str, str, bytes]], *, card: Any = None) -> str:
    from qwen_math.runs.card import card_html

    header, rows = table_rows(report)
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>qwen-math report: {_e(report.run_dir.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>qwen-math report: {_e(report.run_dir.name)}</h1>",
        _config_line(report.manifest),
        "<h2>Metrics</h2>",
        '<table id="metrics">',
        "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>",
        *("<tr>" + "".join(f'<td class="{"num" if i else ""}">{_e(c)}</td>' for i, c in enumerate(row)) + "</tr>" for row in rows),
        "</table>",
        "<p>acc: mean over problems of each problem's sample accuracy; maj@k: majority vote of k "
        "samples, averaged over subsets; pass@k: unbiased estimator; [95 % interval: Wilson over "
        "problems for acc, bootstrap over problems (never narrower) for maj@k and pass@k].</p>",
        card_html(card) if card is not None else "",
        "<h2>Plots</h2>",
    ]
    for name, title, png in plots:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h3>{_e(title)}</h3>")
        parts.append(f'<img class="plot" id="plot-{_e(name)}" alt="{_e(title)}" src="data:image/png;base64,{data}">')
    parts.append("<h2>Failed problems (majority answer wrong)</h2>")
    for d in report.datasets:
        parts.append(_traces_html(report.run_dir, d))
    parts.append("</body></html>")
    return "\n".join(parts)


def _config_line(manifest: Mapping[str, Any]) -> str:
    config = manifest.get("config", {})
    sampling = config.get("sampling", {})
    backend = config.get("backend")
    items = {
        # a replay backend used no model: naming the default one would mislead
        "model": config.get("model") if backend not in BACKENDS_WITHOUT_MODEL else "(none: replayed)",
        "backend": backend, "mode": config.get("mode"),
        "n": sampling.get("n"), "temperature": sampling.get("temperature"),
        "top_p": sampling.get("top_p"), "max_tokens": sampling.get("max_tokens"),
        "seed": sampling.get("seed"), "fingerprint": manifest.get("fingerprint", {}).get("sha256", "")[:12],
    }
    text = ", ".join(f"{k}={v}" for k, v in items.items())
    return f'<p><code class="cfg">{_e(text)}</code></p>'


def shown_answer(answer: Any) -> str:
    """An answer for people: ``(no answer)`` rather than ``None``."""
    return "(no answer)" if answer is None else str(answer)


def failed_rows(dataset: DatasetReport) -> list[Mapping[str, Any]]:
    """Problems whose majority answer is wrong (or that no sample answered)."""
    return [row for row in dataset.problems if not majority_correct(row)]


def _traces_html(run_dir: Path, dataset: DatasetReport) -> str:
    failed = failed_rows(dataset)
    parts = [f"<h3>{_e(dataset.name)}: {len(failed)} of {len(dataset.problems)} problems</h3>"]
    if not failed:
        return "\n".join(parts)
    samples = load_samples(RunLayout(run_dir).samples(dataset.name))
    for row in failed[:MAX_TRACES]:
        idx = row["idx"]
        parts.append(f"<details><summary>#{_e(idx)} gold <b>{_e(row.get('gt'))}</b>; answers "
                     f"{_e(', '.join(shown_answer(p) for p in row.get('pred') or []))}</summary>")
        parts.append(f"<pre>{_e(row.get('question'))}</pre>")
        for sample in range(len(row.get("pred") or [])):
            record = samples.get((idx, sample))
            if record is None:
                continue
            verdict = "ok" if record.correct else "bad"
            parts.append(
                f'<details><summary>sample {sample}: <span class="{verdict}">{_e(shown_answer(record.answer))}</span>'
                f" ({_e(record.grade_status)}, finish {_e(record.finish_reason)}, "
                f"{record.tool_calls} tool calls)</summary><pre>{_e(record.response)}</pre></details>"
            )
        parts.append("</details>")
    if len(failed) > MAX_TRACES:
        parts.append(f"<p>... {len(failed) - MAX_TRACES} more in problems.jsonl</p>")
    return "\n".join(parts)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))
