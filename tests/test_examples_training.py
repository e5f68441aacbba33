"""The training examples run as a user runs them (a fresh interpreter, exit status 0) and
learn: the digits models reach their accuracy in both modes, with the same final numbers;
the character LSTM's perplexity falls and it prints sampled text."""

from __future__ import annotations

import importlib.util
import io
import math
import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
MODES = ("imperative", "hybridized")
NUM = r"([0-9]+(?:\.[0-9]*)?(?:e[+-]?[0-9]+)?|nan|inf)"


def run_example(name: str, *args: str, backend: str | None = None) -> str:
    env = None if backend is None else {**os.environ, "GRAPHC_BACKEND": backend}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout + proc.stderr, "no progress bar without a terminal"
    return proc.stdout


def epoch_lines(out: str, mode: str) -> list[re.Match]:
    return list(re.finditer(rf"^{mode}\s+epoch\s+(\d+)/(\d+)\s+(.*?)\s+{NUM} ms$", out, re.M))


def summary_row(out: str, mode: str) -> list[float]:
    """The numbers of ``mode``'s row in the final table."""
    row = re.search(rf"^{mode}\s+(?=[0-9])(.*)$", out, re.M)
    assert row, out
    return [float(v) for v in re.findall(NUM, row.group(1))]


@pytest.mark.parametrize("backend", ["reference", "llvm"])
@pytest.mark.parametrize("name, threshold", [("mlp_digits.py", 0.95),
                                             ("lenet_digits.py", 0.97)])
def test_digits_example_reaches_its_accuracy_in_both_modes(name, threshold, backend):
    out = run_example(name, backend=backend)  # the default configuration: seconds each
    accs = {}
    for mode in MODES:
        lines = epoch_lines(out, mode)
        assert lines and len(lines) == int(lines[0].group(2)), out
        losses = [float(re.search(r"loss " + NUM, m.group(3)).group(1)) for m in lines]
        assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] / 5, losses
        last = float(re.search(r"test acc\s+" + NUM + "%", lines[-1].group(3)).group(1))
        acc, median_ms, first_ms = summary_row(out, mode)
        assert acc == last and median_ms > 0 and first_ms > 0, out
        accs[mode] = acc / 100
    assert min(accs.values()) >= threshold, accs
    # Same initial parameters, same batches: the runs agree up to float32 rounding, which
    # may move at most a test image or two (359 in the test set).
    assert abs(accs["imperative"] - accs["hybridized"]) <= 2 / 359, accs
    diff = re.search(r"^max abs difference of final test logits: " + NUM + "$", out, re.M)
    assert diff, out
    if backend == "reference":   # the same numpy kernels as the imperative run
        assert float(diff.group(1)) < 1e-3, out
    else:
        # Native kernels round differently (summation order), and Adam turns rounding
        # noise in near-zero gradients into steps of the learning rate's size, so after
        # 20 epochs the two runs are different (equally good) networks. Early on they
        # must agree: the printed losses of the first epochs match to 4 digits or so.
        for mode_lines in zip(*(epoch_lines(out, m)[:3] for m in MODES)):
            a, b = (float(re.search(r"loss " + NUM, m.group(3)).group(1))
                    for m in mode_lines)
            assert abs(a - b) <= 2e-4 + 1e-3 * abs(b), out
    assert re.search(r"^speed ratio \(imperative / hybridized median epoch\): " + NUM + "x$",
                     out, re.M), out


@pytest.mark.parametrize("name", ["mlp_digits.py", "lenet_digits.py"])
def test_digits_example_takes_epochs(name):
    out = run_example(name, "--quick", "--epochs", "1")
    for mode in MODES:
        assert [m.group(1, 2) for m in epoch_lines(out, mode)] == [("1", "1")], out


def test_char_lstm_perplexity_falls_and_it_samples_text():
    out = run_example("char_lstm.py", "--quick")
    ppl = {}
    for mode in MODES:
        lines = epoch_lines(out, mode)
        assert len(lines) >= 2 and len(lines) == int(lines[0].group(2)), out
        ppl[mode] = [tuple(float(v) for v in re.fullmatch(
            r"train ppl\s+" + NUM + r"\s+held-out ppl\s+" + NUM, m.group(3)).groups())
            for m in lines]
        values = [v for pair in ppl[mode] for v in pair]
        assert all(math.isfinite(v) and v >= 1 for v in values), ppl
        train, held_out = zip(*ppl[mode])
        assert train[-1] < train[0] and held_out[-1] < held_out[0], ppl
        assert held_out[-1] < 56, "better than a uniform guess over the vocabulary"
        assert summary_row(out, mode)[:2] == [train[-1], held_out[-1]], out
    for a, b in zip(*(sum(ppl[m], ()) for m in MODES)):
        assert abs(a - b) <= 1e-3 * a, ppl  # same start, same dropout masks
    text = re.search(r"^sampled text \(temperature [0-9.]+\):\n(Shall I compare thee.*)\Z",
                     out, re.M | re.S)
    assert text and len(text.group(1)) > len("Shall I compare thee") + 100, out


def test_progress_bar_draws_on_request_and_stays_quiet_in_logs():
    spec = importlib.util.spec_from_file_location("progress", EXAMPLES / "progress.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stream = io.StringIO()
    assert list(module.progress(range(3), "epoch 1", stream=stream, enabled=True)) == [0, 1, 2]
    drawn = stream.getvalue()
    assert "epoch 1 [" in drawn and "3/3" in drawn and drawn.endswith("\r"), drawn
    quiet = io.StringIO()  # not a tty: drawing defaults to off
    assert list(module.progress(iter("ab"), stream=quiet, total=2)) == ["a", "b"]
    assert quiet.getvalue() == ""
