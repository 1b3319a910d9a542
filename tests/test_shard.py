"""Sharded runs: the deterministic i/N slice, and `qwen-math merge` giving back the unsharded
run (same samples, views, metrics and fingerprint), with every way a merge can be wrong."""

from __future__ import annotations

import json
import shutil

import pytest

from qwen_math.cli import main
from qwen_math.errors import ExitCode, PartialRun, ResumeRefused, UsageError
from qwen_math.record import strip_time_dependent
from qwen_math.runs.manifest import Fingerprint
from qwen_math.runs.store import RunLayout, load_samples
from qwen_math.shard import (
    SHARD_FIELD,
    merge_runs,
    parse_shard,
    select_shard,
    shard_fingerprint_fields,
)


# --- parsing and slicing ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, index, count",
    [("0/1", 0, 1), ("3/4", 3, 4), (" 1 / 2 ", 1, 2), ("0/64", 0, 64)],
)
def test_parse_shard(text, index, count):
    shard = parse_shard(text)
    assert (shard.index, shard.count) == (index, count)


@pytest.mark.parametrize("text", ["4/4", "5/4", "-1/4", "1/0", "0/0", "a/b", "1", "", "1/2/3", "1.0/2"])
def test_parse_shard_rejects(text):
    with pytest.raises(UsageError, match=r"shard must be i/N with 0 <= i < N, got"):
        parse_shard(text)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 10])
def test_shards_partition_the_problems(count):
    problems = [f"p{i}" for i in range(23)]
    shards = [select_shard(problems, f"{i}/{count}") for i in range(count)]
    assert sorted(p for shard in shards for p in shard) == sorted(problems)  # every problem once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
    assert shards == [select_shard(problems, f"{i}/{count}") for i in range(count)]  # deterministic


def test_round_robin_mixes_a_sorted_dataset():
    # a dataset sorted by level: every shard gets easy and hard problems
    levels = [1] * 10 + [5] * 10
    assert sorted(set(select_shard(levels, "0/4"))) == [1, 5]


def test_no_shard_is_everything():
    assert select_shard((1, 2, 3), None) == [1, 2, 3]


def test_shard_fingerprint_field():
    assert shard_fingerprint_fields({"a": 1}, None) == {"a": 1}
    assert shard_fingerprint_fields({"a": 1}, " 2/4") == {"a": 1, SHARD_FIELD: "2/4"}


# --- merging ------------------------------------------------------------------------------------
SCRIPT = [["So the answer is $\\boxed{4}$."], ["I get $\\boxed{5}$."], ["No answer."]]
GOLDS = ["4", "5", "6", "4", "5", "6", "7"]


@pytest.fixture(scope="module")
def eval_argv(tmp_path_factory):
    """`qwen-math eval` argv (without --output-dir) of a scripted CoT run: 7 problems, n = 2."""
    root = tmp_path_factory.mktemp("toy")
    data = root / "toy.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {g} + 0?", "answer": g}) + "\n" for g in GOLDS))
    script = root / "script.jsonl"
    script.write_text("".join(json.dumps(line) + "\n" for line in SCRIPT))
    return ["eval", "--datasets", str(data), "-n", "2", "--backend", "scripted", "--script", str(script),
            "--max-tokens", "32", "--no-progress"]


@pytest.fixture(scope="module")
def unsharded(eval_argv, tmp_path_factory):
    """The finished unsharded run."""
    run = tmp_path_factory.mktemp("unsharded") / "run"
    assert main([*eval_argv, "--output-dir", str(run)]) == 0
    return run


