"""Test-wide settings: every pass pipeline validates the graph after each pass."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("GRAPHC_VALIDATE", "1")
# the llvm backend's disk cache of compiled code: one throwaway folder per test session
# (subprocess tests inherit it), never the user's ~/.cache
_CACHE = tempfile.mkdtemp(prefix="graphc-llvm-cache-")
atexit.register(shutil.rmtree, _CACHE, True)
os.environ.setdefault("GRAPHC_CACHE_DIR", _CACHE)
