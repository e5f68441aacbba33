"""CUDA C for a graph's kernels, rendered from the same specs as the LLVM backend.

`ModuleSource` collects every kernel of one graph into ONE translation unit (a prelude of
small ``gc_*`` helpers, then ``extern "C" __global__`` kernels), compiled once per graph
(NVRTC at run time, ``nvcc --ptx`` in the tests, `compiler`). What a kernel computes comes
from `graphc.backends.kernel_specs` (`KernelSpec` for elementwise kernels, `RowSpec` for
row-wise ones); its math is rendered primitive by primitive from the ops'
`graphc.ops.scalar` expressions through one table (`_Emitter`), so no op name appears
here. Kernels with equal code (same expressions, dtypes, variant and rank) are emitted
once and shared, as in `graphc.backends.llvm.codegen`.

Entry points (every size is a ``long long``, every pointer a device address; all kernels
are 1-D launches, and every loop is grid-stride, so any grid computes the same result):

- ``NAME_flat(in0.., out0.., n)``: one thread per flat index (``in[0]`` for one-element
  inputs, hoisted out of the loop with everything else that does not vary per element).
- ``NAME_flat4(in0.., out0.., n)``: the same with each thread loading and storing
  16 bytes per full-size pointer (``V = 16 / widest item`` elements: float4, double2,
  eight halves...) as an aligned struct (`gc_vec`), the last ``n % V`` elements by
  scalar code. Only valid when every full-size input and every output is 16-byte aligned.
- ``NAME_strided(in0.., out0.., table)``: any input layout, the table being
  `graphc.backends.llvm.program.strides_table`'s (the domain's dims, then per input its
  element strides, 0 on broadcast axes); outputs contiguous; the rank is a constant of
  the function, so coordinates are unrolled divisions.
- ``NAME_rows(in0.., out0.., rows, n)``: row-wise kernels (`reduce_codegen`'s
  conventions: inputs of kind full / col / row / scalar). One block per row (grid-stride
  over rows), threads strided over the row; each level of the chain of reductions
  (softmax: max, then sum of ``exp(x - max)``) is folded per thread, combined across the
  block (`gc_block_reduce`: warp shuffles, then one partial per warp through shared
  memory, folded by every thread in the same order, so all threads hold the same bits)
  and finished before the next level; then a pass writes the full-size outputs, and
  thread 0 the per-row ones. ``blockDim.x`` must be a multiple of ``warpSize`` (at most
  1024); shared memory is static (no dynamic size to pass). The code reads ``warpSize``
  and ``blockDim.x``, never a literal warp width, so the CPU emulator runs it with one
  thread per block and ``warpSize = 1``.
- ``NAME_cols(in, out, outer, m, inner)``: a single reduction over the middle axis of a
  contiguous (outer, m, inner) input, one thread per output, folding in order.

Numerics follow numpy, as the LLVM backend's (see its codegen docstring): NaN-propagating
max/min with numpy's tie rules (second operand, first for float16), float -> int casts
truncating with NaN and out-of-range values giving INT_MIN, float -> bool as ``x != 0``,
shifts by the width or more giving 0, ``shr`` a logical shift of the low 32 bits, integer
``add``/``mul``/``neg`` wrapping (rendered in unsigned arithmetic: signed overflow is
undefined in C), integer ``pow`` with a negative exponent giving 0, ``rint`` half to even.
Float ``+ - * /`` and ``sqrt`` are the ``__fadd_rn``-style intrinsics, which the compiler
never contracts into FMAs nor approximates, so results do not depend on ``--fmad`` or
``--use_fast_math``; transcendentals are the accurate CUDA math functions (``expf``,
``tanhf``, ``erff``...). bool is ``unsigned char`` in memory; float16 is ``__half`` in
memory and a float in registers, rounded to half after each primitive (numpy's float16
loops compute in float and round each result; doing one primitive in float and rounding
once is exact for + - * / sqrt). Row reductions fold float32/float64 from the declared
identity in the reduction's dtype (``mean`` divides by n); their summation order is a
tree (within float tolerance of numpy's pairwise sums), and the sign of a zero max/min
among zeros of both signs is unspecified.

Whatever cannot be rendered raises `kernel_specs.Unsupported`, and the module is left as
it was; the runtime runs that node with the reference interpreter.
"""

from __future__ import annotations

import math

import numpy as np

from ... import dtypes as dt
from ...ops import scalar as S
from ..kernel_specs import FLOATS, KernelSpec, RowSpec, Unsupported, code_key

#: C type of a value in registers / in memory
REG = {"bool": "bool", "int32": "int", "int64": "long long", "float16": "float",
       "float32": "float", "float64": "double"}
MEM = {**REG, "bool": "unsigned char", "float16": "__half"}
ITEMSIZE = {"bool": 1, "int32": 4, "int64": 8, "float16": 2, "float32": 4, "float64": 8}
#: bytes a thread of a ``flat4`` kernel loads or stores per full-size pointer
VECTOR_BYTES = 16

