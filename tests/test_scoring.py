"""Reward scoring: tiny ORM/PRM checkpoints, the shared-prefix scorer against a plain
transformers forward, ``qwen-math score`` (resumable, exactly once after SIGKILL), bad input."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwen_math.cli import main

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = ["What is 1 + 1?", "Let $f(x) = x^2 + 3x - 7$. Find all real $x$ such that $f(f(x)) = 0$, "
             "and give the sum of the solutions as a common fraction."]
RESPONSES = ["We add one and one.\n\nSo the answer is $\\boxed{2}$.",
             "Step one.\n\nStep two: $3x$.\n\n\n\nTherefore $\\boxed{-3}$.",
             "The answer is 7",
             "We add.\n\nSo the answer is $\\boxed{2}$."]  # shares its first token(s) with sample 0


@pytest.fixture(scope="module")
def reward_checkpoints(tmp_path_factory):
    from qwen_math.tiny import write_tiny_model

    root = tmp_path_factory.mktemp("reward-models")
    return {kind: write_tiny_model(root / kind, kind=kind, seed=1) for kind in ("rm", "prm")}


@functools.cache
def reference_model(path):
    from safetensors.torch import load_file

    return (transformers.AutoTokenizer.from_pretrained(str(path)),
            transformers.Qwen2Model.from_pretrained(str(path), dtype=torch.float32).eval(),
            load_file(str(path / "model.safetensors")))


def plain_transformers_rewards(path, kind, question, response):
    """Independent reference: Qwen2Model + the head's safetensors tensors, one plain forward."""
    tokenizer, model, weights = reference_model(path)
    steps = [s for s in response.split("\n\n") if s.strip()]
    content = response if kind == "rm" else "".join(s + "<extra_0>" for s in steps)
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Please reason step by step, and put your final answer within \\boxed{}."},
         {"role": "user", "content": question}, {"role": "assistant", "content": content}],
        tokenize=False, add_generation_prompt=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
        h = torch.relu(hidden @ weights["score.0.weight"].T + weights["score.0.bias"])
        logits = h @ weights["score.2.weight"].T + weights["score.2.bias"]
    if kind == "rm":
        return [float(logits[-1, 0])]
    separator = tokenizer.convert_tokens_to_ids("<extra_0>")
    return [float(p) for p in torch.softmax(logits, -1)[[i for i, t in enumerate(ids) if t == separator], 1]]


# --- the tiny checkpoints ----------------------------------------------------------------------
@pytest.mark.parametrize("kind, labels", [("rm", 1), ("prm", 2)])
def test_tiny_reward_checkpoint_layout(reward_checkpoints, kind, labels):
    from safetensors import safe_open

    path = reward_checkpoints[kind]
    with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
        names = set(handle.keys())
        assert handle.get_tensor("score.2.weight").shape[0] == labels
    assert {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"} <= names
    assert "model.embed_tokens.weight" in names and "lm_head.weight" not in names
    model = transformers.Qwen2Model.from_pretrained(str(path))
    assert model.config.hidden_size == 64
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    assert len(tokenizer("<extra_0>", add_special_tokens=False)["input_ids"]) == (1 if kind == "prm" else 5)


# --- shared-prefix batched prefill == plain forward -----------------------------------------------
@pytest.mark.parametrize("kind", ["rm", "prm"])
def test_scorer_matches_plain_forward(reward_checkpoints, kind):
    from qwen_math.scoring.hf import HFRewardScorer, ScoreItem

    scorer = HFRewardScorer.create(kind, reward_checkpoints[kind], dtype="float32")
    # two prompts of different lengths in one batch, each with 4 samples sharing it
    items = [ScoreItem(q, q, r) for q in QUESTIONS for r in RESPONSES]
    batches = scorer.batches([[0, 1, 2, 3], [4, 5, 6, 7]], [scorer.encode(i) for i in items])
    assert len(batches) == 1  # both problems go through one prefill pair
    rewards = scorer.score(items)
    for item, reward in zip(items, rewards, strict=True):
        expected = plain_transformers_rewards(reward_checkpoints[kind], kind, item.question, item.response)
        got = [reward.value] if kind == "rm" else list(reward.steps)
        assert got == pytest.approx(expected, abs=1e-4)
        if kind == "prm":
            assert reward.value == pytest.approx(min(expected), abs=1e-4)


# --- qwen-math score on a run ----------------------------------------------------------------------
def scripted_run(tmp_path, problems=3, n=4):
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(problems)))
    script = tmp_path / "script.jsonl"
    script.write_text("".join(json.dumps([r]) + "\n" for r in RESPONSES))
    run = tmp_path / "run"
    assert main(["-q", "eval", "--datasets", str(data), "--backend", "scripted", "--script", str(script),
                 "-n", str(n), "--max-tokens", "16", "--no-progress", "--output-dir", str(run)]) == 0
    return run


