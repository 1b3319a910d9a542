"""The fast decode engine behind the ``hf`` backend.

- ``qwen2``: a compact Qwen2 forward over a transformers model's own weights (logits equal
  transformers' forward), reading and writing a slot KV cache;
- ``kv_cache``: the preallocated cache, sized from free memory;
- ``sampling``: batched on-device temperature / top-k / exact top-p sampling with
  counter-based per-sample randomness;
- ``stops``: EOS, stop strings, max_tokens and context-window checks;
- ``engine``: continuous batching with prefix reuse (n samples, TIR resume) and chunked prefill.

What it deliberately does not do: tokenisation, prompts or strategies. Importing this package
imports torch: ``qwen_math`` itself imports it only when a backend is created.
"""
