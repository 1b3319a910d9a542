"""Generation backends, chosen by name from ``BACKENDS`` (``"module:Class"``, imported on use).

See ``qwen_math.backends.base`` for the protocol every backend implements.
"""

from qwen_math.backends.base import (
    BACKENDS,
    Backend,
    BackendOptions,
    Completion,
    GenerationRequest,
    get_backend_class,
)

__all__ = ["BACKENDS", "Backend", "BackendOptions", "Completion", "GenerationRequest", "get_backend_class"]