def rewards_of(run):
    return [json.loads(line) for line in (run / "toy" / "rewards.jsonl").read_text().splitlines()]


def test_score_run_then_report(reward_checkpoints, tmp_path, capsys):
    run = scripted_run(tmp_path)
    assert main(["-q", "score", str(run), "--reward-model", str(reward_checkpoints["rm"]), "--no-progress"]) == 0
    rows = rewards_of(run)
    assert sorted((r["idx"], r["sample"]) for r in rows) == [(i, s) for i in range(3) for s in range(4)]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["reward_model"]["kind"] == "orm" and manifest["reward_model"]["aggregation"] == "min"
    assert manifest["reward_model"]["revision"]
    metrics = json.loads((run / "toy" / "metrics.json").read_text())
    assert list(metrics["rm@k"]) == list(metrics["wmaj@k"]) == ["1", "2", "4"]
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    table = capsys.readouterr().out
    assert "rm@k" in table and "wmaj@k" in table
    # scoring again adds nothing; another reward model is refused (exit 5)
    assert main(["-q", "score", str(run), "--reward-model", str(reward_checkpoints["rm"]), "--no-progress"]) == 0
    assert len(rewards_of(run)) == 12
    assert main(["-q", "score", str(run), "--reward-model", str(reward_checkpoints["prm"]), "--no-progress"]) == 5


