"""Reward scoring through vLLM: in process (``vllm.LLM(task="reward").encode``) or over HTTP
(a ``vllm serve`` reward model's ``/pooling`` endpoint, ``--reward-base-url``).

vLLM's reward pooler returns one row per token (ALL pooling): an ORM's score is the last
row's single value; a PRM's rows at its ``<extra_0>`` separators hold the 2-class
probabilities, P(correct) is column 1. The text sent is the same chat text the in-process
scorer reads (``qwen_math.scoring.inputs``).

What it deliberately does not do: start servers, retry forever, or batch across calls
(vLLM schedules the batch itself).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from qwen_math.errors import EnvironmentUnavailable, UsageError

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 600.0


def reward_of_rows(rows: Any, kind: str, aggregation: str) -> Any:
    """A ``Reward`` from vLLM's per-token pooled rows (ORM: last row; PRM: every row holds
    [P(wrong), P(correct)] at a separator)."""
    from eval.metrics import aggregate_steps
    from qwen_math.scoring.hf import Reward

    rows = [row if isinstance(row, list) else [row] for row in (rows.tolist() if hasattr(rows, "tolist") else rows)]
    if not rows:
        raise EnvironmentUnavailable("the reward server returned no pooled rows")
    if kind == "orm":
        return Reward(float(rows[-1][0]))
    steps = tuple(float(row[1]) for row in rows if len(row) == 2)
    return Reward(aggregate_steps(steps, aggregation), steps)


class PoolingScorer:
    """Shared by both vLLM paths: build the chat texts, send them, read the rows."""

    def __init__(self, kind: str, tokenizer: Any, aggregation: str) -> None:
        self.kind, self.tokenizer, self.aggregation = kind, tokenizer, aggregation

    def texts(self, items: Sequence[Any]) -> list[str]:
        from qwen_math.scoring.inputs import reward_text

        return [reward_text(self.tokenizer, item.question, item.response, kind=self.kind) for item in items]

    def score(self, items: Sequence[Any]) -> list[Any]:
        return [reward_of_rows(rows, self.kind, self.aggregation) for rows in self.pooled(self.texts(items))]

    def pooled(self, texts: list[str]) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        return None


class VLLMRewardScorer(PoolingScorer):
    """``vllm.LLM(model, task="reward", tensor_parallel_size=tp).encode(texts)``."""

    def __init__(self, model: str, kind: str, aggregation: str, *, tensor_parallel: int = 1) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise EnvironmentUnavailable("--reward-backend vllm needs the vllm package "
                                         "(pip install 'qwen-math[vllm]')") from None
        self.llm = LLM(model=model, task="reward", tensor_parallel_size=tensor_parallel)
        super().__init__(kind, self.llm.get_tokenizer(), aggregation)

    def pooled(self, texts: list[str]) -> list[Any]:
        return [output.outputs.data for output in self.llm.encode(texts)]


class HTTPPoolingScorer(PoolingScorer):
    """POST ``{"model", "input": [texts]}`` to ``BASE_URL/pooling`` (vLLM's pooling endpoint)."""

    def __init__(self, base_url: str, model: str, kind: str, aggregation: str, tokenizer: Any) -> None:
        super().__init__(kind, tokenizer, aggregation)
        self.url = base_url.rstrip("/").removesuffix("/v1") + "/pooling"
        self.model = model

    def pooled(self, texts: list[str]) -> list[Any]:
        body = json.dumps({"model": self.model, "input": texts}).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise UsageError(f"--reward-base-url {self.url}: HTTP {exc.code} ({exc.reason})") from None
        except (urllib.error.URLError, OSError) as exc:
            raise EnvironmentUnavailable(f"--reward-base-url {self.url}: unreachable ({exc})") from None
        except json.JSONDecodeError:
            raise EnvironmentUnavailable(f"--reward-base-url {self.url}: the answer is not JSON") from None
        items = sorted(data.get("data", []), key=lambda d: d.get("index", 0))
        if len(items) != len(texts):
            raise EnvironmentUnavailable(f"--reward-base-url {self.url}: {len(items)} results for {len(texts)} inputs")
        return [item["data"] for item in items]
