"""In-process reward scoring on transformers: batched prefill only, the prompt's KV shared.

``HFRewardScorer.create(model, kind=..., device=..., dtype=...)`` loads the decoder as
``transformers.Qwen2Model`` and the score head (``score.0`` Linear(h, h) -> ReLU -> ``score.2``
Linear(h, 1 or 2)) from the checkpoint's safetensors, once. ``score(items)`` returns one
``Reward`` per item. Items are grouped by problem: the n samples of a problem share the token
prefix of their chat text (system prompt + question + assistant header), which is run ONCE per
problem; the cache of that prefill is index-selected to the n rows and only the responses are
run on top of it, right-padded, with matching attention masks and position ids. Several
problems go into one batch: their prefixes are left-padded (masked, positions counted from each
prompt's first real token). ``plain_reward`` is the reference: one plain forward of the whole
text, no cache, no padding (tests and the benchmark compare against it).

What it deliberately does not do: decode, use the generation engine's private KV cache
(``qwen_math.engine``), or run a model that does not fit (``check_fits`` refuses first).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.metrics import aggregate_steps
from qwen_math.errors import UsageError
from qwen_math.scoring.checkpoint import (
    STEP_SEPARATOR,
    RewardModelInfo,
    check_fits,
    inspect_reward_model,
    weight_files,
)
from qwen_math.scoring.inputs import common_prefix_length, reward_text

log = logging.getLogger(__name__)

#: padded tokens per suffix batch (samples x longest response) before a batch is cut.
DEFAULT_TOKEN_BUDGET = 16384
#: padded tokens a suffix batch may spend beyond its real ones (rows are grouped by length).
PADDING_WASTE = 0.05
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class ScoreItem:
    """One sample to score: ``group`` names its problem (samples of a group share a prompt)."""

    group: Hashable
    question: str
    response: str


@dataclass(frozen=True)
class Reward:
    """An ORM's score, or a PRM's per-step P(correct) (``value`` is then their aggregate)."""

    value: float
    steps: tuple[float, ...] | None = None


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "float32" if device == "cpu" else "bfloat16"
    if dtype not in DTYPE_BYTES:
        raise UsageError(f"--dtype {dtype}: choose auto, {', '.join(DTYPE_BYTES)}")
    return dtype


def stored_dtype_bytes(path: Path) -> int:
    import json

    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    return DTYPE_BYTES.get(str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"), 2)


def load_head(info: RewardModelInfo, dtype: Any, device: str) -> Any:
    """``score.0`` -> ReLU -> ``score.2`` as a ``torch.nn.Sequential`` with the checkpoint's weights."""
    import torch
    from safetensors import safe_open

    tensors = {}
    for file in weight_files(info.path):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a Mapping
                if name.startswith("score."):
                    tensors[name.removeprefix("score.")] = handle.get_tensor(name)
    labels = tensors["2.weight"].shape[0]
    head = torch.nn.Sequential(torch.nn.Linear(info.hidden_size, info.hidden_size), torch.nn.ReLU(),
                               torch.nn.Linear(info.hidden_size, labels))
    head.load_state_dict(tensors)
    return head.to(device=device, dtype=dtype).eval()


