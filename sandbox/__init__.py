"""sandbox: isolated, stateful execution of model-written Python.

Never imports ``qwen_math``, ``eval`` or torch.
"""
