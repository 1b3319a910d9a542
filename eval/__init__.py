"""eval: answer extraction, equivalence grading, benchmark loading and voting metrics.

Never imports ``qwen_math`` or torch. Inside the project write ``from eval import grade``
(``eval`` is also a Python builtin; never shadow it with a bare ``import eval``).
"""
