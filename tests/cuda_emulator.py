"""Runs generated CUDA C on the CPU, so tests check every kernel's values without a GPU.

``load(source)`` compiles the translation unit with g++ (``-x c++ -include <shim>``: the
shim header below defines ``__global__``, ``threadIdx``/``blockIdx``/``blockDim``/
``gridDim``, ``warpSize``, ``__syncthreads``, the ``__shfl_*_sync`` functions, ``__half``
as ``_Float16`` with round-to-nearest-even conversions, and the ``__fadd_rn``-style
intrinsics as plain IEEE operations) into a shared library (``-O0``: a test's thousands
of kernels compile three times faster than at -O1, and emulated launches are small), once
per source, cached by hash in a temp folder, loaded with ctypes. For each
``extern "C" __global__`` kernel it also compiles a trampoline that runs a launch.

``module.get_function(name)`` returns a callable ``fn(grid, block, args)`` with cupy
``RawKernel``'s convention: ``args`` a tuple of numpy scalars, device pointers as
``np.uint64`` (here: addresses of numpy arrays, ``a.ctypes.data``), ``long long`` sizes as
``np.int64`` (``int`` as np.int32, float/double as np.float32/np.float64); anything else
raises TypeError, as a wrong argument would crash a real launch.

The launch is emulated on a small grid whatever the caller asks for (generated kernels
are grid-stride loops, so any grid computes the same result):

- kernels without barriers run on ``GRID`` x ``BLOCK`` = 3 x 2 (at most what was asked),
  each (block, thread) in turn, so grid-stride loops and per-thread strides are exercised;
- kernels with barriers (``__syncthreads``, directly or through ``gc_block_reduce``) run
  each block's ``SYNC_BLOCK`` = 8 threads as coroutines (ucontext) that switch at every
  barrier and warp shuffle, in warps of ``WARP`` = 4 lanes, so warp shuffles, the partials
  of several warps and shared memory (``__shared__`` is ``static``: one copy, which the
  block's threads share) all take part. ``load(..., sync_block=1, warp=1)`` runs them with
  one thread per block and ``warpSize = 1`` instead. Threads of a block that meet
  different numbers of barriers raise RuntimeError.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile

import numpy as np

SHIM = r"""
#define GC_EMULATOR 1
#include <math.h>
#include <string.h>
#include <ucontext.h>
struct gc_dim3 { unsigned int x, y, z; };
static gc_dim3 threadIdx, blockIdx, blockDim, gridDim;
static int warpSize = 1;
static int gc_emu_error = 0;  // 1: barrier in a serial launch, 2: threads met unequal barriers
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
typedef _Float16 __half;
static inline float __half2float(__half h) { return (float)h; }
static inline __half __float2half_rn(float f) { return (__half)f; }
static inline __half __double2half(double d) { return (__half)d; }
static inline __half __int2half_rn(int i) { return (__half)i; }
static inline __half __ll2half_rn(long long i) { return (__half)i; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __dsqrt_rn(double a) { return sqrt(a); }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long i) {
  double f; memcpy(&f, &i, 8); return f;
}

// The threads of a block as coroutines: a barrier switches to the next thread; when every
// thread has reached it, the first one resumes. Kernels must meet barriers uniformly.
#define GC_EMU_MAX_THREADS 64
#define GC_EMU_STACK (256 * 1024)
static ucontext_t gc_emu_main, gc_emu_ctx[GC_EMU_MAX_THREADS];
static char gc_emu_stacks[GC_EMU_MAX_THREADS][GC_EMU_STACK];
static int gc_emu_coop = 0, gc_emu_cur = 0;
static long gc_emu_barriers[GC_EMU_MAX_THREADS];
static int gc_emu_done[GC_EMU_MAX_THREADS];
static unsigned long long gc_emu_lanes[GC_EMU_MAX_THREADS];  // shuffle values
static void* gc_emu_body;
static void (*gc_emu_thunk)(void*);

