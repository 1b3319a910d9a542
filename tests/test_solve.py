"""`generate_samples` and `solve` as a library, and end to end on the tiny random checkpoint."""

from __future__ import annotations

import json

import pytest

from qwen_math.cli import main
from qwen_math.config import SamplingConfig, default_sampling, sample_seed
from qwen_math.errors import UsageError
from qwen_math.record import FINISH_REASONS
from qwen_math.solve import ProblemInput, generate_samples, solve

pytest.importorskip("eval.metrics")


PROBLEMS = [ProblemInput("a", "1+1?"), ProblemInput("b", "2+2?", dataset="gsm8k")]


# --- generate_samples: every (problem, sample) once, with its own seed -------------------------
def test_every_sample_once_with_its_seed(scripted):
    results = list(generate_samples(PROBLEMS, mode="cot", sampling=SamplingConfig(n=3, seed=7),
                                    backend=scripted(["\\boxed{2}"])))
    assert sorted((r.problem_id, r.sample) for r in results) == [(p, s) for p in "ab" for s in range(3)]
    for r in results:
        assert r.seed == sample_seed(7, r.problem_id, r.sample)
        assert r.finish_reason in FINISH_REASONS and r.answer == "2"
        assert r.generation_time_s >= 0 and r.prompt_tokens > 0


def test_skip_and_sample_range_for_resume_and_shards(scripted):
    results = list(generate_samples(PROBLEMS, mode="cot", sampling=SamplingConfig(n=4),
                                    backend=scripted(["\\boxed{2}"]), samples=range(2, 4),
                                    skip={("a", 2), ("b", 3)}))
    assert sorted((r.problem_id, r.sample) for r in results) == [("a", 3), ("b", 2)]


def test_duplicate_problem_ids_are_refused(scripted):
    with pytest.raises(UsageError, match="problem id 'a' appears more than once"):
        list(generate_samples([PROBLEMS[0], PROBLEMS[0]], mode="cot", sampling=SamplingConfig(),
                              backend=scripted(["x"])))


def test_dataset_policy_reaches_extraction(scripted):
    # gsm8k's policy takes the last number of the prose; the default policy does not guess
    results = {r.problem_id: r.answer for r in generate_samples(
        PROBLEMS, mode="cot", sampling=SamplingConfig(), backend=scripted(["so she has 18 eggs left"]))}
    assert results == {"a": None, "b": "18"}


# --- solve: votes and bad input ------------------------------------------------------------------
def test_solve_votes_with_equivalent_answers_merged(scripted):
    solution = solve("1/2 + 0?", n=3, backend=scripted(["\\boxed{\\frac{1}{2}}"], ["\\boxed{0.5}"], ["\\boxed{3}"]))
    assert solution.answer == "\\frac{1}{2}"
    assert solution.votes == {"\\frac{1}{2}": 2, "3": 1}
    assert [s.sample for s in solution.samples] == [0, 1, 2]


@pytest.mark.parametrize(
    "problem,message",
    [
        ("", "the problem is empty"),
        (" \n\t", "the problem is empty"),
        ("x" * 200_000, "the problem is 200,000 characters"),
        (" ".join(["word"] * 5000), "the prompt is"),
    ],
)
def test_solve_rejects_bad_problems(scripted, problem, message):
    with pytest.raises(UsageError, match=message):
        solve(problem, backend=scripted(["x"]))


def test_solve_rejects_conflicting_n(scripted):
    with pytest.raises(UsageError, match=r"n=2 disagrees with sampling\.n=3"):
        solve("1+1?", n=2, sampling=default_sampling(n=3), backend=scripted(["x"]))


# --- end to end on the tiny random Qwen2 checkpoint -----------------------------------------------
@pytest.mark.parametrize("mode", ["cot", "pot", "tir"])
def test_cli_end_to_end_on_tiny_checkpoint(tiny_checkpoint, capsys, mode):
    pytest.importorskip("qwen_math.backends.hf")
    argv = ["-q", "solve", "What is 2+2?", "--model", str(tiny_checkpoint), "--mode", mode,
            "-n", "2", "--max-tokens", "12", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["samples"]) == 2
    for sample in out["samples"]:
        assert sample["finish_reason"] in ("length", "eos", "stop")
        assert 0 < sample["completion_tokens"] <= 12


def test_sample_text_does_not_depend_on_the_batch(tiny_checkpoint):
    pytest.importorskip("qwen_math.backends.hf")
    from qwen_math.backends.base import BackendOptions
    from qwen_math.backends.hf import HFBackend

    backend = HFBackend.create(BackendOptions(model=str(tiny_checkpoint)))
    sampling = default_sampling(n=2, max_tokens=10, seed=3)

    def texts(problems):
        return {(r.problem_id, r.sample): r.response
                for r in generate_samples(problems, mode="cot", sampling=sampling, backend=backend)}

    alone = texts(PROBLEMS[:1])
    together = texts(PROBLEMS)
    assert {k: v for k, v in together.items() if k[0] == "a"} == alone
    assert alone[("a", 0)] != alone[("a", 1)]  # each sample has its own seed