def split_run(run, folder, count, *, drop=()):
    """The shard directories `eval --shard i/N` writes, cut out of a finished run."""
    from qwen_math.runs.views import write_dataset_views, write_run_metrics

    manifest = json.loads(RunLayout(run).manifest.read_text())
    datasets = manifest["config"]["datasets"]
    shards = []
    for index in range(count):
        if index in drop:
            continue
        shard = f"{index}/{count}"
        layout = RunLayout(folder / f"shard{index}")
        layout.root.mkdir(parents=True)
        metrics = []
        for dataset in datasets:
            records = load_samples(RunLayout(run).samples(dataset))
            kept = set(select_shard(sorted({idx for idx, _ in records}), shard))
            mine = [records[key] for key in sorted(records) if key[0] in kept]
            layout.dataset_dir(dataset).mkdir()
            layout.samples(dataset).write_text("".join(json.dumps(r.to_json()) + "\n" for r in mine))
            metrics.append(write_dataset_views(layout, dataset, mine, None))
        write_run_metrics(layout, metrics, datasets)
        fields = shard_fingerprint_fields(manifest["fingerprint"]["fields"], shard)
        layout.manifest.write_text(json.dumps({**manifest, "fingerprint": Fingerprint(fields).to_json(),
                                               "config": {**manifest["config"], SHARD_FIELD: shard}}))
        shards.append(layout.root)
    return shards


def read_view(run, name):
    layout = RunLayout(run)
    dataset = json.loads(layout.manifest.read_text())["config"]["datasets"][0]
    path = {"samples": layout.samples(dataset), "problems": layout.problems(dataset),
            "metrics": layout.dataset_metrics(dataset)}[name]
    if name == "metrics":
        return strip_time_dependent(json.loads(path.read_text()))
    rows = [strip_time_dependent(json.loads(line)) for line in path.read_text().splitlines()]
    # samples.jsonl is append-only in completion order: compare it as a set of records
    return sorted(rows, key=lambda row: (row["idx"], row.get("sample", 0)))


@pytest.mark.parametrize("count", [1, 2, 3])
def test_merge_equals_the_unsharded_run(unsharded, tmp_path, count, capsys):
    shards = split_run(unsharded, tmp_path, count)
    merged = tmp_path / "merged"
    assert main(["merge", *map(str, reversed(shards)), "--output-dir", str(merged)]) == 0
    assert f"merged {count} shards, 14 samples" in capsys.readouterr().out
    for view in ("samples", "problems", "metrics"):
        assert read_view(merged, view) == read_view(unsharded, view), view
    run_metrics = json.loads(RunLayout(merged).metrics.read_text())
    assert strip_time_dependent(run_metrics) == strip_time_dependent(json.loads(RunLayout(unsharded).metrics.read_text()))
    original = json.loads(RunLayout(unsharded).manifest.read_text())
    manifest = json.loads(RunLayout(merged).manifest.read_text())
    assert manifest["fingerprint"] == original["fingerprint"]  # resumable as the unsharded run
    assert SHARD_FIELD not in manifest["config"]
    assert manifest["datasets"] == original["datasets"]
    assert [entry[SHARD_FIELD] for entry in manifest["merged_from"]] == [f"{i}/{count}" for i in range(count)]


def test_merged_run_resumes_as_the_unsharded_command(unsharded, eval_argv, tmp_path):
    merged = tmp_path / "merged"
    merge_runs(split_run(unsharded, tmp_path, 2), merged)
    before = read_view(merged, "samples")
    assert main([*eval_argv, "--output-dir", str(merged)]) == 0  # not refused (same fingerprint)
    assert read_view(merged, "samples") == before  # nothing regenerated


# --- what a merge refuses -------------------------------------------------------------------------
def edit_manifest(run, change):
    manifest = json.loads(RunLayout(run).manifest.read_text())
    change(manifest)
    RunLayout(run).manifest.write_text(json.dumps(manifest))


def test_missing_shard(unsharded, tmp_path):
    with pytest.raises(UsageError, match=r"shard\(s\) 1/3 missing; merge needs all 3"):
        merge_runs(split_run(unsharded, tmp_path, 3, drop={1}), tmp_path / "out")