static inline void gc_emu_barrier() {
  if (!gc_emu_coop) {
    if (blockDim.x * blockDim.y * blockDim.z != 1) gc_emu_error = 1;
    return;
  }
  gc_emu_barriers[gc_emu_cur]++;
  swapcontext(&gc_emu_ctx[gc_emu_cur], &gc_emu_main);
}
static inline void __syncthreads() { gc_emu_barrier(); }
template <class T> static inline T gc_emu_shfl(T v, long src) {
  if (!gc_emu_coop) return v;  // one thread per block: warps of one lane
  static_assert(sizeof(T) <= 8, "shuffle of a wide type");
  unsigned long long bits = 0;
  memcpy(&bits, &v, sizeof(T));
  gc_emu_lanes[threadIdx.x] = bits;
  gc_emu_barrier();  // every lane has published its value
  T r = v;
  if (src >= 0 && src < (long)blockDim.x) memcpy(&r, &gc_emu_lanes[src], sizeof(T));
  gc_emu_barrier();  // every lane has read
  return r;
}
static inline long gc_emu_lane() { return (long)(threadIdx.x % warpSize); }
static inline long gc_emu_warp0() { return (long)threadIdx.x - gc_emu_lane(); }
template <class T> static inline T __shfl_sync(unsigned, T v, int src, int = 0) {
  return gc_emu_shfl(v, gc_emu_warp0() + (src % warpSize));
}
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int mask, int = 0) {
  long lane = gc_emu_lane() ^ mask;
  return gc_emu_shfl(v, lane < warpSize ? gc_emu_warp0() + lane : (long)threadIdx.x);
}
template <class T> static inline T __shfl_down_sync(unsigned, T v, unsigned d, int = 0) {
  long lane = gc_emu_lane() + d;
  return gc_emu_shfl(v, lane < warpSize ? gc_emu_warp0() + lane : (long)threadIdx.x);
}
template <class T> static inline T __shfl_up_sync(unsigned, T v, unsigned d, int = 0) {
  long lane = gc_emu_lane() - (long)d;
  return gc_emu_shfl(v, lane >= 0 ? gc_emu_warp0() + lane : (long)threadIdx.x);
}

