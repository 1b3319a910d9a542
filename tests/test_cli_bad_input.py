"""Bad input to every subcommand: one clear line naming the problem, the documented exit code,
no traceback, and nothing lost. Regression cases from the bad-input audit (auditor 2026-11-26).

Each case runs ``qwen_math.cli.main`` in-process and checks the exit code and a fragment of
the one-line message on stderr. Runs are made with the scripted backend (no weights); the
checkpoint cases copy the session's tiny checkpoint.
"""

from __future__ import annotations

import json
import shutil
import socket

import pytest

from qwen_math.cli import main

pytest.importorskip("eval.metrics")

SCRIPT = [["So the answer is $\\boxed{2}$."], ["I get $\\boxed{5}$."]]
ROWS = [{"question": "What is 1 + 1?", "answer": "2"}, {"question": "What is 2 + 3?", "answer": "5"},
        {"question": "What is 3 + 3?", "answer": "6"}]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit code and stderr of ``qwen-math -q ARGV``; a traceback fails the test."""
    try:
        code = main(["-q", *argv])
    except SystemExit as exit_:  # argparse refuses a flag by exiting
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy dataset, a script and the argv of a scripted eval over it (without --output-dir)."""
    root = tmp_path_factory.mktemp("toy")
    data = write_jsonl(root / "toy.jsonl", ROWS)
    script = write_jsonl(root / "script.jsonl", SCRIPT)
    argv = ["eval", "--datasets", data, "--backend", "scripted", "--script", script,
            "--max-tokens", "16", "--no-progress"]
    return {"root": root, "data": data, "script": script, "argv": argv}


@pytest.fixture(scope="module")
def runs(toy):
    """A finished run, one over another dataset, and the two shards of a third."""
    root = toy["root"]
    other = write_jsonl(root / "other.jsonl", ROWS[:2])
    made = {"run": root / "run", "other": root / "other-run", "s0": root / "s0", "s1": root / "s1"}
    assert main(["-q", *toy["argv"], "--output-dir", str(made["run"])]) == 0
    argv_other = [other if a == toy["data"] else a for a in toy["argv"]]
    assert main(["-q", *argv_other, "--output-dir", str(made["other"])]) == 0
    for index in (0, 1):
        assert main(["-q", *toy["argv"], "--shard", f"{index}/2", "--output-dir", str(made[f"s{index}"])]) == 0
    return made


def copy_run(runs, tmp_path, name="run"):
    target = tmp_path / f"copy-{name}"
    shutil.copytree(runs[name], target)
    return target


# --- sampling and backend flag values (exit 2 before any generation) ---------------------------
@pytest.mark.parametrize("flags, message", [
    (["-n", "0"], "n must be an integer >= 1, got 0"),
    (["--temperature", "-1"], "temperature must be >= 0"),
    (["--temperature", "inf"], "temperature must be finite"),
    (["--temperature", "nan"], "temperature must be >= 0"),
    (["-n", "2", "--top-p", "0"], "top_p must be in (0, 1]"),
    (["-n", "2", "--top-p", "nan"], "top_p must be in (0, 1]"),
    (["--top-k", "-5"], "top_k must be -1"),
    (["--max-tokens", "0"], "max_tokens must be an integer >= 1"),
    (["--max-tool-calls", "-1"], "--max-tool-calls must be an integer >= 0"),
    (["--max-concurrency", "0"], "--max-concurrency must be an integer >= 1"),
    (["--max-retries", "-1"], "--max-retries must be an integer >= 0"),
    (["--request-timeout", "nan"], "--request-timeout must be a finite number"),
    (["--backend", "vllm", "--model", "{model}", "-tp", "0"], "tensor_parallel_size must be an integer >= 1"),
    (["--backend", "vllm", "--model", "{model}", "-dp", "0"], "data_parallel_size must be an integer >= 1"),
    (["--backend", "vllm", "--model", "{model}", "--gpu-memory-utilization", "2"],
     "gpu_memory_utilization must be in (0, 1]"),
    (["--mode", "foo"], "invalid choice: 'foo'"),
    (["-n", "abc"], "invalid int value: 'abc'"),
    (["--temp", "0"], "unrecognized arguments: --temp"),
])
def test_solve_flag_values(toy, capsys, flags, message):
    model = toy["root"] / "fake-model"  # enough of a checkpoint for the flag checks
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    flags = [flag.format(model=model) for flag in flags]
    code, err = run_cli(capsys, "solve", "1+1?", "--backend", "scripted", "--script", toy["script"], *flags)
    assert code == 2 and message in err


