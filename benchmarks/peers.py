"""Kept for old command lines: the peers script now lives in graphc/bench/peers.py."""
import os, runpy, sys  # noqa: E401, I001
sys.argv[0] = os.path.join(os.path.dirname(__file__), "..", "graphc", "bench", "peers.py")
runpy.run_path(sys.argv[0], run_name="__main__")