def test_shard_given_twice(unsharded, tmp_path):
    shards = split_run(unsharded, tmp_path, 2)
    copy = tmp_path / "copy"
    shutil.copytree(shards[0], copy)
    with pytest.raises(UsageError, match="shard 0/2 appears twice"):
        merge_runs([*shards, copy], tmp_path / "out")


def test_different_configuration_is_refused(unsharded, tmp_path):
    shards = split_run(unsharded, tmp_path, 2)

    def change(manifest):
        fields = {**manifest["fingerprint"]["fields"], "sampling.temperature": 1.0}
        manifest["fingerprint"] = Fingerprint(fields).to_json()

    edit_manifest(shards[1], change)
    with pytest.raises(ResumeRefused, match=r"sampling.temperature: 0.7 -> 1.0"):
        merge_runs(shards, tmp_path / "out")
    assert main(["merge", *map(str, shards), "--output-dir", str(tmp_path / "out")]) == ExitCode.RESUME_REFUSED


def test_unfinished_shard(unsharded, tmp_path):
    shards = split_run(unsharded, tmp_path, 2)
    dataset = json.loads(RunLayout(shards[1]).manifest.read_text())["config"]["datasets"][0]
    RunLayout(shards[1]).dataset_metrics(dataset).unlink()
    with pytest.raises(PartialRun, match="is not finished"):
        merge_runs(shards, tmp_path / "out")


def test_overlapping_shards(unsharded, tmp_path):
    shards = split_run(unsharded, tmp_path, 2)
    dataset = json.loads(RunLayout(shards[0]).manifest.read_text())["config"]["datasets"][0]
    extra = RunLayout(shards[0]).samples(dataset).read_text().splitlines()[0]
    with RunLayout(shards[1]).samples(dataset).open("a") as file:
        file.write(extra + "\n")
    with pytest.raises(UsageError, match="the shards overlap"):
        merge_runs(shards, tmp_path / "out")


@pytest.mark.parametrize("case", ["unsharded", "output is a shard", "output not empty", "not a run"])
def test_bad_inputs(unsharded, tmp_path, case):
    shards = split_run(unsharded, tmp_path, 2)
    output = tmp_path / "out"
    if case == "unsharded":
        shards, match = [unsharded], "not a shard"
    elif case == "output is a shard":
        output, match = shards[0], "is one of the shards"
    elif case == "output not empty":
        output.mkdir()
        (output / "notes.txt").write_text("mine")
        match = "exists and is not empty"
    else:
        shards, match = [tmp_path / "nowhere"], "no such run directory"
    with pytest.raises(UsageError, match=match):
        merge_runs(shards, output)
    assert main(["merge", *map(str, shards), "--output-dir", str(output)]) == ExitCode.USAGE


# --- `eval --shard` end to end --------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_eval_argv(eval_argv, tiny_checkpoint):
    """The same run on the tiny checkpoint: per-sample seeds make every sample shard-invariant
    (the scripted backend hands out its lines in request order, which a shard changes)."""
    argv = eval_argv[: eval_argv.index("--backend")] + eval_argv[eval_argv.index("--max-tokens"):]
    return [*argv, "--model", str(tiny_checkpoint), "--max-tokens", "8"]


def test_sharded_eval_and_merge_equal_unsharded_eval(hf_eval_argv, tmp_path):
    unsharded = tmp_path / "unsharded"
    assert main([*hf_eval_argv, "--output-dir", str(unsharded)]) == 0
    shards = [tmp_path / f"s{index}" for index in range(3)]
    for index, shard_dir in enumerate(shards):
        assert main([*hf_eval_argv, "--output-dir", str(shard_dir), "--shard", f"{index}/3"]) == 0
    merged = tmp_path / "merged"
    assert main(["merge", *map(str, shards), "--output-dir", str(merged)]) == 0
    for view in ("samples", "problems", "metrics"):
        assert read_view(merged, view) == read_view(unsharded, view), view
    original = json.loads(RunLayout(unsharded).manifest.read_text())
    assert json.loads(RunLayout(merged).manifest.read_text())["fingerprint"] == original["fingerprint"]
