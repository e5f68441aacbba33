"""Turning generated LLVM IR into machine code in this process, through a compile cache.

`NativeModule` optimizes a module with the host CPU's target machine (its name and
features, so AVX2/AVX-512 vectors where present) and llvmlite's new pass manager at speed
level 3, emits it as an object file and loads that into an MCJIT engine; kernels are looked
up by name as ctypes functions. A fresh compile and a cache hit load the same bytes the same
way, so they run the same machine code.

The cache key is a sha256 of the IR text (a deterministic function of the optimized graph),
the target triple, the host CPU name and features, the llvmlite and LLVM versions and
`FORMAT_VERSION` (bump it when the pass pipeline or the file layout changes). Two levels:

- in memory, key -> loaded engine, so executables with identical IR share one engine;
- on disk (`cache_dir()`), one file per key: a header (magic, version, key, payload lengths,
  sha256 of the payload), then the object code and the optimized IR text (zlib: it is ~90%
  of the bytes otherwise, and only tests and users reading it need it). A hit skips
  parsing, optimization and code generation. Files are written atomically (temp file +
  ``os.replace``); a directory that cannot be written only means no disk cache. A file that
  fails any check is removed, counted in ``CACHE_STATS['corrupt']`` and rebuilt: LLVM never
  sees it. The checksum catches damage, not tampering: whoever can write the cache directory
  can run code in this process (it is created private to the user).

External functions and globals the IR declares (libm, BLAS or a thread count registered with
``llvm.add_symbol``) are resolved by name when the object is loaded, in this process, so a
cached object works wherever they now live; an unresolved one raises `BackendError` rather
than leaving a reference to address 0.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import struct
import tempfile
import zlib
from pathlib import Path

import llvmlite
import llvmlite.binding as llvm
from llvmlite import ir

from ...errors import BackendError

#: Part of every key and file header; bump when the pipeline or the file layout changes.
FORMAT_VERSION = 1
_MAGIC = b"graphcLO"
#: magic, version, key, len(object code), len(zlib of the IR), sha256 of those two
_HEADER = struct.Struct("<8sI32sQQ32s")
_MAX_FILE = 1 << 30  # a larger "cache file" is not one of ours
_DISABLED = ("0", "false", "no", "off")

#: How each `NativeModule` was obtained; tests assert through these, never through timing.
CACHE_STATS = {"memory_hits": 0, "disk_hits": 0, "compiles": 0, "corrupt": 0}
_LOADED: dict[str, tuple] = {}  # key -> (engine, optimized IR): engines live as long as this
_HOST: tuple | None = None


def reset_cache_stats() -> None:
    for k in CACHE_STATS:
        CACHE_STATS[k] = 0


def clear_memory_cache() -> None:
    """Forget the loaded engines (modules already built keep theirs), so the next module of
    the same key comes from disk or a compile."""
    _LOADED.clear()


def _host() -> tuple:
    """(target, cpu name, features, key prefix) of this machine, computed once."""
    global _HOST
    if _HOST is None:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_default_triple()
        cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
        prefix = "\0".join(map(str, (FORMAT_VERSION, llvmlite.__version__,
                                     llvm.llvm_version_info, target.triple, cpu, features)))
        _HOST = (target, cpu, features, prefix.encode() + b"\0")
    return _HOST


def target_machine() -> llvm.TargetMachine:
    """A new target machine of the host CPU (its name and features: AVX2 and up where
    present). New each time: an MCJIT engine takes ownership of (and frees) its own."""
    target, cpu, features, _ = _host()
    return target.create_target_machine(cpu=cpu, features=features, opt=3)


def cache_dir() -> Path | None:
    """The disk cache: ``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc/llvm``, else
    ``~/.cache/graphc/llvm``; None when ``GRAPHC_CACHE=0``. Read per module, so a test or
    a user may change it at run time."""
    if os.environ.get("GRAPHC_CACHE", "1").strip().lower() in _DISABLED:
        return None
    if os.environ.get("GRAPHC_CACHE_DIR"):
        return Path(os.environ["GRAPHC_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc" / "llvm"


def _compile(text: str) -> tuple[bytes, str]:
    """Object code and optimized IR of the IR ``text``."""
    tm = target_machine()
    mod = llvm.parse_assembly(text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return tm.emit_object(mod), str(mod)


def _read(path: Path, key: bytes) -> tuple[bytes, str] | None:
    """(object code, optimized IR) from the cache file, None if there is none; a file that
    fails any check is removed and counted as corrupt."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(_MAX_FILE + 1) if size <= _MAX_FILE else b""
    except OSError:  # absent, or unreadable: a miss
        return None
    n = _HEADER.size
    if len(data) >= n:
        magic, version, stored, n_obj, n_ir, digest = _HEADER.unpack_from(data)
        payload = memoryview(data)[n:]
        if (magic, version, stored) == (_MAGIC, FORMAT_VERSION, key) and \
                n_obj + n_ir == len(payload) and n_obj > 0 and \
                hashlib.sha256(payload).digest() == digest:
            try:
                return bytes(payload[:n_obj]), zlib.decompress(payload[n_obj:]).decode()
            except (zlib.error, UnicodeDecodeError):
                pass
    CACHE_STATS["corrupt"] += 1
    try:
        path.unlink()
    except OSError:
        pass
    return None


