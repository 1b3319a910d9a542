"""qwen-math: a math reasoning engine for the Qwen2.5-Math models.

The package is the library; the ``qwen-math`` CLI (``qwen_math.cli``) is a thin layer over it.
Importing it is cheap: torch and transformers are imported only when a model is loaded.
This module re-exports the stable, light names; heavy ones live in their modules.
"""

from qwen_math.config import SamplingConfig
from qwen_math.errors import ExitCode, QwenMathError
from qwen_math.record import SCHEMA_VERSION, SampleRecord, Turn

__all__ = ["SCHEMA_VERSION", "ExitCode", "QwenMathError", "SampleRecord", "SamplingConfig", "Turn"]
__version__ = "0.1.0"