# --- the problem text: empty, missing, a folder, not UTF-8 ---------------------------------------
@pytest.mark.parametrize("argument, message", [
    ("", "the problem is empty"),
    ("   \n", "the problem is empty"),
    ("@{root}/missing.txt", "no such file"),
    ("@{root}", "is a directory"),
    ("@{root}/latin1.txt", "not UTF-8"),
])
def test_solve_problem_sources(toy, capsys, argument, message):
    (toy["root"] / "latin1.txt").write_bytes(b"caf\xe9 1+1?")
    argument = argument.format(root=toy["root"])
    code, err = run_cli(capsys, "solve", argument, "--backend", "scripted", "--script", toy["script"])
    assert code == 2 and message in err


# --- other input files a flag names (one reader: qwen_math.paths.read_input_text) -----------------
@pytest.mark.parametrize("script, message", [
    ("{root}/missing.jsonl", "--script {root}/missing.jsonl: no such file"),
    ("{root}", "--script {root}: is a directory"),
    ("{root}/latin1.txt", "--script {root}/latin1.txt: not UTF-8 text"),
])
def test_solve_script_file_errors_name_the_flag_and_path(toy, capsys, script, message):
    (toy["root"] / "latin1.txt").write_bytes(b'["caf\xe9"]\n')
    code, err = run_cli(capsys, "solve", "1+1?", "--backend", "scripted", "--script", script.format(root=toy["root"]))
    assert code == 2 and message.format(root=toy["root"]) in err


def test_solve_stdin_closed(toy, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, err = run_cli(capsys, "solve", "-", "--backend", "scripted", "--script", toy["script"])
    assert code == 2 and "the problem is empty" in err


# --- checkpoint folders: not a folder, bad config.json, damaged or mismatched weights -------------
def damage_config_array(folder):
    (folder / "config.json").write_text("[]")


def damage_config_json(folder):
    (folder / "config.json").write_text("{bad")


def truncate_weights(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:1000])


def empty_weights(folder):
    (folder / "model.safetensors").write_bytes(b"")


def widen_config(folder):
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] *= 2
    (folder / "config.json").write_text(json.dumps(config))


def drop_tensor(folder):
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.0.mlp.gate_proj.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def drop_config(folder):
    (folder / "config.json").unlink()


@pytest.mark.parametrize("damage, message", [
    (drop_config, "folder has no config.json"),
    (damage_config_array, "config.json must be a JSON object, got list"),
    (damage_config_json, "config.json is not valid JSON"),
    (truncate_weights, "a .safetensors file is damaged or truncated"),
    (empty_weights, "a .safetensors file is damaged or truncated"),
    (widen_config, "the weights' shapes do not match config.json"),
    (drop_tensor, "the checkpoint lacks 1 weight tensor(s) (model.layers.0.mlp.gate_proj.weight)"),
])
def test_damaged_checkpoint(tiny_checkpoint, tmp_path, capsys, damage, message):
    from transformers.utils import logging as hf_logging

    # transformers' handler keeps the stderr of the test that imported it first: quiet it here
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        check_damaged_checkpoint(tiny_checkpoint, tmp_path, capsys, damage, message)
    finally:
        hf_logging.set_verbosity(verbosity)


def check_damaged_checkpoint(tiny_checkpoint, tmp_path, capsys, damage, message):
    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    damage(folder)
    code, err = run_cli(capsys, "solve", "1+1?", "--model", str(folder), "--max-tokens", "2")
    assert code == 2 and message in err


def test_model_path_is_a_file(tiny_checkpoint, capsys):
    code, err = run_cli(capsys, "solve", "1+1?", "--model", str(tiny_checkpoint / "config.json"))
    assert code == 2 and "is a file; pass the checkpoint folder" in err


# --- eval: dataset rows (file:line, field) --------------------------------------------------------
GOOD = json.dumps(ROWS[0])


