"""Resumable benchmark runs: the run directory, its manifest and fingerprint, the writer,
resume, progress, and the views (``problems.jsonl``, ``metrics.json``) built from samples.

``evaluate(EvalConfig(...))`` in ``qwen_math.runs.run`` is the entry point; ``report`` and
``compare`` read finished run directories. Importing this package is cheap: the modules that
need the decoder, the sandbox or the grader import them inside functions.
"""
