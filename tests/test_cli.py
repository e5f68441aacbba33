"""The `graphc` command line, run in-process through `main` and once as ``python -m graphc``."""

import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
from graphc import nn
from graphc.cli import main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(prefix, x, y): a hybridized conv+dense model exported, an input and its output."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(4, 3, in_channels=2, activation="relu"), nn.Flatten(),
            nn.Dense(5, in_units=4 * 6 * 6))
    net.initialize()
    net.hybridize()
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 8)).astype(np.float32)
    y = net(gc.array(x)).numpy()
    prefix = str(tmp_path_factory.mktemp("cli") / "model")
    net.export(prefix)
    return prefix, x, y


def test_info(exported, capsys):
    assert main(["info", exported[0]]) == 0
    out = capsys.readouterr().out
    assert "data                     (2, 2, 8, 8)         float32  data" in out
    assert "0.weight" in out and "parameter" in out
    lines = dict(line.split() for line in out.splitlines() if line.startswith("  ")
                 and len(line.split()) == 2)
    assert lines["conv2d"] == "1" and lines["matmul"] == "1" and lines["add"] == "2"
    assert "parameters: 801 (3.13 KiB, 4 tensors)" in out  # 4*2*9+4 + 5*144+5
    # conv 2*288*18 + add/relu 2*288 + matmul 2*2*5*144 + add 10
    assert "flops: 13834" in out
    assert "kernels after fusion: 2 (from 8 nodes)" in out
    assert "memory: naive " in out and "lower bound " in out


def test_info_accepts_graph_json_path(exported, capsys):
    assert main(["info", exported[0] + "-graph.json"]) == 0
    assert "conv2d" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_run_matches_block(exported, tmp_path, backend, capsys):
    prefix, x, y = exported
    np.save(tmp_path / "x.npy", x.astype(np.float64))   # cast to the graph's float32
    out = tmp_path / "y.npy"
    assert main(["run", prefix, "--input", f"data={tmp_path / 'x.npy'}", "--backend", backend,
                 "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), y, atol=1e-5, rtol=1e-5)
    assert "shape (2, 5) dtype float32" in capsys.readouterr().out


def test_run_npz_and_summary(exported, tmp_path, capsys):
    prefix, x, y = exported
    np.save(tmp_path / "x.npy", x)
    feed = ["--input", f"data={tmp_path / 'x.npy'}", "--backend", "reference"]
    assert main(["run", prefix, *feed, "--out", str(tmp_path / "o.npz")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "o.npz")["output0"], y, atol=1e-5)
    assert main(["run", prefix, *feed]) == 0
    assert f"max {y.max():.6g}" in capsys.readouterr().out


def test_doctor(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("llvm: ") and "triple" in out
    assert f"reference: ok  numpy {np.__version__}" in out
    assert "cuda: " in out and f"threads: {gc.get_num_threads()}" in out


@pytest.mark.parametrize("argv, message", [
    (["info", "NOPE"], "graphc info: NOPE: no such file"),
    (["run", "NOPE", "--input", "data=x.npy"], "graphc run: NOPE-graph.json not found"),
])
def test_missing_files_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_bad_inputs_exit_2(exported, tmp_path, capsys):
    prefix, x, _ = exported
    (tmp_path / "bad.json").write_text('{"graph": ')
    assert main(["info", str(tmp_path / "bad.json")]) == 2
    assert capsys.readouterr().err.startswith("graphc info: graph JSON is not valid JSON")
    np.save(tmp_path / "x.npy", x[:1])
    assert main(["run", prefix, "--input", f"wrong={tmp_path / 'x.npy'}"]) == 2
    assert "unknown input 'wrong'; the model takes ['data']" in capsys.readouterr().err
    assert main(["run", prefix, "--input", f"data={tmp_path / 'x.npy'}",
                 "--backend", "reference"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphc run: ") and "(1, 2, 8, 8)" in err and err.count("\n") == 1
    assert main(["run", prefix]) == 2
    assert "missing --input for ['data']" in capsys.readouterr().err


def test_usage_errors_and_help(capsys):
    assert main(["info"]) == 2
    assert main(["frobnicate"]) == 2
    assert main(["run", "--help"]) == 0
    assert "--backend {llvm,reference}" in capsys.readouterr().out
    assert main(["info", "--help"]) == 0
    assert "2*M*N*K per matmul" in capsys.readouterr().out


def test_python_dash_m(exported):
    ok = subprocess.run([sys.executable, "-m", "graphc", "info", exported[0]],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "matmul" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "graphc", "info", exported[0] + "x"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("graphc info: ") and bad.stderr.count("\n") == 1


def test_viz_dot(exported, tmp_path, capsys):
    viz = pytest.importorskip("graphc.viz", reason="graphc/viz.py is written separately")
    out = tmp_path / "g.dot"
    assert main(["viz", exported[0], "-o", str(out)]) == 0
    assert out.read_text() == viz.to_dot(gc.load_graph(exported[0])[0])


def test_viz_without_dot_program_exit_2(exported, tmp_path, monkeypatch, capsys):
    pytest.importorskip("graphc.viz", reason="graphc/viz.py is written separately")
    monkeypatch.setenv("PATH", str(tmp_path))   # no `dot` on it
    assert main(["viz", exported[0], "-o", str(tmp_path / "g.svg")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphc viz: ") and "graphc viz: graphc viz" not in err
    assert "dot" in err and err.count("\n") == 1


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_profile_exported_model_and_trace(exported, tmp_path, backend, capsys):
    import json
    prefix, x, _ = exported
    np.save(tmp_path / "x.npy", x)
    trace = tmp_path / "trace.json"
    assert main(["profile", prefix, "--input", f"data={tmp_path / 'x.npy'}", "--calls", "3",
                 "--backend", backend, "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "conv2d" in out and "total" in out and f"backend {backend}, 3 calls" in out
    events = json.loads(trace.read_text())["traceEvents"]
    kernels = {e["name"] for e in events}
    assert events and all(e["ph"] == "X" and e["dur"] > 0 for e in events)
    assert len(events) % 3 == 0 and len(events) // 3 == len(
        [e for e in events if e["ts"] <= events[len(events) // 3 - 1]["ts"]])
    assert any("conv2d" in k for k in kernels)


def test_profile_workload_and_bad_target(capsys):
    assert main(["profile", "W7", "--calls", "2"]) == 0
    assert "matmul" in capsys.readouterr().out
    assert main(["profile", "W9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither a workload" in err[0]
