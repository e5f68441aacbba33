"""Threads for native kernels: a process-wide thread count read by generated code.

Segments (`program`) split large elementwise and row-wise kernel calls into one chunk
per thread, started with ``pthread_create`` from the generated code itself (no Python and
no GIL involved) and joined before the next call, so results do not depend on the thread
count: chunks are disjoint ranges of the same loop, and a row's reduction never crosses
chunks. The count lives in one C integer whose address every module links against as
``graphc_num_threads``, so changing it takes effect in already compiled executables. The
count also sets OpenBLAS's threads (numpy's BLAS, which GEMMs call).

Default: ``GRAPHC_NUM_THREADS`` or the number of CPUs this process may run on.
"""

from __future__ import annotations

import ctypes
import os

from ...errors import GraphcError

#: Most threads one kernel call is split into.
MAX_THREADS = 64
#: Calls over fewer elements than this run on one thread (starting threads costs ~10 us).
PARALLEL_MIN = 1 << 17

def _default() -> int:
    env = os.environ.get("GRAPHC_NUM_THREADS")
    if env:
        try:
            return max(1, min(MAX_THREADS, int(env)))
        except ValueError:
            raise GraphcError(f"GRAPHC_NUM_THREADS={env!r}: expected a positive "
                              "integer") from None
    try:
        return max(1, min(MAX_THREADS, len(os.sched_getaffinity(0))))
    except AttributeError:
        return max(1, min(MAX_THREADS, os.cpu_count() or 1))


_COUNT = ctypes.c_int64(_default())
_REGISTERED = False


def register() -> None:
    """Make ``graphc_num_threads``, ``pthread_create`` and ``pthread_join`` resolvable by
    generated code (once per process, before any module is loaded)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import llvmlite.binding as llvm
    libc = ctypes.CDLL(None)
    for name in ("pthread_create", "pthread_join"):
        llvm.add_symbol(name, ctypes.cast(getattr(libc, name), ctypes.c_void_p).value)
    llvm.add_symbol("graphc_num_threads", ctypes.addressof(_COUNT))
    _REGISTERED = True


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in native kernels (and numpy's BLAS) from now on."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise GraphcError(f"set_num_threads({n!r}): expected a positive integer")
    _COUNT.value = min(n, MAX_THREADS)
    from . import library_codegen
    library_codegen.set_blas_threads(_COUNT.value)


def get_num_threads() -> int:
    return int(_COUNT.value)
