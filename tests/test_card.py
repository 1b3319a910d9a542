"""The model-card report: blocks, the published column, differences, the GaoKao pool, averages."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen_math.errors import UsageError
from qwen_math.runs.card import build_card, format_card, published_model, published_value
from qwen_math.runs.report import DatasetReport, RunReport

MODEL = "Qwen2.5-Math-7B-Instruct"
PUBLISHED = [
    {"model": MODEL, "mode": "cot", "setting": "greedy", "dataset": "gsm8k", "value": 95.2, "unit": "percent"},
    {"model": MODEL, "mode": "cot", "setting": "greedy", "dataset": "gaokao2024", "value": 66.3, "unit": "percent"},
    {"model": MODEL, "mode": "cot", "setting": "greedy", "dataset": "avg_zh", "value": 77.1, "unit": "percent"},
    {"model": MODEL, "mode": "cot", "setting": "greedy", "dataset": "aime24", "value": 5, "unit": "solved", "out_of": 30},
    {"model": MODEL, "mode": "tir", "setting": "greedy", "dataset": "gsm8k", "value": 94.6, "unit": "percent"},
    {"model": "Qwen2.5-Math-7B", "mode": "few-shot-cot", "setting": "greedy", "dataset": "gsm8k", "value": 91.6, "unit": "percent"},
]


def dataset(name: str, scores: list[list[bool]], **metrics) -> DatasetReport:
    acc = sum(map(sum, scores)) / sum(map(len, scores))
    rows = tuple({"idx": i, "pred": ["x"] * len(s), "score": s} for i, s in enumerate(scores))
    return DatasetReport(name, {"acc": acc, "maj@k": {"1": acc}, "pass@k": {"1": acc}, **metrics}, rows)


def suite_report(datasets, *, n: int = 1, model: str = f"Qwen/{MODEL}") -> RunReport:
    config = {"suite": "qwen25-math", "mode": "cot", "model": model, "sampling": {"n": n}, "not_run": ["tabmwp"]}
    return RunReport(Path("/tmp/run"), {"config": config}, tuple(datasets))


def rows_by_name(card):
    return {row.name: row for row in card.rows}


def test_card_blocks_published_values_and_differences():
    report = suite_report([
        dataset("gsm8k", [[True], [False]]),
        dataset("gaokao2024_I", [[True]]),
        dataset("gaokao_math_qa", [[False], [False], [False]]),
        dataset("aime24", [[True], [False], [False]]),
    ])
    card = build_card(report, PUBLISHED, published_model(PUBLISHED, None, f"Qwen/{MODEL}"))
    rows = rows_by_name(card)
    assert card.model == MODEL and card.setting == "greedy"
    # a dataset: ours 50.0 against 95.2, the interval around the difference
    gsm8k = rows["gsm8k"]
    assert gsm8k.acc == 50.0 and gsm8k.published == 95.2
    assert gsm8k.diff == pytest.approx(-45.2)
    assert gsm8k.diff_ci[0] <= gsm8k.diff <= gsm8k.diff_ci[1]
    # the GaoKao column: pooled over problems (1 of 4) and the unweighted mean (100 and 0)
    assert rows["GaoKao (pooled, our reading)"].acc == 25.0
    assert rows["GaoKao (mean of 2)"].acc == 50.0
    assert "without gaokao2024_II" in rows["GaoKao (pooled, our reading)"].note
    # competitions: a solved count is compared as a percentage
    assert rows["aime24"].published == pytest.approx(100 * 5 / 30)
    # averages only when every column ran; datasets without a file are "not run"
    averages = [row for row in card.rows if row.name == "Avg."]
    assert all(row.acc is None and "columns ran" in row.note for row in averages)
    assert rows["tabmwp"].note == "not run (no data file)" and rows["math"].note == "not run"
    text = format_card(card)
    for fragment in ("English:", "Chinese:", "Competitions:", f"published greedy ({MODEL}, cot)", "-45.2"):
        assert fragment in text


def test_rm_column_only_once_reward_scores_exist():
    plain = build_card(suite_report([dataset("gsm8k", [[True]])]), PUBLISHED, MODEL)
    assert "rm@k" not in format_card(plain)
    scored = build_card(suite_report([dataset("gsm8k", [[True]], **{"rm@k": {"1": 1.0}})]), PUBLISHED, MODEL)
    assert "rm@k" in format_card(scored) and rows_by_name(scored)["gsm8k"].rm == 100.0


@pytest.mark.parametrize(("model", "mode", "setting", "key", "expected"), [
    (MODEL, "tir", "greedy", "gsm8k", 94.6),
    ("Qwen2.5-Math-7B", "cot", "greedy", "gsm8k", 91.6),  # base models: the few-shot CoT rows
    (MODEL, "cot", "maj@8", "gsm8k", None),
    (None, "cot", "greedy", "gsm8k", None),
])
def test_published_value(model, mode, setting, key, expected):
    assert published_value(PUBLISHED, model, mode, setting, key) == expected


def test_published_model_choice():
    assert published_model(PUBLISHED, None, "/models/some-finetune") is None
    assert published_model(PUBLISHED, "Qwen2.5-Math-7B", "x") == "Qwen2.5-Math-7B"
    with pytest.raises(UsageError, match="--published 'GPT-5' is not in the published file"):
        published_model(PUBLISHED, "GPT-5", None)
