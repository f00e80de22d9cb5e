"""``python -m minift …``: the same command line as ``minift …`` (minift/cli.py)."""
import sys

from .cli import main

sys.exit(main())