PRELUDE = r"""// graphc: generated CUDA kernels (graphc/backends/cuda/codegen.py)
#ifndef GC_EMULATOR
#include <cuda_fp16.h>
#endif
// blocks of at most 1024 threads, warps of at least 32: one partial per warp
#define GC_MAX_WARPS 32
#define GC_DEVICE __device__ __forceinline__

typedef long long gc_i64;
typedef unsigned long long gc_u64;

// float16 values live in floats, rounded to half after every primitive
GC_DEVICE float gc_h(float x) { return __half2float(__float2half_rn(x)); }
GC_DEVICE float gc_hd(double x) { return __half2float(__double2half(x)); }
GC_DEVICE float gc_hi(int x) { return __half2float(__int2half_rn(x)); }
GC_DEVICE float gc_hi(long long x) { return __half2float(__ll2half_rn(x)); }

// float arithmetic that is never contracted into an FMA nor approximated
GC_DEVICE float gc_add(float a, float b) { return __fadd_rn(a, b); }
GC_DEVICE double gc_add(double a, double b) { return __dadd_rn(a, b); }
GC_DEVICE float gc_sub(float a, float b) { return __fsub_rn(a, b); }
GC_DEVICE double gc_sub(double a, double b) { return __dsub_rn(a, b); }
GC_DEVICE float gc_mul(float a, float b) { return __fmul_rn(a, b); }
GC_DEVICE double gc_mul(double a, double b) { return __dmul_rn(a, b); }
GC_DEVICE float gc_div(float a, float b) { return __fdiv_rn(a, b); }
GC_DEVICE double gc_div(double a, double b) { return __ddiv_rn(a, b); }
GC_DEVICE float gc_sqrt(float a) { return __fsqrt_rn(a); }
GC_DEVICE double gc_sqrt(double a) { return __dsqrt_rn(a); }

// numpy's maximum/minimum: NaN in a wins, else (a op b ? a : b), so NaN in b wins too;
// ties give b (float16: a)
template <class T> GC_DEVICE T gc_fmax(T a, T b) { return (a != a || a > b) ? a : b; }
template <class T> GC_DEVICE T gc_fmin(T a, T b) { return (a != a || a < b) ? a : b; }
template <class T> GC_DEVICE T gc_fmax_h(T a, T b) { return (a != a || a >= b) ? a : b; }
template <class T> GC_DEVICE T gc_fmin_h(T a, T b) { return (a != a || a <= b) ? a : b; }

// integers wrap around: unsigned arithmetic
GC_DEVICE int gc_addi(int a, int b) { return (int)((unsigned)a + (unsigned)b); }
GC_DEVICE gc_i64 gc_addi(gc_i64 a, gc_i64 b) { return (gc_i64)((gc_u64)a + (gc_u64)b); }
GC_DEVICE int gc_subi(int a, int b) { return (int)((unsigned)a - (unsigned)b); }
GC_DEVICE gc_i64 gc_subi(gc_i64 a, gc_i64 b) { return (gc_i64)((gc_u64)a - (gc_u64)b); }
GC_DEVICE int gc_muli(int a, int b) { return (int)((unsigned)a * (unsigned)b); }
GC_DEVICE gc_i64 gc_muli(gc_i64 a, gc_i64 b) { return (gc_i64)((gc_u64)a * (gc_u64)b); }
GC_DEVICE int gc_negi(int a) { return (int)(0u - (unsigned)a); }
GC_DEVICE gc_i64 gc_negi(gc_i64 a) { return (gc_i64)(0ull - (gc_u64)a); }
GC_DEVICE int gc_absi(int a) { return a < 0 ? gc_negi(a) : a; }
GC_DEVICE gc_i64 gc_absi(gc_i64 a) { return a < 0 ? gc_negi(a) : a; }
// square and multiply; a negative exponent gives 0
GC_DEVICE int gc_ipow(int x, int n) {
  if (n < 0) return 0;
  unsigned acc = 1u, b = (unsigned)x, k = (unsigned)n;
  while (k) { if (k & 1u) acc *= b; b *= b; k >>= 1; }
  return (int)acc;
}
GC_DEVICE gc_i64 gc_ipow(gc_i64 x, gc_i64 n) {
  if (n < 0) return 0;
  gc_u64 acc = 1ull, b = (gc_u64)x, k = (gc_u64)n;
  while (k) { if (k & 1ull) acc *= b; b *= b; k >>= 1; }
  return (gc_i64)acc;
}
// shifts by the width or more give 0; shr is logical, of the low 32 bits
GC_DEVICE int gc_shl(int a, int s) {
  return (unsigned)s >= 32u ? 0 : (int)((unsigned)a << (unsigned)s);
}
GC_DEVICE gc_i64 gc_shl(gc_i64 a, gc_i64 s) {
  return (gc_u64)s >= 64ull ? 0ll : (gc_i64)((gc_u64)a << (gc_u64)s);
}
GC_DEVICE int gc_shr(int a, int s) {
  return (unsigned)s >= 32u ? 0 : (int)((unsigned)a >> (unsigned)s);
}
GC_DEVICE gc_i64 gc_shr(gc_i64 a, gc_i64 s) {
  return (gc_u64)s >= 64ull ? 0ll : (gc_i64)(((gc_u64)a & 0xFFFFFFFFull) >> (gc_u64)s);
}
// float -> int truncates; NaN and out-of-range values give INT_MIN (x86 numpy)
GC_DEVICE int gc_f2i32(double x) {
  return (x >= -2147483648.0 && x < 2147483648.0) ? (int)x : (int)0x80000000u;
}
GC_DEVICE gc_i64 gc_f2i64(double x) {
  return (x >= -9223372036854775808.0 && x < 9223372036854775808.0)
      ? (gc_i64)x : (gc_i64)0x8000000000000000ull;
}

// flat4 kernels: V items of T loaded or stored as one aligned access
template <class T, int V> struct alignas(sizeof(T) * V) gc_vec { T v[V]; };

// block reductions: combiners, and the fold of one value per thread into every thread
#define GC_COMBINER(NAME, F) struct NAME { \
  template <class T> GC_DEVICE T operator()(T a, T b) const { return F(a, b); } };
GC_COMBINER(gc_op_add, gc_add)
GC_COMBINER(gc_op_mul, gc_mul)
GC_COMBINER(gc_op_max, gc_fmax)
GC_COMBINER(gc_op_min, gc_fmin)
// blockDim.x a multiple of warpSize; sh holds GC_MAX_WARPS partials; every thread must call
template <class T, class Op> GC_DEVICE T gc_block_reduce(T v, T* sh, Op op) {
  for (int off = warpSize / 2; off > 0; off /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  const int lane = (int)(threadIdx.x % warpSize), warp = (int)(threadIdx.x / warpSize);
  const int warps = (int)((blockDim.x + warpSize - 1) / warpSize);
  __syncthreads();  // the previous reduction's partials are read
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  T r = sh[0];
  for (int w = 1; w < warps; w++) r = op(r, sh[w]);
  return r;
}

#define GC_TID ((long long)blockIdx.x * blockDim.x + threadIdx.x)
#define GC_STRIDE ((long long)gridDim.x * blockDim.x)
"""


