"""sandbox: isolated, fast, stateful execution of model-written Python.

A trusted driver process (a child of the caller, never a daemon) pre-imports SymPy, NumPy and
mpmath and forks one hardened session process per trajectory; cells run under a relaxed
RestrictedPython policy, with a wall-clock deadline, an output cap and OS isolation layers
(see `sandbox.isolation` and `doctor()`). Importing this package is cheap: the heavy parts load
on first use. Never imports ``qwen_math``, ``eval`` or torch.
"""

from sandbox.errors import SandboxUnavailable
from sandbox.result import STATUSES, ExecResult, escape_fences


def __getattr__(name: str):
    # Light re-exports: the client modules load on first access, not at `import sandbox`.
    if name in _LAZY:
        module = __import__(_LAZY[name], fromlist=[name])
        return getattr(module, name)
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")


_LAZY = {
    "Session": "sandbox.session", "run_code": "sandbox.session", "run_pot": "sandbox.session",
    "SandboxPool": "sandbox.pool", "default_pool": "sandbox.pool",
    "doctor": "sandbox.diagnose", "DoctorReport": "sandbox.diagnose",
}

__all__ = ["STATUSES", "DoctorReport", "ExecResult", "SandboxPool", "SandboxUnavailable", "Session",
           "default_pool", "doctor", "escape_fences", "run_code", "run_pot"]