@pytest.mark.parametrize("content, message", [
    (f"{GOOD}\n{GOOD}\n{{bad\n".encode(), "data.jsonl:3: not valid JSON"),
    (f"{GOOD}\n[1, 2]\n".encode(), "data.jsonl:2: a row must be a JSON object"),
    (b"null\n", "data.jsonl:1: a row must be a JSON object, got null"),
    (b'{"foo": 1}\n', "data.jsonl:1: cannot tell the question and gold fields"),
    (b'{"question": ["a"], "answer": "1"}\n', "data.jsonl:1: field 'question' must be text, got list"),
    (b'{"question": "q", "answer": {"x": 1}}\n', "data.jsonl:1: field 'answer' must be text or a number"),
    (b'{"question": "  ", "answer": "1"}\n', "data.jsonl:1: field 'question' is empty"),
    (b'{"question": "caf\xe9", "answer": "1"}\n', "data.jsonl:1: not UTF-8"),
    (b'{"question": "q\x00", "answer": "1"}\n', "data.jsonl:1: not valid JSON"),
    (b"", "no problem with a gold answer"),
])
def test_eval_dataset_rows(toy, tmp_path, capsys, content, message):
    data = tmp_path / "data.jsonl"
    data.write_bytes(content)
    argv = [str(data) if a == toy["data"] else a for a in toy["argv"]]
    code, err = run_cli(capsys, *argv, "--output-dir", str(tmp_path / "run"))
    assert code == 2 and message in err
    assert not (tmp_path / "run").exists()  # nothing written for a refused dataset


def test_eval_dataset_with_byte_order_mark_loads(tmp_path):
    from eval.datasets import load_benchmark

    data = tmp_path / "bom.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS[0]).encode() + b"\n")
    [problem] = load_benchmark(str(data))
    assert problem.question == ROWS[0]["question"]


def test_other_split_never_reads_the_flat_test_file(tmp_path):
    from eval.datasets import local_file

    (tmp_path / "gsm8k.jsonl").write_text(GOOD + "\n")
    assert local_file("gsm8k", "test", tmp_path) == tmp_path / "gsm8k.jsonl"
    assert local_file("gsm8k", "train", tmp_path) is None
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text(GOOD + "\n")
    assert local_file("gsm8k", "train", tmp_path) == tmp_path / "gsm8k" / "train.jsonl"


# --- eval: flag values and output folders ---------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--grader-workers", "0"], "--grader-workers must be an integer >= 1, got 0"),
    (["--grader-timeout", "inf"], "--grader-timeout must be a finite number of seconds > 0"),
    (["--grader-timeout", "-1"], "--grader-timeout must be a finite number of seconds > 0"),
    (["--progress-interval", "-1"], "--progress-interval must be a finite number of seconds >= 0"),
    (["--limit", "0"], "--limit must be >= 1"),
    (["--shard", "3/2"], "shard must be i/N"),
    (["--datasets", "nosuch"], "unknown dataset 'nosuch'"),
    (["--data-dir", "/nonexistent-dir", "--datasets", "gsm8k"], "--data-dir /nonexistent-dir: no such folder"),
    (["--data-dir", "{root}", "--datasets", "gsm8k", "--split", "train"],
     "split 'train': {root}/gsm8k.jsonl holds the test split"),
])
def test_eval_flag_values(toy, tmp_path, capsys, flags, message):
    write_jsonl(tmp_path / "gsm8k.jsonl", [{"question": "q", "answer": "#### 1"}])
    flags, message = [flag.format(root=tmp_path) for flag in flags], message.format(root=tmp_path)
    code, err = run_cli(capsys, *toy["argv"], *flags, "--output-dir", str(tmp_path / "run"))
    assert code == 2 and message in err


@pytest.mark.parametrize("output, message", [
    ("file", "--output-dir {path}: is a file, not a folder"),
    ("file/sub", "cannot create it (Not a directory)"),
])
def test_eval_output_dir_unusable(toy, tmp_path, capsys, output, message):
    (tmp_path / "file").write_text("keep me")
    path = tmp_path / output
    code, err = run_cli(capsys, *toy["argv"], "--output-dir", str(path))
    assert code == 2 and message.format(path=path) in err
    assert (tmp_path / "file").read_text() == "keep me"


# --- rescore: inputs, --out, flag values, sample records of the wrong types -----------------------
@pytest.mark.parametrize("flags, message", [
    (["--timeout", "inf"], "--timeout must be a finite number of seconds > 0"),
    (["--workers", "0"], "--workers must be an integer >= 1"),
    (["--dataset", "nosuch"], "--dataset 'nosuch': unknown"),
    (["--out", "{root}"], "is a folder, not a file"),
    (["--out", "{root}/missing/v.jsonl"], "does not exist"),
])
def test_rescore_flag_values(runs, capsys, flags, message):
    samples = runs["run"] / "toy" / "samples.jsonl"
    flags = [f.format(root=runs["run"]) for f in flags]
    code, err = run_cli(capsys, "rescore", str(samples), *flags)
    assert code == 2 and message in err