# -- rendering scalar expressions --------------------------------------------------------

def _float_literal(x: float, dtype: str) -> str:
    reg = REG[dtype]
    if math.isnan(x):
        return "__int_as_float(0x7fc00000)" if reg == "float" else \
            "__longlong_as_double(0x7ff8000000000000ll)"
    if math.isinf(x):
        if reg == "float":
            return f"__int_as_float({'(int)0xff800000u' if x < 0 else '0x7f800000'})"
        bits = "(long long)0xfff0000000000000ull" if x < 0 else "0x7ff0000000000000ll"
        return f"__longlong_as_double({bits})"
    text = float.hex(x) + ("f" if reg == "float" else "")
    return f"({text})" if text.startswith("-") else text


def const_literal(value, dtype: str) -> str:
    """A C literal of ``value`` as ``dtype`` (numpy's conversion), in register type."""
    if dtype == "bool":
        return "true" if bool(value) else "false"
    if dt.is_float(dtype):
        return _float_literal(float(np.asarray(value).astype(dt.to_numpy(dtype))), dtype)
    bits = 32 if dtype == "int32" else 64
    v = int(value) & ((1 << bits) - 1)
    v = v - (1 << bits) if v >> (bits - 1) else v
    if v == -(1 << (bits - 1)):
        return "(-2147483647 - 1)" if bits == 32 else "(-9223372036854775807ll - 1)"
    text = str(v) + ("" if bits == 32 else "ll")
    return f"({text})" if v < 0 else text


def convert(c: str, src: str, dst: str) -> str:
    """C expression of register value ``c`` of ``src`` as ``dst`` (numpy astype)."""
    if src == dst:
        return c
    if dst == "bool":
        return f"({c} != 0)"
    if src == "bool":
        if dt.is_float(dst):
            return f"({c} ? 1.0{'f' if REG[dst] == 'float' else ''} : 0.0" \
                   f"{'f' if REG[dst] == 'float' else ''})"
        return f"(({REG[dst]}){c})"
    if dt.is_float(src) and dt.is_float(dst):
        if dst == "float16":
            return f"gc_h({c})" if src == "float32" else f"gc_hd({c})"
        if src == "float16" and dst == "float32":
            return c
        return f"(({REG[dst]}){c})"
    if dt.is_float(dst):
        return f"gc_hi({c})" if dst == "float16" else f"(({REG[dst]}){c})"
    if dt.is_float(src):
        return f"gc_f2i{'32' if dst == 'int32' else '64'}((double){c})"
    return f"(({REG[dst]}){c})"


