"""The GPU check (scripts/gpu_check.sh) and benchmark (benchmarks/gpu.py) run end to end on
the CPU (``--device cpu``: llvm backend, numpy), so their plumbing is tested where there is
no GPU; the real run happens on a GPU machine."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks", "gpu.py")
SCRIPT = os.path.join(ROOT, "scripts", "gpu_check.sh")


def _bench_module():
    name = "graphc_gpu_bench"
    if name not in sys.modules:   # registered first: its dataclasses look the module up
        spec = importlib.util.spec_from_file_location(name, BENCH)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _env(tmp_path) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    env.pop("OUT", None)
    return env


def _records(report: dict) -> dict:
    return {(r["workload"], r["impl"]): r for r in report["records"]}


def test_bench_runs_on_the_cpu(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, BENCH, "--device", "cpu", "--quick", "--out", str(out),
         "--workloads", "W1,replay,W7", "--peers", "torch"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu-bench.json").read_text())
    assert report["finished"] and report["running"] is None
    assert report["copy_bytes_per_s"] > 0
    cells = _records(report)
    for wid in ("W1", "W7", "replay"):
        for impl in ("graphc imperative", "graphc compiled", "graphc compiled + CUDA graph"):
            r = cells[wid, impl]
            assert r["status"] == "ok", r
            assert r["median_s"] > 0 and r["batches"] >= 3
            if impl != "graphc imperative":
                assert r["first_call_s"] > 0 and r["mismatch"] is False, r
    assert cells["replay", "graphc hybridize + CUDA graph"]["status"] == "ok"
    # torch eager: measured, or skipped (not an error) where torch is not installed
    assert cells["W1", "torch eager"]["status"] in ("ok", "skipped")
    assert not any(r["impl"].startswith("torch.compile") for r in report["records"])
    targets = {t["target"].split(",")[0]: t for t in report["targets"]}
    w1 = targets["W1 graphc compiled"]
    assert w1["value"] > 0 and w1["met"] in (True, False)
    assert targets["CUDA graph replay"]["met"] is None   # a GPU target: not judged on a CPU
    md = (out / "gpu-bench.md").read_text()
    assert "## Targets" in md and "| W1 |" in md and "| replay |" in md


def test_a_failing_measurement_is_recorded_and_the_run_goes_on(tmp_path):
    gpu = _bench_module()
    args = gpu.parse_args(["--device", "cpu", "--quick", "--out", str(tmp_path),
                           "--peers", "none"])
    bench = gpu.Bench(gpu.make_target("cpu"), args)

    def boom():
        raise RuntimeError("no Triton here")

    bench.measure("W2", "torch.compile", boom, required=False)
    bench.measure("W2", "torch eager", lambda: {"median_s": 1e-3}, required=False)
    args.budget = -1.0
    bench.measure("W4", "graphc compiled", lambda: {"median_s": 1.0})
    recs = _records(json.loads((tmp_path / "gpu-bench.json").read_text()))
    assert recs["W2", "torch.compile"]["status"] == "error"
    assert "no Triton here" in recs["W2", "torch.compile"]["error"]
    assert recs["W2", "torch eager"]["status"] == "ok"
    assert recs["W4", "graphc compiled"]["status"] == "skipped"
    assert "budget" in recs["W4", "graphc compiled"]["error"]
    assert "no Triton here" in (tmp_path / "gpu-bench.md").read_text()
    with pytest.raises(SystemExit):
        gpu.parse_args(["--workloads", "W9"])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_script_on_the_cpu(tmp_path):
    """The whole script with GPU_CHECK_DEVICE=cpu: pytest restricted to this file (its one
    gpu-marked test is skipped without a GPU) and a quick benchmark."""
    out = tmp_path / "results"
    env = _env(tmp_path)
    env.update(PYTHON=sys.executable, GPU_CHECK_DEVICE="cpu",
               PYTEST_ARGS=os.path.relpath(__file__, ROOT),
               BENCH_ARGS="--quick --workloads W1,replay --peers none")
    proc = subprocess.run(["bash", SCRIPT, str(out)], capture_output=True, text=True,
                          timeout=180, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for name in ("env.txt", "pytest.log", "pytest-junit.xml", "bench.log", "gpu-bench.json",
                 "gpu-bench.md", "summary.md"):
        assert (out / name).is_file(), name
    summary = (out / "summary.md").read_text()
    assert "environment: ok" in summary and "pytest -m gpu: ok" in summary
    assert "benchmark: ok" in summary and "### Targets" in summary
    assert "graphc" in (out / "env.txt").read_text()


@pytest.mark.gpu
def test_copy_bandwidth_on_the_gpu(tmp_path):
    """On a GPU: the benchmark's device, synchronization and copy ceiling work."""
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            pytest.skip("no GPU")
    except Exception as e:  # noqa: BLE001 -- no driver / no device
        pytest.skip(f"no GPU: {e}")
    gpu = _bench_module()
    args = gpu.parse_args(["--quick", "--out", str(tmp_path), "--peers", "none"])
    bench = gpu.Bench(gpu.make_target("cuda"), args)
    rec = bench.measure("copy", "cupy copy", bench.copy)
    assert rec["status"] == "ok", rec
    assert rec["bytes_per_s"] > 1e11   # any datacenter GPU copies well above 100 GB/s
