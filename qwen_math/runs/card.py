"""A suite run laid out like the model card, beside the published numbers.

``build_card(report, published_rows, model)`` arranges a run's datasets in the blocks of the
Qwen2.5-Math technical report (English, Chinese, competitions; ``qwen_math.suites``): one row
per dataset with our greedy/acc, maj@k and pass@k (percent), the published value for the run's
mode and setting, and the difference with its 95 % interval (``difference_interval``: the
published value is taken as fixed, the interval is our value's). The report's averages are
recomputed the way it computes them (mean of its columns). Its Chinese "GaoKao" column pools
five sets without saying how: the card shows the problem-weighted pool ("pooled (our
reading)") and the unweighted mean of the five. Suite datasets without a data file are listed
as "not run".

Which published setting a run is compared with: ``greedy`` for a run with n = 1 (our acc),
``maj@8`` for n >= 8 (our maj@8). Competition rows are printed as solved counts in the report;
they are compared as percentages (solved / out of).

What it deliberately does not do: recompute metrics from samples (it reads ``metrics.json``
and ``problems.jsonl``), or fetch the published numbers (they come from a local file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_math.errors import UsageError
from qwen_math.paths import read_input_text

PUBLISHED_FILE_ENV = "QWEN_MATH_PUBLISHED_FILE"
PUBLISHED_FILE_NAME = "qwen25_math_published.json"
NOT_RUN = "not run"


@dataclass(frozen=True)
class CardRow:
    block: str
    name: str
    kind: str  # dataset | pooled | mean | average | not_run
    problems: int | None
    acc: float | None  # percent
    maj: float | None
    pass_: float | None
    k: int | None
    published: float | None
    diff: float | None
    diff_ci: tuple[float, float] | None
    note: str = ""
    rm: float | None = None  # rm@k (percent) once the run has reward scores (``rm@k`` in metrics)


@dataclass(frozen=True)
class Card:
    model: str | None  # the published model compared with (None: no published column)
    mode: str
    setting: str  # greedy | maj@8
    rows: tuple[CardRow, ...]


# --- the published numbers --------------------------------------------------------------------

def find_published_file(flag: str | None, data_dir: str | None) -> Path | None:
    """``--published-file``, ``$QWEN_MATH_PUBLISHED_FILE``, then ``../published/`` of the data dir."""
    if flag:
        return Path(flag)
    if os.environ.get(PUBLISHED_FILE_ENV):
        return Path(os.environ[PUBLISHED_FILE_ENV])
    if data_dir:
        for candidate in (Path(data_dir) / PUBLISHED_FILE_NAME,
                          Path(data_dir).parent / "published" / PUBLISHED_FILE_NAME):
            if candidate.is_file():
                return candidate
    return None


def load_published(path: Path) -> list[dict[str, Any]]:
    text = read_input_text(path, what="--published-file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise UsageError(f"{path}: expected an object with a 'rows' list (the published tables)")
    return [row for row in rows if isinstance(row, dict)]


def published_model(rows: Sequence[Mapping[str, Any]], requested: str | None, run_model: str | None) -> str | None:
    """The published model to compare with: ``--published``, else the run's model if listed."""
    models = sorted({str(row.get("model")) for row in rows})
    if requested:
        if requested not in models:
            raise UsageError(f"--published {requested!r} is not in the published file; models: {', '.join(models)}")
        return requested
    name = Path(str(run_model or "").rstrip("/")).name
    return name if name in models else None


def published_value(rows: Sequence[Mapping[str, Any]], model: str | None, mode: str, setting: str,
                    dataset: str) -> float | None:
    """A published cell in percent (solved counts turned into percentages)."""
    if model is None:
        return None
    modes = (mode, "few-shot-cot")  # base models have only few-shot CoT rows
    for wanted_mode in modes:
        for row in rows:
            if (row.get("model") == model and row.get("mode") == wanted_mode
                    and row.get("setting") == setting and row.get("dataset") == dataset):
                value = float(row["value"])
                return 100.0 * value / float(row["out_of"]) if row.get("unit") == "solved" else value
    return None