def load(c: str, dtype: str) -> str:
    """A register value from memory element ``c``."""
    if dtype == "bool":
        return f"({c} != 0)"
    if dtype == "float16":
        return f"__half2float({c})"
    return c


def store(c: str, dtype: str) -> str:
    """A memory element from register value ``c``."""
    if dtype == "bool":
        return f"(unsigned char){c}"
    if dtype == "float16":
        return f"__float2half_rn({c})"
    return c


_TRANSCENDENTAL = ("exp", "log", "log1p", "expm1", "sin", "cos", "tanh", "erf")
_COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def _round(c: str, dtype: str) -> str:
    return f"gc_h({c})" if dtype == "float16" else c


def _math(name: str, dtype: str, *xs: str) -> str:
    """A libm-style call in the dtype's compute type (float16: float, then rounded)."""
    fn = name + ("" if dtype == "float64" else "f")
    return _round(f"{fn}({', '.join(xs)})", dtype)


def render(e: S.Expr, a: list[str]) -> str:
    """C expression of primitive ``e`` over its rendered arguments ``a`` (register values
    of the arguments' dtypes); `Unsupported` for what has no rendering."""
    fn, t = e.fn, e.dtype
    if fn == "cast":
        return convert(a[0], e.args[0].dtype, t)
    if fn in _COMPARE:
        common = dt.promote(*(x.dtype for x in e.args))
        x, y = (convert(c, x.dtype, common) for c, x in zip(a, e.args))
        return f"({x} {_COMPARE[fn]} {y})"
    if fn == "select":
        c = convert(a[0], e.args[0].dtype, "bool")
        x, y = (convert(c2, x.dtype, t) for c2, x in zip(a[1:], e.args[1:]))
        return f"({c} ? {x} : {y})"
    if fn == "not":
        return f"(!{convert(a[0], e.args[0].dtype, 'bool')})"
    xs = [convert(c, x.dtype, t) for c, x in zip(a, e.args)]
    is_float = dt.is_float(t)
    if fn in ("add", "sub", "mul"):
        if is_float:
            return _round(f"gc_{fn}({xs[0]}, {xs[1]})", t)
        if t == "bool":
            if fn == "sub":
                raise Unsupported("sub on bool")
            return f"({xs[0]} {'||' if fn == 'add' else '&&'} {xs[1]})"
        return f"gc_{fn}i({xs[0]}, {xs[1]})"
    if fn == "div":
        if not is_float:
            raise Unsupported(f"div of {t}")
        return _round(f"gc_div({xs[0]}, {xs[1]})", t)
    if fn in ("max", "min"):
        if is_float:
            return f"gc_f{fn}{'_h' if t == 'float16' else ''}({xs[0]}, {xs[1]})"
        op = ">" if fn == "max" else "<"
        return f"({xs[0]} {op} {xs[1]} ? {xs[0]} : {xs[1]})"
    if fn in ("and", "or", "xor"):
        if is_float:
            raise Unsupported(f"{fn} on {t}")
        if t == "bool":
            op = {"and": "&&", "or": "||", "xor": "!="}[fn]
        else:
            op = {"and": "&", "or": "|", "xor": "^"}[fn]
        return f"({xs[0]} {op} {xs[1]})"
    if fn in ("shr", "shl"):
        if t not in dt.INTS:
            raise Unsupported(f"{fn} on {t}")
        return f"gc_{fn}({xs[0]}, {xs[1]})"
    if fn == "neg":
        if is_float:
            return f"(-{xs[0]})"
        if t == "bool":
            raise Unsupported("neg on bool")
        return f"gc_negi({xs[0]})"
    if fn == "abs":
        if is_float:
            return f"fabs{'' if t == 'float64' else 'f'}({xs[0]})"
        return xs[0] if t == "bool" else f"gc_absi({xs[0]})"
    if fn in ("floor", "ceil", "rint"):
        return _math(fn, t, xs[0]) if is_float else xs[0]
    if fn == "sqrt":
        if not is_float:
            raise Unsupported(f"sqrt of {t}")
        return _round(f"gc_sqrt({xs[0]})", t)
    if fn in _TRANSCENDENTAL:
        if not is_float:
            raise Unsupported(f"{fn} of {t}")
        return _math(fn, t, xs[0])
    if fn == "pow":
        if is_float:
            return _math("pow", t, *xs)
        if t == "bool":
            raise Unsupported("pow on bool")
        return f"gc_ipow({xs[0]}, {xs[1]})"
    raise Unsupported(f"scalar primitive {fn!r}")


