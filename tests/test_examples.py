"""The examples run as a user runs them: a fresh interpreter, exit status 0, sane output."""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def test_demo_runs_and_both_runs_agree():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "demo.py")], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    diff = re.search(r"^max abs difference: (\S+)$", out, re.M)
    assert diff, out
    assert float(diff.group(1)) < 1e-5
    slides = re.search(r"^slides: .* = (\[.*\])$", out, re.M)
    assert slides, out
    assert ast.literal_eval(slides.group(1)) == [3.0] * 10
    assert "graph mlp(" in out, "the traced graph is printed"


def test_symbolic_example():
    proc = subprocess.run([sys.executable, str(EXAMPLES / "symbolic.py")], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "D(A=1, B=2) = Tensor([3., 3., 3., 3., 3., 3., 3., 3., 3., 3.]" in proc.stdout
    assert "graph compiled(" in proc.stdout and "matmul(%x, %w)" in proc.stdout
    sums = re.search(r"^rows sum to \[(.*)\]$", proc.stdout, re.M)
    assert sums and all(abs(float(v) - 1) < 1e-5 for v in sums.group(1).split())
