"""Test-wide settings: every pass pipeline validates the graph after each pass."""

import os

os.environ.setdefault("GRAPHC_VALIDATE", "1")
