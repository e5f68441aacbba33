"""The few device operations the CUDA executable needs, behind one small interface.

`CudaExecutable` never calls cupy directly: it asks a driver for memory, views at
device addresses, compiled modules, GEMMs and graph capture. `CupyDriver` is the real one
(cupy, NVRTC, cuBLAS); the test suite runs the same executable on a driver whose "device"
is host memory and whose kernels are the generated CUDA C compiled for the CPU
(`tests/cuda_emulator.py`), so everything but the hardware is tested on machines without
a GPU.

Kernel launches follow `cupy.RawKernel`'s call convention, ``fn(grid, block, args)``, with
``args`` a tuple of numpy scalars: device pointers as ``np.uint64``, sizes as ``np.int64``.
"""

from __future__ import annotations

import os

from ...errors import BackendError
from .compiler import source_key

_INSTALL = "pip install 'graphc[gpu]' (cupy-cuda13x for CUDA 13)"


class CupyDriver:
    """cupy on the current CUDA device. Modules compile with NVRTC (``cupy.RawModule``):
    cached in memory by source hash and device architecture, and on disk by cupy's own
    kernel cache (``CUPY_CACHE_DIR``, keyed by source, options, architecture and NVRTC
    version)."""

    def __init__(self):
        try:
            import cupy
        except ImportError as e:
            raise BackendError(f"the cuda backend needs cupy: {_INSTALL}") from e
        try:
            device = cupy.cuda.Device()
            self.arch = f"sm_{int(device.compute_capability)}"
            self.sm_count = int(device.attributes["MultiProcessorCount"])
        except Exception as e:   # cupy installed, no driver or no device
            raise BackendError(f"the cuda backend found no usable CUDA device ({e}); "
                               "check nvidia-smi, or use backend='llvm' on the CPU") from e
        self.xp = cupy
        self._modules: dict[str, object] = {}

    def ptr(self, a) -> int:
        return a.data.ptr

    def empty(self, shape, dtype):
        return self.xp.empty(shape, dtype)

    def to_device(self, a):
        return self.xp.asarray(a)

    def view(self, base, offset: int, shape, dtype, strides):
        """An array of ``shape``/``dtype``/byte ``strides`` at ``offset`` bytes into the
        device array ``base``."""
        return self.xp.ndarray(shape, dtype, memptr=base.data + offset, strides=strides)

    def load(self, source: str):
        key = source_key(source, self.arch)
        module = self._modules.get(key)
        if module is None:
            try:
                module = self.xp.RawModule(code=source, options=self._options())
                module.compile()
            except Exception as e:
                raise BackendError(f"NVRTC failed to compile the graph's kernels: {e}") from e
            self._modules[key] = module
        return module

    def _options(self) -> tuple:
        """C++17 (hex float literals), and the toolkit's headers (cuda_fp16.h) where NVRTC
        lacks them built in. Never fast math: the kernels follow numpy's rounding."""
        options = ["--std=c++17"]
        path = self.xp.cuda.get_cuda_path()
        if path and os.path.isdir(os.path.join(path, "include")):
            options.append("-I" + os.path.join(path, "include"))
        return tuple(options)

    def matmul(self, a, b, out) -> None:
        self.xp.matmul(a, b, out=out)   # cuBLAS (batched where a or b is)

    def capture(self, run):
        """``run()`` captured as a CUDA graph on a private stream. Every allocation made
        while capturing (cupy temporaries) is held for the graph's lifetime, so a replay
        never writes into memory the pool has handed to someone else."""
        cupy = self.xp
        pool = cupy.get_default_memory_pool()
        held: list = []

        def alloc(nbytes):
            m = pool.malloc(nbytes)
            held.append(m)
            return m
        stream = cupy.cuda.Stream(non_blocking=True)
        with stream, cupy.cuda.using_allocator(alloc):
            stream.begin_capture()
            try:
                run()
            finally:
                graph = stream.end_capture()
        graph.upload()
        return _Replay(graph, held, stream)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()


class _Replay:
    def __init__(self, graph, held, stream):
        self.graph, self.held, self.stream = graph, held, stream

    def launch(self) -> None:
        self.graph.launch()   # on the current stream, after this call's input copies


_DRIVER = None


def default_driver() -> CupyDriver:
    """One driver per process (the current CUDA device's)."""
    global _DRIVER
    if _DRIVER is None:
        _DRIVER = CupyDriver()
    return _DRIVER


def cuda_available() -> bool:
    """Whether cupy imports and sees a device (for skipping GPU tests)."""
    try:
        default_driver()
    except BackendError:
        return False
    return True
