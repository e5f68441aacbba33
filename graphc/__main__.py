"""``python -m graphc``: the `graphc` command line (see `graphc.cli`)."""

import sys

from .cli import main

sys.exit(main())