class _Scope:
    """The statements of one C scope (a kernel's top, a row, an element), nested.

    Values are rendered once per scope chain, memoized by expression identity, each in the
    OUTERMOST scope where everything it reads is available (`Kernel.level`): a one-element
    input, a constant and whatever depends only on them are computed once per thread, a
    per-row value once per row. Lines emitted into an outer scope while an inner one is
    being rendered land before the inner loop, which the caller appends afterwards."""

    def __init__(self, kernel: _Kernel, parent: _Scope | None = None):
        self.kernel, self.parent = kernel, parent
        self.level = 0 if parent is None else parent.level + 1
        self.lines: list[str] = []
        self.memo: dict[int, str] = {}
        #: input j -> C expression of its memory element here (None: not readable here)
        self.read: dict[int, str] = {}
        self.index: str | None = None
        self.index_used = False

    def find(self, e: S.Expr) -> str | None:
        s = self
        while s is not None:
            c = s.memo.get(id(e))
            if c is not None:
                return c
            s = s.parent
        return None

    def at(self, level: int) -> _Scope:
        s = self
        while s.level > level:
            s = s.parent
        return s

    def value(self, root: S.Expr) -> str:
        """The C name of ``root``'s value here (statements emitted as needed)."""
        found = self.find(root)
        if found is not None:
            return found
        stack = [(root, False)]
        while stack:
            e, ready = stack.pop()
            if self.find(e) is not None:
                continue
            if not ready and e.args:
                stack.append((e, True))
                stack.extend((a, False) for a in e.args if self.find(a) is None)
                continue
            level = self.kernel.level(e)
            if level > self.level:
                raise Unsupported(f"{e!r} cannot be computed at this level of the kernel")
            self.at(level).emit(e)
        return self.find(root)

    def emit(self, e: S.Expr) -> None:
        if e.fn == "arg":
            j = e.value
            src = self.kernel.in_types[j]
            where = self.read.get(j) if self.level == self.kernel.arg_level(j) else None
            if where is None:
                raise Unsupported(f"input {j} cannot be read at this level of the kernel")
            c = convert(load(where, src), src, e.dtype)
        elif e.fn == "const":
            self.memo[id(e)] = const_literal(e.value, e.dtype)
            return
        elif e.fn == "index":
            if self.index is None:
                raise Unsupported("the flat index in this kernel")
            c = convert(self.index, "int64", e.dtype)
            self.index_used = True
        elif e.fn == "reduced":
            raise Unsupported("a reduction read before it is computed")
        else:
            c = render(e, [self.find(a) for a in e.args])
        name = self.kernel.fresh()
        self.lines.append(f"const {REG[e.dtype]} {name} = {c};")
        self.memo[id(e)] = name