@pytest.mark.slow  # a 160-sample scripted run, scored twice in subprocesses
def test_score_sigkill_then_rerun_scores_each_sample_once(reward_checkpoints, tmp_path):
    run = scripted_run(tmp_path, problems=40, n=4)
    reference = tmp_path / "reference"
    import shutil

    shutil.copytree(run, reference)
    assert main(["-q", "score", str(reference), "--reward-model", str(reward_checkpoints["rm"]), "--no-progress"]) == 0
    expected = {(r["idx"], r["sample"]): r["reward"] for r in rewards_of(reference)}
    argv = [sys.executable, "-m", "qwen_math", "-q", "score", str(run), "--reward-model",
            str(reward_checkpoints["rm"]), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = run / "toy" / "rewards.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.stat().st_size > 0:
            break
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = path.read_bytes().count(b"\n") if path.exists() else 0
    assert partial < 160, "the scorer finished before the kill; nothing was tested"
    assert subprocess.run(argv, env=env, timeout=300).returncode == 0
    rows = rewards_of(run)
    keys = [(r["idx"], r["sample"]) for r in rows]
    assert len(keys) == len(set(keys)) == 160
    for row in rows:
        assert row["reward"] == pytest.approx(expected[(row["idx"], row["sample"])], abs=1e-5)


# --- bad input: one line, documented exit code -------------------------------------------------------
def test_policy_checkpoint_as_reward_model(tiny_checkpoint, tmp_path, capsys):
    run = scripted_run(tmp_path)
    code = main(["-q", "score", str(run), "--reward-model", str(tiny_checkpoint)])
    err = capsys.readouterr().err
    assert code == 2 and "not a reward model (no score head" in err and len(err.strip().splitlines()) == 1


def test_kind_prm_on_an_orm(reward_checkpoints, tmp_path, capsys):
    run = scripted_run(tmp_path)
    code = main(["-q", "score", str(run), "--reward-model", str(reward_checkpoints["rm"]), "--kind", "prm"])
    err = capsys.readouterr().err
    assert code == 2 and "--kind prm but the checkpoint is a orm" in err and len(err.strip().splitlines()) == 1


def test_run_without_samples(reward_checkpoints, tmp_path, capsys):
    run = scripted_run(tmp_path)
    (run / "toy" / "samples.jsonl").write_text("")
    code = main(["-q", "score", str(run), "--reward-model", str(reward_checkpoints["rm"])])
    err = capsys.readouterr().err
    assert code == 2 and "has no samples to score" in err and len(err.strip().splitlines()) == 1


def test_weights_that_do_not_fit_are_refused_before_loading(reward_checkpoints, monkeypatch):
    from qwen_math.errors import EnvironmentUnavailable
    from qwen_math.scoring import checkpoint
    from qwen_math.scoring.hf import HFRewardScorer

    monkeypatch.setattr(checkpoint, "available_bytes", lambda device: 1024)
    with pytest.raises(EnvironmentUnavailable, match="GiB are free"):
        HFRewardScorer.create("rm", reward_checkpoints["rm"], dtype="float32")


def test_eval_with_reward_model_scores_as_it_goes(reward_checkpoints, tmp_path, capsys):
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(2)))
    script = tmp_path / "script.jsonl"
    script.write_text("".join(json.dumps([r]) + "\n" for r in RESPONSES))
    run = tmp_path / "run"
    assert main(["-q", "eval", "--datasets", str(data), "--backend", "scripted", "--script", str(script),
                 "-n", "4", "--max-tokens", "16", "--no-progress", "--output-dir", str(run),
                 "--reward-model", str(reward_checkpoints["prm"]), "--aggregation", "last"]) == 0
    rows = rewards_of(run)
    assert len(rows) == 8 and all(r["reward"] == pytest.approx(r["reward_steps"][-1]) for r in rows)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["reward_model"]["kind"] == "prm" and manifest["reward_model"]["aggregation"] == "last"
    problems = [json.loads(line) for line in (run / "toy" / "problems.jsonl").read_text().splitlines()]
    assert all(len(p["pred_score"]) == 4 for p in problems)
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "rm@k" in out and "wmaj@k" in out


@pytest.mark.parametrize("version", [1, 2])
def test_record_reader_accepts_versions_1_and_2(version):
    from qwen_math.record import SampleRecord

    data = {"dataset": "d", "idx": 0, "sample": 0, "question_id": "d/0", "question": "q",
            "turns": [{"text": "t"}], "answer": "1", "gold": "1", "correct": True, "finish_reason": "stop",
            "version": version}
    if version == 2:
        data.update(reward=0.5, reward_steps=[0.9, 0.5])
    record = SampleRecord.from_json(data)
    assert record.reward == (0.5 if version == 2 else None)
    assert SampleRecord.from_json(record.to_json()) == record


# --- vLLM's /pooling endpoint (a fake server speaking its JSON) ------------------------------------
def test_http_pooling_scorer_reads_last_row(qwen_tokenizer):
    import http.server
    import threading

    from qwen_math.scoring.hf import ScoreItem
    from qwen_math.scoring.remote import HTTPPoolingScorer

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            data = [{"index": i, "object": "pooling", "data": [[0.1], [float(i) + 0.5]]}
                    for i in range(len(body["input"]))]
            payload = json.dumps({"data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        scorer = HTTPPoolingScorer(f"http://127.0.0.1:{server.server_port}/v1", "rm", "orm", "min", qwen_tokenizer)
        rewards = scorer.score([ScoreItem(0, "q", "a"), ScoreItem(0, "q", "b")])
    finally:
        server.shutdown()
    assert [r.value for r in rewards] == [0.5, 1.5]
    path, body = seen[0]
    assert path == "/pooling" and body["model"] == "rm"
    assert body["input"][0].startswith("<|im_start|>system\nPlease reason step by step")
    assert body["input"][0].endswith("<|im_start|>assistant\na<|im_end|>\n")
