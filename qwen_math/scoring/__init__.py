"""Reward models (ORM / PRM) that score finished samples: prefill only, never decoding.

- ``checkpoint``: what a reward checkpoint is (kind, head, size), read without loading it;
- ``inputs``: the exact chat text an ORM / PRM reads for one sample;
- ``hf``: the in-process scorer (transformers ``Qwen2Model`` + score head, prompt KV shared
  across the n samples of a problem);
- ``remote``: vLLM's reward pooling API, in process (``vllm``) or over HTTP (``/pooling``);
- ``store``: the run's append-only ``rewards.jsonl`` (resumable scoring).

What it deliberately does not do: import torch at package import, or touch the generation
engine (``qwen_math.engine``).
"""
