"""The compile cache of the LLVM backend (`graphc.backends.llvm.native_module`).

Asserted through ``CACHE_STATS`` and the modules' ``origin``, never through timing:

- a second process compiling the same graph (LeNet's training step) and a hand-written
  module that calls a symbol registered with ``llvm.add_symbol`` hits the disk cache and
  compiles nothing, with results equal to the first process's, bit for bit;
- identical IR in one process shares one engine (memory cache);
- a damaged file (a flipped byte in the object code or the IR, truncated, trailing bytes,
  wrong magic, another format version, empty) is counted as corrupt, never handed to LLVM,
  and rebuilt; results stay equal to the reference backend;
- ``GRAPHC_CACHE=0`` writes nothing; a cache directory that cannot be created still
  compiles; another llvmlite version does not reuse the file;
- an external symbol this process does not define raises `BackendError`.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from llvmlite import ir

import graphc as gc
from graphc.backends.llvm import native_module as nm
from graphc.errors import BackendError

TESTS = Path(__file__).parent
I64, PTR = ir.IntType(64), ir.PointerType()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache directory, an empty memory cache, zeroed counters."""
    root = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(root))
    monkeypatch.delenv("GRAPHC_CACHE", raising=False)
    nm.clear_memory_cache()
    nm.reset_cache_stats()
    return root


def _stats(**expected) -> dict:
    return {k: expected.get(k, 0) for k in nm.CACHE_STATS}


def _graph(x, w):
    """Elementwise, broadcast, row-wise and single reductions: several kernels."""
    h = gc.tanh(x * 2.0 + w)
    return gc.softmax(h, axis=-1), gc.sum(gc.exp(h) * w, axis=0)


ARGS = (np.linspace(-3, 3, 7 * 33, dtype=np.float32).reshape(7, 33),
        np.linspace(1, -1, 33, dtype=np.float32))


def _run(fn=_graph, args=ARGS) -> tuple[list[np.ndarray], object]:
    """llvm results, checked against the reference backend, and the module."""
    f = gc.jit(fn, backend="llvm")
    got = [o.numpy() for o in f(*args)]
    for g, w in zip(got, gc.jit(fn, backend="reference")(*args)):
        np.testing.assert_allclose(g, w.numpy(), rtol=2e-5, atol=1e-6)
    return got, f.compiled(*args).module


def _external_module(fn: str = "graphc_test_triple", var: str = "graphc_test_one"):
    """``void f(i64* out, i64 x) { *out = fn(x) + var; }``: an external function and an
    external global (as BLAS and the thread count are to the generated code)."""
    mod = ir.Module(name="ext")
    ext = ir.Function(mod, ir.FunctionType(I64, [I64]), name=fn)
    one = ir.GlobalVariable(mod, I64, var)
    f = ir.Function(mod, ir.FunctionType(ir.VoidType(), [PTR, I64]), name="f")
    b = ir.IRBuilder(f.append_basic_block())
    b.store(b.add(b.call(ext, [f.args[1]]), b.load(one)), f.args[0])
    b.ret_void()
    return mod


def _call_external(module: nm.NativeModule, x: int) -> int:
    out = ctypes.c_int64()
    module.function("f", [ctypes.c_void_p, ctypes.c_int64])(ctypes.addressof(out), x)
    return out.value


_TRIPLE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(lambda x: 3 * x)
_ONE = ctypes.c_int64(1)


def _register() -> None:
    """The externals of `_external_module`: their addresses differ from process to process
    (a ctypes callback, a ctypes integer)."""
    import llvmlite.binding as llvm
    llvm.add_symbol("graphc_test_triple", ctypes.cast(_TRIPLE, ctypes.c_void_p).value)
    llvm.add_symbol("graphc_test_one", ctypes.addressof(_ONE))


# -- a second process -------------------------------------------------------------------

_CHILD = """
import ctypes, json, sys
import numpy as np
import llvmlite.binding as llvm
import graphc as gc
import models
import test_llvm_cache as t
from graphc.backends.llvm import native_module as nm
fn, args = models.train_step("lenet")
out = [np.asarray(o) for o in gc.jit(fn, backend="llvm")(*args)]
t._register()
ext = nm.NativeModule(t._external_module())
np.savez(sys.argv[1], *out)
print(json.dumps({"stats": nm.CACHE_STATS, "external": t._call_external(ext, 14)}))
"""


