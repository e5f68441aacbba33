"""`graphc bench`: every requested cell measured, compiled agrees with imperative, bad input is
one stderr line with exit 2 (timings themselves are not asserted: see DESIGN.md)."""

from __future__ import annotations

import json

import pytest

from graphc.cli import main


def test_bench_quick_json_has_every_cell(tmp_path, capsys):
    import graphc as gc
    threads_before = gc.get_num_threads()
    out = tmp_path / "bench.json"
    rc = main(["bench", "--quick", "--workloads", "W1,W7", "--backends", "reference,llvm",
               "--threads", "1", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    cells = {(c["workload"], c["backend"]): c for c in report["cells"]}
    assert set(cells) == {(w, b) for w in ("W1", "W7") for b in ("reference", "llvm")}
    for c in cells.values():
        for key in ("median_s", "min_s", "max_s", "imperative_median_s", "first_call_s"):
            assert c[key] > 0, (c["workload"], c["backend"], key)
        assert c["min_s"] <= c["median_s"] <= c["max_s"]
        assert c["max_abs_diff"] < 1e-5
        assert c["arena_bytes"] is not None and c["arena_bytes"] >= 0
    assert cells[("W1", "llvm")]["floor_fraction"] > 0
    assert cells[("W7", "llvm")]["floor_fraction"] is None
    # W7's three products: 2 * (64*64 + 64*64 + 64*10) FLOPs per call, against GEMM peak
    w7 = cells[("W7", "llvm")]
    assert w7["gemm_fraction"] == pytest.approx(
        2 * (64 * 64 * 2 + 64 * 10) / w7["median_s"] / report["ceilings"]["gemm_flops_per_s"])
    assert cells[("W1", "llvm")]["gemm_fraction"] is None
    assert report["threads"] == 1 and gc.get_num_threads() == threads_before   # restored
    assert report["ceilings"]["copy_bytes_per_s"] > 0
    assert report["ceilings"]["gemm_flops_per_s"] > 0
    captured = capsys.readouterr()
    assert captured.out.count("\nW1 ") == 2 and captured.out.count("\nW7 ") == 2
    progress = captured.err.splitlines()
    assert len(progress) == 4 and "\r" not in captured.err   # stderr is not a terminal here
    assert progress[-1].startswith("[4/4] W7 llvm")


@pytest.mark.parametrize("argv, needle", [
    (["--workloads", "W1,W99"], "W99"),
    (["--backends", "nosuch"], "nosuch"),
    (["--threads", "0"], "--threads"),
])
def test_bench_bad_input_is_one_line(argv, needle, capsys):
    assert main(["bench", "--quick", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("graphc bench: ") and needle in err[0]


def test_bench_plot_without_matplotlib_names_extra(tmp_path, capsys, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import fails as if not installed
    assert main(["bench", "--quick", "--workloads", "W7", "--plot", str(tmp_path / "b.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "graphc[plot]" in err[0]
    assert not (tmp_path / "b.png").exists()


def test_bench_peers_numpy_cell_and_missing_torch_note(tmp_path, capsys):
    """numpy runs through graphc/bench/peers.py in a subprocess; a peer whose framework is
    not installed is a stderr note and a table line, exit 0."""
    import importlib.util
    out = tmp_path / "bench.json"
    rc = main(["bench", "--quick", "--workloads", "W7", "--backends", "llvm", "--threads", "1",
               "--peers", "numpy,torch", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    cells = {(c["workload"], c["backend"]): c for c in report["cells"]}
    peer = cells[("W7", "peer:numpy")]
    assert peer["median_s"] > 0 and peer["min_s"] <= peer["median_s"]
    assert peer["max_scaled_diff_vs_numpy"] == 0.0 and ("W7", "llvm") in cells
    captured = capsys.readouterr()
    assert "peer:numpy" in captured.out
    if importlib.util.find_spec("torch") is None:
        assert ("W7", "peer:torch") not in cells
        assert any("peer torch: not installed" in n for n in report["peer_notes"])
        assert "graphc bench: peer torch: not installed" in captured.err
        assert "note: peer torch: not installed" in captured.out


@pytest.mark.parametrize("argv, needle", [
    (["--peers", "numpy,nosuch"], "nosuch"),
    (["--peers", "numpy", "--peer-python", "numpy"], "NAME=/path/to/python"),
    (["--peers", "numpy", "--peer-python", "numpy=/no/such/python"], "/no/such/python"),
])
def test_bench_bad_peer_is_one_line(argv, needle, capsys):
    assert main(["bench", "--quick", "--workloads", "W7", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("graphc bench: ") and needle in err[0]


def test_peer_python_runs_that_interpreter(tmp_path):
    """--peer-python NAME=PATH: the cells come from that interpreter (here a wrapper script
    that records it ran, then execs this Python)."""
    import os
    import sys

    from graphc.bench import runner
    mark = tmp_path / "ran"
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\ntouch {mark}\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    peers = runner.parse_peers("numpy", [f"numpy={wrapper}"])
    assert peers == {"numpy": str(wrapper)}
    cells, notes = runner.run_peers(peers, ["W7"], threads=1, quick=True)
    assert notes == [] and os.path.exists(mark)
    assert [(c["workload"], c["backend"], c["python"]) for c in cells] == \
        [("W7", "peer:numpy", str(wrapper))]
    assert cells[0]["median_s"] > 0


MXNET_PYTHON = "/work/mxnet-venv/bin/python"


@pytest.mark.skipif(not __import__("os").access(MXNET_PYTHON, __import__("os").X_OK),
                    reason=f"no MXNet interpreter at {MXNET_PYTHON} (CI has no MXNet)")
def test_bench_mxnet_peer_through_peer_python(tmp_path):
    """--peers mxnet means imperative and hybridized, both checked against numpy in peers.py."""
    out = tmp_path / "bench.json"
    rc = main(["bench", "--quick", "--workloads", "W7", "--backends", "llvm", "--threads", "1",
               "--peers", "mxnet", "--peer-python", f"mxnet={MXNET_PYTHON}", "--json", str(out)])
    assert rc == 0
    cells = {(c["workload"], c["backend"]): c for c in json.loads(out.read_text())["cells"]}
    for name in ("peer:mxnet", "peer:mxnet.hybrid"):
        cell = cells[("W7", name)]
        assert 0 < cell["min_s"] <= cell["median_s"] and cell["python"] == MXNET_PYTHON
        assert cell["max_scaled_diff_vs_numpy"] < 1e-5
