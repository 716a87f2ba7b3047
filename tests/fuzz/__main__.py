"""``python -m fuzz`` (with ``tests/`` on the path): what ``scripts/fuzz`` runs."""

import sys

from .cli import main

sys.exit(main())