def _child(cache: Path, out: Path) -> dict:
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache),
           "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    env.pop("GRAPHC_CACHE", None)
    run = subprocess.run([sys.executable, "-c", _CHILD, str(out)], env=env, cwd=TESTS,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_second_process_hits_disk_cache(tmp_path):
    import models
    first = _child(tmp_path / "cache", tmp_path / "first.npz")
    assert first["stats"]["compiles"] == 2 and first["stats"]["disk_hits"] == 0
    assert len(list((tmp_path / "cache").glob("*.gcobj"))) == 2
    second = _child(tmp_path / "cache", tmp_path / "second.npz")
    assert second["stats"] == _stats(disk_hits=2)
    assert first["external"] == second["external"] == 43
    fn, args = models.train_step("lenet")
    want = gc.jit(fn, backend="reference")(*args)
    with np.load(tmp_path / "first.npz") as a, np.load(tmp_path / "second.npz") as b:
        assert len(a.files) == len(b.files) == len(want)
        for k, w in zip(a.files, want):
            np.testing.assert_array_equal(a[k], b[k])  # the same machine code
            np.testing.assert_allclose(a[k], w.numpy(), rtol=2e-5, atol=1e-6)


# -- in one process -----------------------------------------------------------------------

def test_identical_ir_shares_one_engine(cache):
    got, a = _run()
    again, b = _run()
    assert (a.origin, b.origin) == ("compile", "memory")
    assert b.engine is a.engine and b.optimized_ir == a.optimized_ir
    assert nm.CACHE_STATS == _stats(compiles=1, memory_hits=1)
    for x, y in zip(got, again):
        np.testing.assert_array_equal(x, y)


def test_disk_hit_in_process(cache):
    got, a = _run()
    nm.clear_memory_cache()
    again, b = _run()
    assert (a.origin, b.origin) == ("compile", "disk")
    assert b.engine is not a.engine and b.optimized_ir == a.optimized_ir
    assert "<8 x float>" in b.optimized_ir
    assert nm.CACHE_STATS == _stats(compiles=1, disk_hits=1)
    for x, y in zip(got, again):
        np.testing.assert_array_equal(x, y)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:]


def _damage(data: bytes, how: str) -> bytes:
    n = nm._HEADER.size
    n_obj = struct.unpack_from("<Q", data, n - 48)[0]
    version = struct.pack("<I", nm.FORMAT_VERSION + 1)
    return {"object_byte": lambda: _flip(data, n + n_obj // 2),
            "ir_byte": lambda: _flip(data, len(data) - 10),
            "header_length": lambda: _flip(data, n - 48),
            "truncated": lambda: data[:-100],
            "header_only": lambda: data[:n],
            "trailing": lambda: data + b"\0",
            "magic": lambda: b"GRAPHCLO" + data[8:],
            "version": lambda: data[:8] + version + data[12:],
            "empty": lambda: b""}[how]()


@pytest.mark.parametrize("how", ["object_byte", "ir_byte", "header_length", "truncated",
                                 "header_only", "trailing", "magic", "version", "empty"])
def test_corrupt_file_is_rebuilt_never_loaded(cache, monkeypatch, how):
    got, a = _run()
    (path,) = cache.glob("*.gcobj")
    clean = path.read_bytes()
    bad = _damage(clean, how)
    assert bad != clean
    path.write_bytes(bad)
    compiled, loaded = [], []
    compile_, load = nm._compile, nm._load
    monkeypatch.setattr(nm, "_compile", lambda text: compiled.append(compile_(text))
                        or compiled[-1])
    monkeypatch.setattr(nm, "_load", lambda obj, ext: loaded.append(obj) or load(obj, ext))
    nm.clear_memory_cache()
    again, b = _run()
    assert b.origin == "compile"
    assert nm.CACHE_STATS == _stats(compiles=2, corrupt=1)
    assert loaded == [compiled[0][0]]  # LLVM saw the compiler's bytes, not the file's
    assert path.read_bytes() == clean  # rebuilt (code generation is deterministic)
    for x, y in zip(got, again):
        np.testing.assert_array_equal(x, y)
    nm.clear_memory_cache()
    assert _run()[1].origin == "disk"


def test_disabled_writes_nothing(cache, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE", "0")
    _run()
    nm.clear_memory_cache()
    _, b = _run()
    assert b.origin == "compile" and not cache.exists()
    assert nm.CACHE_STATS == _stats(compiles=2)


def test_unwritable_cache_dir_still_compiles(tmp_path, cache, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "file" / "cache"))
    _run()
    nm.clear_memory_cache()
    assert _run()[1].origin == "compile"
    assert nm.CACHE_STATS == _stats(compiles=2)


def test_other_llvmlite_version_misses(cache, monkeypatch):
    _, a = _run()
    monkeypatch.setattr(nm.llvmlite, "__version__", "0.0.0")
    monkeypatch.setattr(nm, "_HOST", None)  # the key prefix, recomputed
    nm.clear_memory_cache()
    _, b = _run()
    assert b.origin == "compile" and b.key != a.key
    assert len(list(cache.glob("*.gcobj"))) == 2
    assert nm.CACHE_STATS == _stats(compiles=2)


def test_external_symbols_from_disk(cache):
    _register()
    a = nm.NativeModule(_external_module())
    nm.clear_memory_cache()
    b = nm.NativeModule(_external_module())
    assert (a.origin, b.origin) == ("compile", "disk")
    assert _call_external(a, -5) == _call_external(b, -5) == -14


@pytest.mark.parametrize("which", ["fn", "var"])
def test_unresolved_external_symbol_raises(cache, which):
    _register()
    with pytest.raises(BackendError, match="graphc_test_undefined.*add_symbol"):
        nm.NativeModule(_external_module(**{which: "graphc_test_undefined"}))


def test_unknown_function_raises(cache):
    _register()
    module = nm.NativeModule(_external_module())
    with pytest.raises(BackendError, match="'g'"):
        module.function("g", [])