def _write(path: Path, key: bytes, obj: bytes, ir_text: str) -> None:
    """Store atomically; any OSError (read-only, full, not a directory) just skips it."""
    ir_bytes = zlib.compress(ir_text.encode(), 1)
    digest = hashlib.sha256(obj + ir_bytes).digest()
    header = _HEADER.pack(_MAGIC, FORMAT_VERSION, key, len(obj), len(ir_bytes), digest)
    tmp = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        with os.fdopen(fd, "wb") as f:
            f.write(header + obj + ir_bytes)
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _load(obj: bytes, externals: list[str]):
    """An MCJIT engine holding the object code ``obj``."""
    tm = target_machine()
    empty = llvm.parse_assembly("")
    empty.triple = tm.triple
    engine = llvm.create_mcjit_compiler(empty, tm)  # also makes process symbols visible
    missing = [s for s in externals if not llvm.address_of_symbol(s)]
    if missing:
        raise BackendError(f"the LLVM module uses {', '.join(missing)}, which this process "
                           "does not define: register each with "
                           "llvmlite.binding.add_symbol(name, address) before compiling")
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    return engine


class NativeModule:
    """An LLVM IR module, optimized (O3, loop and SLP vectorization) and loaded (MCJIT),
    from the compile cache where it holds the module's key. ``origin`` says which of
    'memory', 'disk' or 'compile' produced it."""

    def __init__(self, module: ir.Module):
        text = str(module)
        key = hashlib.sha256(_host()[3] + text.encode()).digest()
        self.key = key.hex()
        hit = _LOADED.get(self.key)
        if hit is not None:
            CACHE_STATS["memory_hits"] += 1
            self.engine, self.optimized_ir = hit
            self.origin = "memory"
            return
        externals = [g.name for g in module.global_values if not g.name.startswith("llvm.")
                     and (g.is_declaration if isinstance(g, ir.Function)
                          else g.initializer is None)]
        root = cache_dir()
        path = root / f"{self.key}.gcobj" if root is not None else None
        stored = _read(path, key) if path is not None else None
        if stored is not None:
            CACHE_STATS["disk_hits"] += 1
            self.origin = "disk"
            obj, self.optimized_ir = stored
        else:
            CACHE_STATS["compiles"] += 1
            self.origin = "compile"
            obj, self.optimized_ir = _compile(text)
            if path is not None:
                _write(path, key, obj, self.optimized_ir)
        self.engine = _load(obj, externals)
        _LOADED[self.key] = (self.engine, self.optimized_ir)

    def function(self, name: str, argtypes: list):
        addr = self.engine.get_function_address(name)
        if not addr:
            raise BackendError(f"no function {name!r} in the compiled LLVM module")
        return ctypes.CFUNCTYPE(None, *argtypes)(addr)
