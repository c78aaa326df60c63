"""Entry point: ``python -m tools.fuzz``."""

import sys

from .cli import main

sys.exit(main())