static inline void gc_emu_begin(unsigned gx, unsigned bx, int warp) {
  gridDim = {gx, 1, 1}; blockDim = {bx, 1, 1}; warpSize = warp; gc_emu_error = 0;
}
static inline void gc_emu_at(unsigned b, unsigned t) {
  blockIdx = {b, 0, 0}; threadIdx = {t, 0, 0};
}
static void gc_emu_entry() {
  gc_emu_thunk(gc_emu_body);
  gc_emu_done[gc_emu_cur] = 1;
}
template <class F> static void gc_emu_call(void* f) { (*(F*)f)(); }
// one block of blockDim.x cooperative threads running f()
template <class F> static void gc_emu_block(unsigned b, F f) {
  unsigned n = blockDim.x;
  gc_emu_body = &f;
  gc_emu_thunk = &gc_emu_call<F>;
  gc_emu_coop = 1;
  for (unsigned t = 0; t < n; t++) {
    getcontext(&gc_emu_ctx[t]);
    gc_emu_ctx[t].uc_stack.ss_sp = gc_emu_stacks[t];
    gc_emu_ctx[t].uc_stack.ss_size = GC_EMU_STACK;
    gc_emu_ctx[t].uc_link = &gc_emu_main;
    makecontext(&gc_emu_ctx[t], gc_emu_entry, 0);
    gc_emu_done[t] = 0;
    gc_emu_barriers[t] = 0;
  }
  for (int left = (int)n; left > 0;) {
    left = 0;
    for (unsigned t = 0; t < n; t++) {
      if (gc_emu_done[t]) continue;
      gc_emu_cur = (int)t;
      gc_emu_at(b, t);
      swapcontext(&gc_emu_main, &gc_emu_ctx[t]);
      left += !gc_emu_done[t];
    }
  }
  for (unsigned t = 1; t < n; t++)
    if (gc_emu_barriers[t] != gc_emu_barriers[0]) gc_emu_error = 2;
  gc_emu_coop = 0;
}
extern "C" int gc_emu_error_flag() { return gc_emu_error; }
"""

_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
#: what marks a kernel that meets at barriers (the prelude's helper uses __syncthreads)
_SYNC = re.compile(r"__syncthreads|gc_block_reduce")

#: kernel parameter C type -> (ctypes type, numpy scalar type the caller must pass)
_POINTER = (ctypes.c_void_p, np.uint64)
_SCALARS = {"long long": (ctypes.c_longlong, np.int64), "int": (ctypes.c_int, np.int32),
            "float": (ctypes.c_float, np.float32), "double": (ctypes.c_double, np.float64),
            "unsigned long long": (ctypes.c_ulonglong, np.uint64),
            "unsigned int": (ctypes.c_uint, np.uint32)}

GRID, BLOCK = 3, 2
#: kernels with barriers: threads per block and lanes per warp (two warps of four: the
#: shuffles, the partials of several warps and the barriers all take part)
SYNC_BLOCK, WARP = 8, 4
#: g++ optimization: -O0 compiles a test's thousands of kernels 3x faster than -O1, and
#: the emulated launches are small
OPT = "-O0"
_CACHE_DIR = os.path.join(tempfile.gettempdir(), f"graphc-cuda-emulator-{os.getuid()}")
_loaded: dict[str, Module] = {}


def _param(decl: str) -> tuple[str, tuple]:
    """(name, (ctypes type, numpy type)) of one C parameter declaration."""
    decl = " ".join(decl.replace("__restrict__", " ").split())
    m = re.fullmatch(r"(.*?)(\w+)", decl)
    ctype, name = m.group(1).strip(), m.group(2)
    if ctype.endswith("*"):
        return name, _POINTER
    ctype = ctype.replace("const ", "").strip()
    if ctype not in _SCALARS:
        raise ValueError(f"kernel parameter of unsupported type: {decl!r}")
    return name, _SCALARS[ctype]


class Kernel:
    """One kernel of a loaded module: ``fn(grid, block, args)``."""

    def __init__(self, module: Module, name: str, params: list[tuple[str, tuple]], sync: bool):
        self.module, self.name, self.params, self.sync = module, name, params, sync
        self.fn = getattr(module.lib, f"gc_launch_{name}")
        self.fn.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int] + \
            [p[1][0] for p in params]
        self.fn.restype = None

    def __call__(self, grid, block, args: tuple) -> None:
        gx = _extent(grid, "grid")
        bx = _extent(block, "block")
        if gx < 1 or bx < 1:
            raise ValueError(f"{self.name}: empty launch grid={grid} block={block}")
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        values = []
        for a, (pname, (_, want)) in zip(args, self.params):
            if type(a) is not want:
                raise TypeError(f"{self.name}: argument {pname} must be a {want.__name__}, "
                                f"got {type(a).__name__} {a!r}")
            values.append(int(a) if want in (np.uint64, np.int64, np.int32, np.uint32)
                          else float(a))
        m = self.module
        g = min(gx, m.grid)
        if self.sync:
            b, warp = min(bx, m.sync_block), min(m.warp, bx, m.sync_block)
        else:
            b, warp = min(bx, m.block), 1
        self.fn(g, b, warp, *values)
        error = m.lib.gc_emu_error_flag()
        if error == 1:
            raise RuntimeError(f"{self.name}: a barrier in a serial launch of {b} threads")
        if error == 2:
            raise RuntimeError(f"{self.name}: the threads of a block met different numbers "
                               "of barriers")


def _extent(dims, what: str) -> int:
    if isinstance(dims, (int, np.integer)):
        return int(dims)
    dims = tuple(int(d) for d in dims)
    if any(d != 1 for d in dims[1:]):
        raise ValueError(f"the emulator runs 1-D launches only, got {what}={dims}")
    return dims[0]


class Module:
    """A compiled source: ``get_function(name)``, ``names`` (every kernel)."""

    def __init__(self, path: str, kernels: dict[str, tuple[list, bool]], grid: int,
                 block: int, sync_block: int, warp: int):
        self.path = path
        self.lib = ctypes.CDLL(path)
        self.lib.gc_emu_error_flag.restype = ctypes.c_int
        self.grid, self.block = grid, block
        self.sync_block, self.warp = sync_block, warp
        self._kernels = kernels
        self._functions: dict[str, Kernel] = {}
        self.names = sorted(kernels)

    def get_function(self, name: str) -> Kernel:
        fn = self._functions.get(name)
        if fn is None:
            if name not in self._kernels:
                raise KeyError(f"no kernel {name!r} in the module")
            params, sync = self._kernels[name]
            fn = self._functions[name] = Kernel(self, name, params, sync)
        return fn


def _kernels(source: str) -> dict[str, tuple[list, bool]]:
    """name -> (parameters, whether it meets at barriers), from the source text."""
    found = list(_KERNEL.finditer(source))
    out = {}
    for k, m in enumerate(found):
        end = found[k + 1].start() if k + 1 < len(found) else len(source)
        params = [_param(p) for p in m.group(2).split(",") if p.strip()]
        out[m.group(1)] = (params, bool(_SYNC.search(source, m.end(), end)))
    return out


def load(source: str, grid: int = GRID, block: int = BLOCK, sync_block: int = SYNC_BLOCK,
         warp: int = WARP) -> Module:
    """The emulated module of CUDA C ``source`` (compiled once per source). Launches run
    at most ``grid`` blocks of ``block`` serial threads, or for kernels with barriers
    ``sync_block`` cooperative threads in warps of ``warp`` lanes (1 and 1: serial)."""
    if not 1 <= sync_block <= 64 or sync_block % warp:
        raise ValueError("sync_block: 1 to 64 threads, whole warps")
    kernels = _kernels(source)
    full = source + "\n" + _trampoline_source(kernels)
    key = hashlib.sha256((SHIM + "\0" + full).encode()).hexdigest()[:32]
    lib = _loaded.get(key)
    if lib is None:
        lib = _loaded[key] = Module(_compile(full, key), kernels, grid, block, sync_block,
                                    warp)
    elif (lib.grid, lib.block, lib.sync_block, lib.warp) != (grid, block, sync_block, warp):
        lib = Module(lib.path, kernels, grid, block, sync_block, warp)
    return lib


def _trampoline_source(kernels: dict) -> str:
    ctype = {ctypes.c_void_p: "void*", ctypes.c_longlong: "long long", ctypes.c_int: "int",
             ctypes.c_float: "float", ctypes.c_double: "double",
             ctypes.c_ulonglong: "unsigned long long", ctypes.c_uint: "unsigned int"}
    lines = ["template <int I, class R, class... A> struct gc_param;",
             "template <class R, class A0, class... A> struct gc_param<0, R, A0, A...> "
             "{ typedef A0 type; };",
             "template <int I, class R, class A0, class... A> struct gc_param<I, R, A0, A...> "
             "{ typedef typename gc_param<I - 1, R, A...>::type type; };",
             "template <int I, class R, class... A> "
             "typename gc_param<I, R, A...>::type gc_param_of(R (*)(A...));"]
    for name, (params, sync) in kernels.items():
        decls = ", ".join(f"{ctype[t[0]]} {p}" for p, t in params)
        args = ", ".join(f"(decltype(gc_param_of<{i}>(&{name})))({p})" if t is _POINTER
                         else p for i, (p, t) in enumerate(params))
        if sync:  # cooperative threads, unless the block has one
            run = (f"  for (unsigned b = 0; b < gc_g; b++) {{\n"
                   f"    if (gc_b == 1) {{ gc_emu_at(b, 0); {name}({args}); }}\n"
                   f"    else gc_emu_block(b, [&]() {{ {name}({args}); }});\n  }}\n")
        else:
            run = (f"  for (unsigned b = 0; b < gc_g; b++) for (unsigned t = 0; t < gc_b; t++) "
                   f"{{\n    gc_emu_at(b, t); {name}({args});\n  }}\n")
        lines.append(
            f'extern "C" void gc_launch_{name}(unsigned gc_g, unsigned gc_b, int gc_w'
            f'{", " if decls else ""}{decls}) {{\n'
            f"  gc_emu_begin(gc_g, gc_b, gc_w);\n{run}}}")
    return "\n".join(lines)


def _compile(source: str, key: str) -> str:
    os.makedirs(_CACHE_DIR, exist_ok=True)
    path = os.path.join(_CACHE_DIR, key + ".so")
    if os.path.exists(path):
        return path
    fd, src = tempfile.mkstemp(suffix=".cu", dir=_CACHE_DIR)
    shim = os.path.join(_CACHE_DIR, f"shim-{hashlib.sha256(SHIM.encode()).hexdigest()[:16]}.h")
    with os.fdopen(fd, "w") as f:
        f.write(source)
    if not os.path.exists(shim):
        tmp = shim + f".{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(SHIM)
        os.replace(tmp, shim)
    tmp = path + f".{os.getpid()}.tmp"
    cmd = ["g++", "-std=c++17", OPT, "-shared", "-fPIC", "-ffp-contract=off", "-w",
           "-x", "c++", "-include", shim, src, "-o", tmp]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("g++ failed on the emulated CUDA source:\n" +
                               "\n".join(proc.stderr.splitlines()[:30]))
        os.replace(tmp, path)
    finally:
        os.unlink(src)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
