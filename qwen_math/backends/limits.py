"""Context-window arithmetic shared by the backends that hand prompts to another engine.

A backend that forwards a request (vLLM in process, an OpenAI-compatible server) must not ask
for more new tokens than still fit after the prompt: vLLM's server rejects such a request with
a 400, and a silent truncation would hide it. ``new_token_budget`` says how many fit;
``context_full`` is the completion of a request whose prompt alone fills the window (as the
protocol says: ``finish_reason == "length"`` when the context window is full).

What it deliberately does not do: count tokens (each backend has its tokenizer) or truncate
prompts.
"""

from __future__ import annotations

from qwen_math.backends.base import Completion
from qwen_math.config import SamplingConfig


def new_token_budget(sampling: SamplingConfig, *, prompt_tokens: int, context_window: int) -> int:
    """``max_tokens`` lowered to what fits after the prompt; 0 when nothing fits."""
    return max(0, min(sampling.max_tokens, context_window - prompt_tokens))


def context_full(request_id: str, prompt_tokens: int) -> Completion:
    """The completion of a request whose prompt already fills the context window."""
    return Completion(request_id, "", (), "length", prompt_tokens, 0)
