"""``python -m qwen_math`` runs the CLI."""

import sys

from qwen_math.cli import main

sys.exit(main())