def test_rescore_out_never_overwrites_an_input(runs, tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    shutil.copy(runs["run"] / "toy" / "samples.jsonl", samples)
    before = samples.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(samples)
    for out in (samples, link):
        code, err = run_cli(capsys, "rescore", str(samples), "--out", str(out))
        assert code == 2 and "is also an input file" in err
    assert samples.read_bytes() == before


def test_rescore_rows_without_gold_are_reported_and_excluded(tmp_path, capsys, caplog):
    rows = [{"idx": 0, "code": ["\\boxed{2}"], "gt": "2"}, {"idx": 1, "code": ["\\boxed{3}"]}]
    path = write_jsonl(tmp_path / "official.jsonl", rows)
    assert main(["rescore", path, "--json"]) == 0
    captured = capsys.readouterr()
    assert "1 problem(s) have no gold answer and are excluded (idx 1)" in caplog.text
    assert json.loads(captured.out)["problems"] == 1
    only = write_jsonl(tmp_path / "nogold.jsonl", rows[1:])
    code, err = run_cli(capsys, "rescore", only)
    assert code == 2 and "no row has a gold answer" in err


def test_rescore_folder_input(runs, capsys):
    code, err = run_cli(capsys, "rescore", str(runs["run"]))
    assert code == 2 and "is a folder; pass JSONL files" in err


@pytest.mark.parametrize("change, message", [
    ({"idx": "3"}, "field 'idx' must be an integer"),
    ({"answer": 5}, "field 'answer' must be a string or null"),
    ({"correct": "yes"}, "field 'correct' must be true/false or null"),
    ({"metadata": [1]}, "field 'metadata' must be an object"),
    ({"question": None}, "field 'question' must be a string"),
    ({"turns": "abc"}, "field 'turns' must be a list"),
    ({"turns": [[1]]}, "turn 0 must be a JSON object"),
    ({"turns": [{"text": 5}]}, "turn 0 field 'text' must be a string"),
    ({"version": 3}, "version 3 is not supported"),
    ({"reward": "high"}, "field 'reward' must be"),
    ({"reward_steps": [0.5, "x"]}, "reward_steps' must be a list of numbers"),
])
def test_rescore_sample_record_types(runs, tmp_path, capsys, change, message):
    first = json.loads((runs["run"] / "toy" / "samples.jsonl").read_text().splitlines()[0])
    path = write_jsonl(tmp_path / "records.jsonl", [first, {**first, **change}])
    code, err = run_cli(capsys, "rescore", path)
    assert code == 2 and "records.jsonl:2: sample record" in err and message in err


# --- report and compare: not a run, half-written or damaged runs ---------------------------------
def damage_metrics_json(run):
    (run / "toy" / "metrics.json").write_text("{bad")


def metrics_as_list(run):
    (run / "toy" / "metrics.json").write_text("[]")


def manifest_as_list(run):
    (run / "manifest.json").write_text("[]")


def drop_metrics(run):
    (run / "toy" / "metrics.json").unlink()


def drop_problem_idx(run):
    path = run / "toy" / "problems.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    del rows[1]["idx"]
    write_jsonl(path, rows)


@pytest.mark.parametrize("damage, message", [
    (damage_metrics_json, "toy/metrics.json: not valid JSON"),
    (metrics_as_list, "toy/metrics.json: expected a JSON object, got list"),
    (manifest_as_list, "manifest.json: expected a JSON object, got list"),
    (drop_metrics, "dataset toy has no metrics.json yet"),
    (drop_problem_idx, "toy/problems.jsonl:2: field 'idx' is missing"),
])
@pytest.mark.parametrize("command", ["report", "compare"])
def test_damaged_run(runs, tmp_path, capsys, damage, message, command):
    run = copy_run(runs, tmp_path)
    damage(run)
    argv = [str(run)] if command == "report" else [str(runs["run"]), str(run)]
    code, err = run_cli(capsys, command, *argv)
    assert code == 2 and message in err


@pytest.mark.parametrize("target, message", [
    ("missing", "no such run directory"),
    ("file", "is a file, not a run directory"),
    ("folder", "not a run directory (no manifest.json"),
])
def test_report_on_what_is_not_a_run(tmp_path, capsys, target, message):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    code, err = run_cli(capsys, "report", str(tmp_path / target))
    assert code == 2 and message in err


def test_report_html_folder_is_a_file(runs, tmp_path, capsys):
    run = copy_run(runs, tmp_path)
    (run / "report").write_text("x")
    code, err = run_cli(capsys, "report", str(run), "--html")
    assert code == 2 and "report folder" in err and "is a file, not a folder" in err


def test_compare_runs_over_different_datasets(runs, capsys):
    code, err = run_cli(capsys, "compare", str(runs["run"]), str(runs["other"]))
    assert code == 2 and "share no dataset" in err


# --- merge: output in the way, unfinished or damaged shards write nothing ------------------------
def unfinish(shard):
    (shard / "toy" / "metrics.json").unlink()


def corrupt_samples(shard):
    path = shard / "toy" / "samples.jsonl"
    path.write_text("{bad\n" + path.read_text())


@pytest.mark.parametrize("damage, code_expected, message", [
    (unfinish, 3, "is not finished (no metrics.json)"),
    (corrupt_samples, 2, "samples.jsonl:1: not a JSON object line"),
])
def test_merge_bad_shard_writes_nothing(runs, tmp_path, capsys, damage, code_expected, message):
    shard = copy_run(runs, tmp_path, "s1")
    damage(shard)
    out = tmp_path / "merged"
    code, err = run_cli(capsys, "merge", str(runs["s0"]), str(shard), "--output-dir", str(out))
    assert code == code_expected and message in err
    assert not out.exists()


def test_merge_output_is_a_file(runs, tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("keep me")
    code, err = run_cli(capsys, "merge", str(runs["s0"]), str(runs["s1"]), "--output-dir", str(out))
    assert code == 2 and "is a file, not a folder" in err and out.read_text() == "keep me"


def test_merge_unsharded_and_mismatched(runs, tmp_path, capsys):
    code, err = run_cli(capsys, "merge", str(runs["run"]), str(runs["s1"]), "--output-dir", str(tmp_path / "m"))
    assert code == 2 and "not a shard" in err


# --- serve: the address is checked before any model loads ----------------------------------------
def test_serve_port_in_use_before_loading(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = run_cli(capsys, "serve", "--model", "/nonexistent-model", "--port", str(port))
    assert code == 4 and "Address already in use" in err  # the missing model was never looked at


@pytest.mark.parametrize("host, message", [
    ("999.1.1.1", "--host '999.1.1.1': not a host name or address"),
    ("203.0.113.7", "--host 203.0.113.7: not an address of this machine"),
])
def test_serve_bad_host(capsys, host, message):
    code, err = run_cli(capsys, "serve", "--model", "/nonexistent-model", "--host", host, "--port", "0")
    assert code == 2 and message in err


@pytest.mark.parametrize("flags, message", [
    (["--port", "70000"], "--port must be in 0..65535"),
    (["--max-queue", "0"], "--max-queue must be >= 1"),
])
def test_serve_flag_values(capsys, flags, message):
    code, err = run_cli(capsys, "serve", "--model", "/nonexistent-model", *flags)
    assert code == 2 and message in err


# --- dev tiny-model: never writes over other files ------------------------------------------------
@pytest.mark.parametrize("target, flags, message", [
    ("file", [], "is a file, not a folder"),
    ("file/sub", [], "cannot create it"),
    ("foreign", [], "is not empty and holds no tiny checkpoint"),
    ("new", ["--seed", "-1"], "--seed must be an integer in [0, 2**63)"),
    ("new", ["--seed", str(2**64)], "--seed must be an integer in [0, 2**63)"),
])
def test_tiny_model_refuses(tmp_path, capsys, target, flags, message):
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text('{"mine": true}')
    code, err = run_cli(capsys, "dev", "tiny-model", str(tmp_path / target), *flags)
    assert code == 2 and message in err
    assert (tmp_path / "foreign" / "config.json").read_text() == '{"mine": true}'
    assert (tmp_path / "file").read_text() == "keep me"


def test_tiny_checkpoint_is_marked(tiny_checkpoint):
    from qwen_math.tiny import is_tiny_checkpoint

    assert is_tiny_checkpoint(tiny_checkpoint)


# --- output: a full disk is exit 3, a closed pipe exit 0 -----------------------------------------
def test_full_disk_on_stdout(runs, capsys, monkeypatch):
    with open("/dev/full", "w") as full:
        monkeypatch.setattr("sys.stdout", full)
        code = main(["-q", "report", str(runs["run"])])
    err = capsys.readouterr().err
    assert code == 3 and "No space left on device" in err and "Traceback" not in err