class _Kernel:
    """Per-kernel rendering state: input dtypes, the level each input is read at, names."""

    def __init__(self, in_types: list[str], arg_levels: list[int], index_level: int | None):
        self.in_types, self.arg_levels, self.index_level = in_types, arg_levels, index_level
        self.count = 0
        self.levels: dict[int, int] = {}
        #: id(reduced leaf) -> level where its value is available
        self.reduced: dict[int, int] = {}

    def fresh(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def arg_level(self, j: int) -> int:
        return self.arg_levels[j]

    def level(self, e: S.Expr) -> int:
        """The outermost scope level where ``e`` can be computed (its arguments' levels
        are known: `_Scope.value` visits arguments first)."""
        lv = self.levels.get(id(e))
        if lv is not None:
            return lv
        if e.fn == "arg":
            lv = self.arg_levels[e.value]
        elif e.fn == "const":
            lv = 0
        elif e.fn == "index":
            if self.index_level is None:
                raise Unsupported("the flat index in this kernel")
            lv = self.index_level
        elif e.fn == "reduced":
            if id(e) not in self.reduced:
                raise Unsupported("a reduction read before it is computed")
            lv = self.reduced[id(e)]
        else:
            lv = max((self.level(a) for a in e.args), default=0)
        self.levels[id(e)] = lv
        return lv


def _indent(lines: list[str], n: int = 1) -> list[str]:
    pad = "  " * n
    return [pad + line if line else line for line in lines]


_COMBINE = {"add": "gc_op_add", "mul": "gc_op_mul", "max": "gc_op_max", "min": "gc_op_min"}


# -- the module ---------------------------------------------------------------------------

class ModuleSource:
    """One CUDA C translation unit holding every kernel of a graph."""

    def __init__(self, name: str = "graphc"):
        self.name = name
        self.kernels: list[str] = []                 # C text per function
        self.functions: dict[tuple, str] = {}        # code key -> function name
        self.names: set[str] = set()

    # -- elementwise ------------------------------------------------------------------
    def add_elementwise(self, spec: KernelSpec, strided: bool = True) -> dict[str, str]:
        """Emit ``spec``'s variants; returns {variant: function name}: ``flat`` and
        ``flat4`` when ``spec.flat``, and ``strided`` when the domain has a rank (for every
        kernel unless ``strided=False``: a view is read in place instead of copied). On
        `Unsupported` nothing is added."""
        if spec.size == 0:
            return {}  # nothing to compute: the runtime only allocates the outputs
        if not spec.flat and not spec.domain:
            raise Unsupported("a 0-d kernel with inputs of several elements")
        wanted = (["flat", "flat4"] if spec.flat else []) + \
            (["strided"] if spec.domain and (strided or not spec.flat) else [])
        rendered = []
        for variant in wanted:
            key = (variant, len(spec.domain) if variant == "strided" else None,
                   code_key(spec))
            if key in self.functions:
                rendered.append((variant, key, self.functions[key], None))
            else:
                name = self._fresh_name(f"{spec.name}_{variant}")
                text = getattr(self, "_" + variant)(spec, name)
                rendered.append((variant, key, name, text))
        names = {}
        for variant, key, name, text in rendered:  # all rendered: now add them
            if text is not None:
                self.functions[key] = name
                self.names.add(name)
                self.kernels.append(text)
            names[variant] = name
        return names

    def add_strided(self, spec: KernelSpec) -> str:
        """The strided variant of ``spec`` alone (e.g. for a flat kernel added with
        ``strided=False`` whose inputs turn out to be views)."""
        if not spec.domain:
            raise Unsupported("a 0-d kernel has no strided variant")
        key = ("strided", len(spec.domain), code_key(spec))
        if key not in self.functions:
            name = self._fresh_name(f"{spec.name}_strided")
            text = self._strided(spec, name)
            self.functions[key] = name
            self.names.add(name)
            self.kernels.append(text)
        return self.functions[key]

    def _fresh_name(self, base: str) -> str:
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        return name

    @staticmethod
    def _params(spec: KernelSpec) -> list[str]:
        return [f"const {MEM[t.dtype]}* __restrict__ in{j}"
                for j, t in enumerate(spec.in_types)] + \
               [f"{MEM[t.dtype]}* __restrict__ out{j}" for j, t in enumerate(spec.out_types)]

    @staticmethod
    def _signature(name: str, params: list[str]) -> str:
        return f'extern "C" __global__ void {name}({", ".join(params)})'

    def _element(self, spec: KernelSpec, scope: _Scope, out_at: str) -> list[str]:
        """Render the outputs in element scope ``scope``: its lines plus the stores, each
        output written at the C expression ``out_at(j)``."""
        vals = [scope.value(e) for e in spec.exprs]
        lines = list(scope.lines)
        for j, (v, t, e) in enumerate(zip(vals, spec.out_types, spec.exprs)):
            lines.append(f"{out_at.format(j=j)} = {store(convert(v, e.dtype, t.dtype), t.dtype)};")
        return lines

    def _flat(self, spec: KernelSpec, name: str) -> str:
        kernel = _Kernel([t.dtype for t in spec.in_types],
                         [0 if t.size == 1 else 1 for t in spec.in_types], 1)
        top = _Scope(kernel)
        top.read = {j: f"in{j}[0]" for j, t in enumerate(spec.in_types) if t.size == 1}
        elem = _Scope(kernel, top)
        elem.read = {j: f"in{j}[i]" for j, t in enumerate(spec.in_types) if t.size != 1}
        elem.index = "i"
        body = self._element(spec, elem, "out{j}[i]")
        lines = [self._signature(name, self._params(spec) + ["long long n"]) + " {",
                 *_indent(top.lines),
                 "  for (long long i = GC_TID; i < n; i += GC_STRIDE) {",
                 *_indent(body, 2), "  }", "}"]
        return "\n".join(lines)

    def _flat4(self, spec: KernelSpec, name: str) -> str:
        full = [j for j, t in enumerate(spec.in_types) if t.size != 1]
        widest = max([ITEMSIZE[spec.in_types[j].dtype] for j in full] +
                     [ITEMSIZE[t.dtype] for t in spec.out_types])
        v = VECTOR_BYTES // widest
        kernel = _Kernel([t.dtype for t in spec.in_types],
                         [0 if t.size == 1 else 1 for t in spec.in_types], 1)
        top = _Scope(kernel)
        top.read = {j: f"in{j}[0]" for j, t in enumerate(spec.in_types) if t.size == 1}
        vec = _Scope(kernel, top)
        vec.read = {j: f"x{j}.v[k]" for j in full}
        vec.index = "i"
        vec_body = self._element(spec, vec, "y{j}.v[k]")
        tail = _Scope(kernel, top)
        tail.read = {j: f"in{j}[i]" for j in full}
        tail.index = "i"
        tail_body = self._element(spec, tail, "out{j}[i]")
        loads = [f"const gc_vec<{MEM[spec.in_types[j].dtype]}, {v}> x{j} = "
                 f"*reinterpret_cast<const gc_vec<{MEM[spec.in_types[j].dtype]}, {v}>*>"
                 f"(in{j} + c * {v});" for j in full]
        outs = [f"gc_vec<{MEM[t.dtype]}, {v}> y{j};" for j, t in enumerate(spec.out_types)]
        stores = [f"*reinterpret_cast<gc_vec<{MEM[t.dtype]}, {v}>*>(out{j} + c * {v}) = y{j};"
                  for j, t in enumerate(spec.out_types)]
        lines = [self._signature(name, self._params(spec) + ["long long n"]) + " {",
                 *_indent(top.lines),
                 f"  const long long nv = n / {v};",
                 "  for (long long c = GC_TID; c < nv; c += GC_STRIDE) {",
                 *_indent(loads + outs, 2),
                 "    #pragma unroll",
                 f"    for (int k = 0; k < {v}; k++) {{",
                 *([f"      const long long i = c * {v} + k;"] if vec.index_used else []),
                 *_indent(vec_body, 3), "    }",
                 *_indent(stores, 2), "  }",
                 f"  for (long long i = nv * {v} + GC_TID; i < n; i += GC_STRIDE) {{",
                 *_indent(tail_body, 2), "  }", "}"]
        return "\n".join(lines)

    def _strided(self, spec: KernelSpec, name: str) -> str:
        ndim = len(spec.domain)
        kernel = _Kernel([t.dtype for t in spec.in_types],
                         [0 if t.size == 1 else 1 for t in spec.in_types], 1)
        top = _Scope(kernel)
        top.read = {j: f"in{j}[0]" for j, t in enumerate(spec.in_types) if t.size == 1}
        elem = _Scope(kernel, top)
        strided = [j for j, t in enumerate(spec.in_types) if t.size != 1]
        elem.read = {j: f"in{j}[o{j}]" for j in strided}
        elem.index = "i"
        body = self._element(spec, elem, "out{j}[i]")
        head = [f"const long long d{k} = table[{k}];" for k in range(ndim)]
        head += [f"const long long s{j}_{k} = table[{ndim * (1 + j) + k}];"
                 for j in strided for k in range(ndim)]
        head.append("const long long n = " + " * ".join(f"d{k}" for k in range(ndim)) + ";")
        coords = ["long long q = i;"] if strided else []
        for k in range(ndim - 1, 0, -1) if strided else ():
            coords.append(f"const long long c{k} = q % d{k}; q /= d{k};")
        coords += ["const long long c0 = q;"] if strided else []
        coords += [f"const long long o{j} = " + " + ".join(f"c{k} * s{j}_{k}" for k in
                                                           range(ndim)) + ";"
                   for j in strided]
        lines = [self._signature(name, self._params(spec) +
                                 ["const long long* __restrict__ table"]) + " {",
                 *_indent(head + top.lines),
                 "  for (long long i = GC_TID; i < n; i += GC_STRIDE) {",
                 *_indent(coords + body, 2), "  }", "}"]
        return "\n".join(lines)

    # -- row-wise kernels -------------------------------------------------------------
    def add_rows(self, spec: RowSpec) -> str:
        """``NAME_rows(ins.., outs.., rows, n)`` (see the module docstring)."""
        key = ("rows", spec.key())
        if key not in self.functions:
            name = self._fresh_name(spec.name + "_rows")
            text = self._rows(spec, name)
            self.functions[key] = name
            self.names.add(name)
            self.kernels.append(text)
        return self.functions[key]

    def add_cols(self, spec: RowSpec) -> str:
        """``NAME_cols(in, out, outer, m, inner)`` for a single reduction's spec."""
        key = ("cols", spec.key())
        if key not in self.functions:
            name = self._fresh_name(spec.name + "_cols")
            text = self._cols(spec, name)
            self.functions[key] = name
            self.names.add(name)
            self.kernels.append(text)
        return self.functions[key]

    @staticmethod
    def _row_params(spec: RowSpec) -> list[str]:
        return [f"const {MEM[t.dtype]}* __restrict__ in{j}"
                for j, t in enumerate(spec.in_types)] + \
               [f"{MEM[dtype]}* __restrict__ out{j}" for j, (_, dtype, _) in
                enumerate(spec.outs)]

    def _rows(self, spec: RowSpec, name: str) -> str:
        for red in spec.reds:
            if red.combiner not in _COMBINE or red.dtype not in FLOATS or \
                    red.finalize not in (None, "mean"):
                raise Unsupported(f"reduction {red.combiner} of {red.dtype}")
        # levels: 0 the kernel, 1 a row, 2 an element of the row
        kinds = spec.in_kinds
        levels = [0 if k == "scalar" else 1 if k == "row" or (k == "full" and spec.unit_rows)
                  else 2 for k in kinds]
        kernel = _Kernel([t.dtype for t in spec.in_types], levels, None)
        top = _Scope(kernel)
        top.read = {j: f"in{j}[0]" for j, k in enumerate(kinds) if k == "scalar"}
        row = _Scope(kernel, top)
        row.read = {j: f"in{j}[r]" for j, lv in enumerate(levels) if lv == 1}

        def element() -> _Scope:
            s = _Scope(kernel, row)
            s.read = {j: f"in{j}[base + i]" if k == "full" else f"in{j}[i]"
                      for j, (k, lv) in enumerate(zip(kinds, levels)) if lv == 2}
            return s

        shared = [f"__shared__ {REG[red.dtype]} gc_sh{k}[GC_MAX_WARPS];"
                  for k, red in enumerate(spec.reds)]
        for d in range(1, spec.depth + 1):
            reds = [(k, red) for k, red in enumerate(spec.reds) if red.depth == d]
            elem = element()
            folds = []
            for k, red in reds:
                x = convert(elem.value(red.expr), red.expr.dtype, red.dtype)
                folds.append(f"a{k} = {_COMBINE[red.combiner]}()(a{k}, {x});")
            body = elem.lines + folds
            row.lines += [f"{REG[red.dtype]} a{k} = {const_literal(red.identity, red.dtype)};"
                          for k, red in reds]
            row.lines += ["for (long long i = threadIdx.x; i < n; i += blockDim.x) {",
                          *_indent(body), "}"]
            for k, red in reds:
                row.lines.append(f"a{k} = gc_block_reduce(a{k}, gc_sh{k}, "
                                 f"{_COMBINE[red.combiner]}());")
                total = f"a{k}"
                if red.finalize == "mean":
                    total = f"gc_div(a{k}, ({REG[red.dtype]})n)"
                row.lines.append(f"const {REG[red.dtype]} r{k} = {total};")
                row.memo[id(red.out)] = f"r{k}"
                kernel.reduced[id(red.out)] = 1
        full = [(j, dtype, e) for j, (lv, dtype, e) in enumerate(spec.outs) if lv == "full"]
        if full:
            elem = element()
            vals = [(j, dtype, e, elem.value(e)) for j, dtype, e in full]
            body = elem.lines + [f"out{j}[base + i] = {store(convert(v, e.dtype, dtype), dtype)};"
                                 for j, dtype, e, v in vals]
            row.lines += ["for (long long i = threadIdx.x; i < n; i += blockDim.x) {",
                          *_indent(body), "}"]
        per_row = [(j, dtype, e, row.value(e)) for j, (lv, dtype, e) in enumerate(spec.outs)
                   if lv == "row"]
        if per_row:
            row.lines += ["if (threadIdx.x == 0) {",
                          *_indent([f"out{j}[r] = {store(convert(v, e.dtype, dtype), dtype)};"
                                    for j, dtype, e, v in per_row]), "}"]
        params = self._row_params(spec) + ["long long rows", "long long n"]
        lines = [self._signature(name, params) + " {", *_indent(shared + top.lines),
                 "  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {",
                 *(["    const long long base = r * n;"]
                   if any("base + i" in line for line in row.lines) else []),
                 *_indent(row.lines, 2), "  }", "}"]
        return "\n".join(lines)

    def _cols(self, spec: RowSpec, name: str) -> str:
        if len(spec.reds) != 1 or len(spec.in_types) != 1 or len(spec.outs) != 1 or \
                spec.outs[0][0] != "row" or spec.outs[0][2] is not spec.reds[0].out:
            raise Unsupported("a column kernel is one reduction of one input")
        (red,) = spec.reds
        if red.combiner not in _COMBINE or red.dtype not in FLOATS:
            raise Unsupported(f"reduction {red.combiner} of {red.dtype}")
        kernel = _Kernel([spec.in_types[0].dtype], [1], None)
        top = _Scope(kernel)
        elem = _Scope(kernel, top)
        elem.read = {0: "in0[(o * m + q) * inner + j]"}
        x = convert(elem.value(red.expr), red.expr.dtype, red.dtype)
        total = "acc" if red.finalize is None else f"gc_div(acc, ({REG[red.dtype]})m)"
        out_dtype = spec.outs[0][1]
        lines = [self._signature(name, self._row_params(spec) + [
                     "long long outer", "long long m", "long long inner"]) + " {",
                 *_indent(top.lines),
                 "  const long long total = outer * inner;",
                 "  for (long long t = GC_TID; t < total; t += GC_STRIDE) {",
                 "    const long long o = t / inner, j = t - o * inner;",
                 f"    {REG[red.dtype]} acc = {const_literal(red.identity, red.dtype)};",
                 "    for (long long q = 0; q < m; q++) {",
                 *_indent(elem.lines, 3),
                 f"      acc = {_COMBINE[red.combiner]}()(acc, {x});",
                 "    }",
                 f"    out0[t] = {store(convert(total, red.dtype, out_dtype), out_dtype)};",
                 "  }", "}"]
        return "\n".join(lines)

    # -- the translation unit -----------------------------------------------------------
    def has_kernels(self) -> bool:
        return bool(self.kernels)

    def source(self) -> str:
        """The whole translation unit: the prelude, then every kernel."""
        return PRELUDE + "\n" + "\n\n".join(self.kernels) + "\n"