class HFRewardScorer:
    """A reward model in this process (see the module docstring)."""

    def __init__(self, info: RewardModelInfo, model: Any, head: Any, tokenizer: Any, *, device: str,
                 token_budget: int = DEFAULT_TOKEN_BUDGET, aggregation: str = "min") -> None:
        self.info, self.model, self.head, self.tokenizer = info, model, head, tokenizer
        self.device, self.token_budget, self.aggregation = device, token_budget, aggregation
        self.separator_id = separator_id(tokenizer) if info.kind == "prm" else None

    @property
    def kind(self) -> str:
        return self.info.kind

    @classmethod
    def create(cls, model_id: str, path: Path, *, kind: str | None = None, device: str = "cpu",
               dtype: str = "auto", token_budget: int = DEFAULT_TOKEN_BUDGET,
               aggregation: str = "min") -> HFRewardScorer:
        info = inspect_reward_model(model_id, path, kind=kind)
        dtype = resolve_dtype(dtype, device)
        check_fits(info, device=device, dtype_bytes=DTYPE_BYTES[dtype], stored_bytes=stored_dtype_bytes(path))
        import torch
        from transformers import AutoTokenizer, Qwen2Model

        log.info("loading reward model %s (%s, %s) on %s", model_id, info.kind, dtype, device)
        torch_dtype = getattr(torch, dtype)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = load_decoder(Qwen2Model, path, torch_dtype).to(device).eval()
        head = load_head(info, torch_dtype, device)
        return cls(info, model, head, tokenizer, device=device, token_budget=token_budget,
                   aggregation=aggregation)

    def close(self) -> None:
        self.model = self.head = None

    # --- tokens --------------------------------------------------------------------------
    def encode(self, item: ScoreItem) -> list[int]:
        text = reward_text(self.tokenizer, item.question, item.response, kind=self.kind)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def read_positions(self, ids: Sequence[int]) -> list[int]:
        """Where the head is read: the last token (ORM), every separator (PRM)."""
        if self.separator_id is None:
            return [len(ids) - 1]
        return [i for i, token in enumerate(ids) if token == self.separator_id]

    # --- scoring -------------------------------------------------------------------------
    def score(self, items: Sequence[ScoreItem]) -> list[Reward]:
        """One ``Reward`` per item, in order."""
        encoded = [self.encode(item) for item in items]
        order: dict[Hashable, list[int]] = {}
        for index, item in enumerate(items):
            order.setdefault(item.group, []).append(index)
        rewards: list[Reward | None] = [None] * len(items)
        for batch in self.batches(list(order.values()), encoded):
            values = self.score_groups([[encoded[i] for i in group] for group in batch])
            for group, group_values in zip(batch, values, strict=True):
                for index, value in zip(group, group_values, strict=True):
                    rewards[index] = value
        return [r for r in rewards if r is not None]

    def batches(self, groups: list[list[int]], encoded: Sequence[Sequence[int]]) -> list[list[list[int]]]:
        """Consecutive groups while samples x longest sequence stays within the token budget."""
        batches: list[list[list[int]]] = []
        current: list[list[int]] = []
        rows = longest = 0
        for group in groups:
            group_longest = max(len(encoded[i]) for i in group)
            if current and (rows + len(group)) * max(longest, group_longest) > self.token_budget:
                batches.append(current)
                current, rows, longest = [], 0, 0
            current.append(group)
            rows += len(group)
            longest = max(longest, group_longest)
        if current:
            batches.append(current)
        return batches

    def score_groups(self, groups: Sequence[Sequence[Sequence[int]]]) -> list[list[Reward]]:
        """Rewards of several problems' samples: one prefix prefill, one suffix prefill."""
        import torch

        prefixes = [common_prefix_length(group) for group in groups]
        with torch.inference_mode():
            prefix_hidden, cache, prefix_mask = self.prefill_prefixes(
                [group[0][:p] for group, p in zip(groups, prefixes, strict=True)])
            rows = [g for g, group in enumerate(groups) for _ in group]
            suffixes = [seq[p:] for group, p in zip(groups, prefixes, strict=True) for seq in group]
            suffix_hidden: dict[int, Any] = {}
            for chunk in length_chunks([len(s) for s in suffixes]):
                chunk_rows = [rows[i] for i in chunk]
                chunk_cache = copy.deepcopy(cache)  # the prompts' KV only: small next to the responses'
                chunk_cache.reorder_cache(torch.tensor(chunk_rows, device=self.device))
                hidden = self.prefill_suffixes([suffixes[i] for i in chunk], [prefixes[g] for g in chunk_rows],
                                               chunk_cache, prefix_mask[chunk_rows])
                suffix_hidden.update(zip(chunk, hidden, strict=True))
            width = prefix_hidden.shape[1]
            result: list[list[Reward]] = []
            row = 0
            for g, group in enumerate(groups):
                rewards = []
                for seq in group:
                    positions = self.read_positions(seq)
                    hidden = torch.stack([
                        prefix_hidden[g, width - prefixes[g] + pos] if pos < prefixes[g]
                        else suffix_hidden[row][pos - prefixes[g]] for pos in positions])
                    rewards.append(self.head_reward(hidden))
                    row += 1
                result.append(rewards)
            return result

    def prefill_prefixes(self, prefixes: Sequence[Sequence[int]]) -> tuple[Any, Any, Any]:
        """Left-padded prefill of the prompts; their hidden states, cache and mask."""
        import torch

        width = max(len(p) for p in prefixes)
        ids = torch.zeros((len(prefixes), width), dtype=torch.long)
        mask = torch.zeros((len(prefixes), width), dtype=torch.long)
        for row, prefix in enumerate(prefixes):
            if prefix:
                ids[row, width - len(prefix):] = torch.tensor(prefix)
                mask[row, width - len(prefix):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        return out.last_hidden_state, out.past_key_values, mask

    def prefill_suffixes(self, suffixes: Sequence[Sequence[int]], starts: Sequence[int], cache: Any,
                         prefix_mask: Any) -> Any:
        """Right-padded prefill of the responses on top of their prompt's cache rows."""
        import torch

        width = max(len(s) for s in suffixes)
        ids = torch.zeros((len(suffixes), width), dtype=torch.long)
        mask = torch.zeros((len(suffixes), width), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            ids[row, :len(suffix)] = torch.tensor(suffix)
            mask[row, :len(suffix)] = 1
        positions = torch.tensor(starts).unsqueeze(1) + torch.arange(width).unsqueeze(0)
        full_mask = torch.cat([prefix_mask, mask.to(self.device)], dim=1)
        out = self.model(input_ids=ids.to(self.device), attention_mask=full_mask,
                         position_ids=positions.to(self.device), past_key_values=cache, use_cache=True)
        return out.last_hidden_state

    def head_reward(self, hidden: Any) -> Reward:
        """The head on the hidden states at the read positions."""
        import torch

        logits = self.head(hidden).float()
        if self.kind == "orm":
            return Reward(float(logits[-1, 0]))
        steps = tuple(float(p) for p in torch.softmax(logits, dim=-1)[:, 1])
        return Reward(aggregate_steps(steps, self.aggregation), steps)

    def plain_reward(self, item: ScoreItem) -> Reward:
        """Reference: one plain forward of the whole text (no cache, no padding)."""
        import torch

        ids = self.encode(item)
        with torch.inference_mode():
            hidden = self.model(input_ids=torch.tensor([ids], device=self.device)).last_hidden_state[0]
            return self.head_reward(hidden[self.read_positions(ids)])


def length_chunks(lengths: Sequence[int], *, waste: float = PADDING_WASTE) -> list[list[int]]:
    """Row indices grouped into suffix batches of similar length: sorted by length, a batch
    grows while its padded size stays within ``1 + waste`` of its real tokens."""
    chunks: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and (len(current) + 1) * lengths[index] > (1 + waste) * (real + lengths[index]):
            chunks.append(current)
            current, real = [], 0
        current.append(index)
        real += lengths[index]
    if current:
        chunks.append(current)
    return chunks


def load_decoder(model_class: Any, path: Path, torch_dtype: Any) -> Any:
    """The decoder of a reward checkpoint; transformers' note that ``score.*`` is not part
    of ``Qwen2Model`` is expected and silenced (the head is loaded by ``load_head``)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return model_class.from_pretrained(str(path), dtype=torch_dtype)
    finally:
        hf_logging.set_verbosity(previous)


def separator_id(tokenizer: Any) -> int:
    """The id of ``<extra_0>``; a tokenizer that splits it is not a PRM's."""
    ids = tokenizer(STEP_SEPARATOR, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise UsageError(f"the reward model's tokenizer splits {STEP_SEPARATOR} into {len(ids)} tokens; "
                         "a PRM's tokenizer has it as one added token")
    return int(ids[0])
