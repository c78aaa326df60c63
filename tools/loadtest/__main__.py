"""Entry point: ``python -m tools.loadtest``."""

import sys

from .cli import main

sys.exit(main())