# --- the interval of a difference -------------------------------------------------------------

def difference_interval(per_problem: Sequence[float], published: float, *, setting: str,
                        seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Ours minus published (percent points) with the 95 % interval of our per-problem mean.

    The interval is ``eval.metrics.interval``, the project's single source of intervals:
    Wilson over problems for greedy/acc, the bootstrap over problems (never narrower than
    Wilson) for maj@k.
    """
    from eval.metrics import interval

    ours = 100.0 * sum(per_problem) / len(per_problem)
    method = "wilson" if setting == "greedy" else "bootstrap"
    low, high = interval(list(per_problem), method=method, seed=seed)
    return ours - published, (100.0 * low - published, 100.0 * high - published)


# --- building the card ----------------------------------------------------------------------

def per_problem_values(problems: Sequence[Mapping[str, Any]], setting: str) -> list[float]:
    """Per problem: its accuracy over samples (greedy/acc) or whether its majority is right."""
    from qwen_math.runs.views import majority_correct

    if setting == "greedy":
        return [sum(bool(s) for s in row.get("score") or []) / max(1, len(row.get("score") or []))
                for row in problems]
    return [1.0 if majority_correct(row) else 0.0 for row in problems]


def measured(metrics: Mapping[str, Any]) -> tuple[float | None, float | None, float | None, int | None]:
    """(acc, maj@k, pass@k, k) in percent, k the largest recorded."""
    from qwen_math.runs.report import at_max_k

    maj, pas = at_max_k(metrics, "maj@k"), at_max_k(metrics, "pass@k")
    acc = metrics.get("acc")
    return (None if acc is None else 100.0 * float(acc), 100.0 * maj[1] if maj else None,
            100.0 * pas[1] if pas else None, maj[0] if maj else None)


def run_setting(report: Any) -> str:
    n = int(report.manifest.get("config", {}).get("sampling", {}).get("n", 1) or 1)
    return "maj@8" if n >= 8 else "greedy"


def build_card(report: Any, published_rows: Sequence[Mapping[str, Any]], model: str | None) -> Card:
    """The card of a suite run (``report``: ``qwen_math.runs.report.RunReport``)."""
    from qwen_math.suites import BLOCK_TITLES, CARD_AVERAGES, POOLS, get_suite

    config = report.manifest.get("config", {})
    suite = get_suite(config.get("suite") or "qwen25-math")
    mode, setting = config.get("mode", "cot"), run_setting(report)
    by_name = {d.name: d for d in report.datasets}
    not_run = set(config.get("not_run") or [])
    compared: dict[str, float] = {}  # card column -> our value, for the averages
    rows: list[CardRow] = []
    for block in BLOCK_TITLES:
        for entry in (e for e in suite.entries if e.block == block):
            if entry.dataset not in by_name:
                note = NOT_RUN + (" (no data file)" if entry.dataset in not_run else "")
                rows.append(CardRow(block, entry.dataset, "not_run", None, None, None, None, None,
                                    published_value(published_rows, model, mode, setting, entry.published or ""),
                                    None, None, note))
                continue
            dataset = by_name[entry.dataset]
            rows.append(dataset_row(block, dataset, entry.published, published_rows, model, mode, setting, compared))
        for pool in (p for p in POOLS if p.block == block):
            rows.extend(pool_rows(pool, by_name, published_rows, model, mode, setting, compared))
        if block in CARD_AVERAGES:
            rows.append(average_row(block, *CARD_AVERAGES[block], compared, published_rows, model, mode, setting))
    return Card(model, mode, setting, tuple(rows))


def dataset_row(block: str, dataset: Any, published_key: str | None, published_rows: Sequence[Mapping[str, Any]],
                model: str | None, mode: str, setting: str, compared: dict[str, float]) -> CardRow:
    acc, maj, pas, k = measured(dataset.metrics)
    rm = at_largest_k(dataset.metrics, "rm@k")
    published = published_value(published_rows, model, mode, setting, published_key) if published_key else None
    values = per_problem_values(dataset.problems, setting)
    ours = acc if setting == "greedy" else (maj if k == 8 else None)
    if published_key and ours is not None:
        compared[published_key] = ours
    diff, ci = (difference_interval(values, published, setting=setting) if published is not None and values and ours is not None
                else (None, None))
    return CardRow(block, dataset.name, "dataset", len(dataset.problems), acc, maj, pas, k, published, diff, ci,
                   rm=rm)


def at_largest_k(metrics: Mapping[str, Any], name: str) -> float | None:
    """A ``{k: value}`` metric at its largest k, in percent (None when the run has none)."""
    from qwen_math.runs.report import at_max_k

    point = at_max_k(metrics, name)
    return 100.0 * point[1] if point else None


def pool_rows(pool: Any, by_name: Mapping[str, Any], published_rows: Sequence[Mapping[str, Any]],
              model: str | None, mode: str, setting: str, compared: dict[str, float]) -> list[CardRow]:
    """The pooled row (problem-weighted, our reading) and the unweighted mean of the parts."""
    parts = [by_name[name] for name in pool.datasets if name in by_name]
    published = published_value(published_rows, model, mode, setting, pool.published)
    missing = [name for name in pool.datasets if name not in by_name]
    note = f"without {', '.join(missing)}" if missing else ""
    if not parts:
        return [CardRow(pool.block, f"{pool.label} (pooled, our reading)", "not_run", None, None, None,
                        None, None, published, None, None, NOT_RUN)]
    values = [v for d in parts for v in per_problem_values(d.problems, setting)]
    pooled = 100.0 * sum(values) / len(values)
    means = [100.0 * sum(v) / len(v) for v in (per_problem_values(d.problems, setting) for d in parts) if v]
    mean = sum(means) / len(means)
    compared[pool.name] = pooled
    diff, ci = difference_interval(values, published, setting=setting) if published is not None else (None, None)
    ours = (pooled, None, None, None) if setting == "greedy" else (None, pooled, None, 8)
    return [
        CardRow(pool.block, f"{pool.label} (pooled, our reading)", "pooled", len(values), *ours,
                published, diff, ci, note),
        CardRow(pool.block, f"{pool.label} (mean of {len(parts)})", "mean", len(values),
                *((mean, None, None, None) if setting == "greedy" else (None, mean, None, 8)),
                published, None if published is None else mean - published, None, note),
    ]


def average_row(block: str, key: str, columns: Sequence[str], compared: Mapping[str, float],
                published_rows: Sequence[Mapping[str, Any]], model: str | None, mode: str, setting: str) -> CardRow:
    """The report's Avg. column: the mean of its columns, only when every one of them ran."""
    published = published_value(published_rows, model, mode, setting, key)
    have = [compared[c] for c in columns if c in compared]
    if len(have) < len(columns):
        return CardRow(block, "Avg.", "average", None, None, None, None, None, published, None, None,
                       f"{len(have)} of {len(columns)} columns ran")
    ours = sum(have) / len(have)
    cells = (ours, None, None, None) if setting == "greedy" else (None, ours, None, 8)
    return CardRow(block, "Avg.", "average", None, *cells, published,
                   None if published is None else ours - published, None, f"mean of {len(columns)} columns")


# --- output -----------------------------------------------------------------------------------

def has_rm(card: Card) -> bool:
    return any(row.rm is not None for row in card.rows)


def card_header(card: Card) -> list[str]:
    ours = "greedy" if card.setting == "greedy" else "acc"
    published = f"published {card.setting}" + (f" ({card.model}, {card.mode})" if card.model else "")
    rm = ["rm@k"] if has_rm(card) else []
    return ["dataset", "problems", ours, "maj@k", "pass@k", *rm, published, "diff [95% CI]", "note"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def card_cells(row: CardRow, *, rm: bool = False) -> list[str]:
    diff = "-" if row.diff is None else f"{row.diff:+.1f}"
    if row.diff_ci is not None:
        diff += f" [{row.diff_ci[0]:+.1f}, {row.diff_ci[1]:+.1f}]"
    maj = "-" if row.maj is None else f"{row.maj:.1f} (k={row.k})"
    pas = "-" if row.pass_ is None else f"{row.pass_:.1f} (k={row.k})"
    rm_cell = [_pct(row.rm)] if rm else []
    return [row.name, "-" if row.problems is None else str(row.problems), _pct(row.acc), maj, pas,
            *rm_cell, _pct(row.published), diff, row.note]


def format_card(card: Card) -> str:
    """The card as text: one section per block, one row per dataset, percent."""
    from qwen_math.suites import BLOCK_TITLES

    header = card_header(card)
    table = [card_cells(row, rm=has_rm(card)) for row in card.rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *table, strict=True)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    lines = [line(header)]
    for block, title in BLOCK_TITLES.items():
        lines += ["", f"{title}:", "  ".join("-" * w for w in widths)]
        lines += [line(cells) for row, cells in zip(card.rows, table, strict=True) if row.block == block]
    if card.model is None:
        lines += ["", "no published column: the run's model is not in the published file (name one with --published MODEL)"]
    return "\n".join(lines)


def card_html(card: Card) -> str:
    import html

    from qwen_math.suites import BLOCK_TITLES

    parts = ["<h2>Model card</h2>", '<table id="card">',
             "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in card_header(card)) + "</tr>"]
    for block, title in BLOCK_TITLES.items():
        parts.append(f'<tr><th colspan="{len(card_header(card))}">{html.escape(title)}</th></tr>')
        for row in (r for r in card.rows if r.block == block):
            cells = card_cells(row, rm=has_rm(card))
            parts.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def plot_block(card: Card, block: str) -> bytes:
    """Measured vs published per row of one block (grouped bars, percent)."""
    from qwen_math.runs.report import _png, _pyplot
    from qwen_math.suites import BLOCK_TITLES

    plt = _pyplot()
    rows = [r for r in card.rows if r.block == block and r.kind != "not_run"]
    ours = [(r.acc if card.setting == "greedy" else r.maj) or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.7 * len(rows) + 2), 4.2), dpi=120)
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], ours, width=0.4, color="C0", label="measured")
    ax.bar([x + 0.2 for x in xs], [r.published or 0.0 for r in rows], width=0.4, color="C1",
           label=f"published ({card.model})" if card.model else "published (none)")
    ax.set_xticks(list(xs), [r.name for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"{card.setting} (%)")
    ax.set_title(f"{BLOCK_TITLES[block]}: measured vs published")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def card_plots(card: Card) -> list[tuple[str, str, bytes]]:
    from qwen_math.suites import BLOCK_TITLES

    return [(f"card_{block}", f"{title}: measured vs published", plot_block(card, block))
            for block, title in BLOCK_TITLES.items()
            if any(r.block == block and r.kind != "not_run" for r in card.rows)]


def load_card(report: Any, *, published: str | None = None, published_file: str | None = None) -> Card | None:
    """The card of ``report`` when it is a suite run or ``--published`` names a model, else None."""
    config = report.manifest.get("config", {})
    if not config.get("suite") and not published:
        return None
    path = find_published_file(published_file, config.get("data_dir"))
    if path is None and (published or published_file):
        raise UsageError("--published needs the published numbers: pass --published-file FILE "
                         f"(e.g. ../shared/data/published/{PUBLISHED_FILE_NAME}) or set {PUBLISHED_FILE_ENV}")
    rows = load_published(path) if path is not None else []
    return build_card(report, rows, published_model(rows, published, config.get("model")))
