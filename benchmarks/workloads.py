"""Imperative vs compiled on the reference workloads W1-W8 (see graphc/bench/workloads.py).

A thin wrapper over `graphc.bench.runner`, the same measurement as ``graphc bench``: per
workload and backend the compiled median/min/max per call, the imperative median, the first
compiled call, the largest |compiled - imperative| and the planned arena bytes, after the
machine's copy-bandwidth and GEMM ceilings measured in the same run.

    python benchmarks/workloads.py [--backend llvm] [--workloads W1,W7] [--quick]
                                   [--threads N] [--json PATH] [--plot PATH]
"""

from __future__ import annotations

import sys

from graphc.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    """Maps the old ``--backend`` spelling onto ``graphc bench --backends``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = ["--backends" if a == "--backend" else
            "--backends=" + a.split("=", 1)[1] if a.startswith("--backend=") else a
            for a in argv]
    return cli_main(["bench", *argv])


if __name__ == "__main__":
    sys.exit(main())
