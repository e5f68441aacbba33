"""graphc.backends.llvm.vmath: JIT a loop per primitive and compare with numpy in ulps.

Each kernel is `out[i] = f(x[i])` over noalias float*/double* (what the code generator
emits for an elementwise op), optimized at O3 for the host CPU and run through ctypes.
References are float64 numpy for float32 inputs, longdouble numpy (math.erf for erf) for
float64 inputs; errors are measured in ulps of the result dtype at the exact value.
"""

from __future__ import annotations

import ctypes
import math
import re

import numpy as np
import pytest

llvm = pytest.importorskip("llvmlite.binding")
from llvmlite import ir  # noqa: E402

from graphc.backends.llvm.vmath import EMITTERS  # noqa: E402
from graphc.ops import scalar  # noqa: E402

F32, F64 = np.float32, np.float64
UNARY = ("exp", "expm1", "log", "log1p", "tanh", "erf", "sin", "cos")
# max ulp allowed (the measured maxima are in vmath's docstring; these leave little slack)
ULP = {F32: dict.fromkeys(UNARY + ("pow",), 4.0), F64: dict.fromkeys(UNARY + ("pow",), 4.0)}

llvm.initialize_native_target()
llvm.initialize_native_asmprinter()
_TM = llvm.Target.from_default_triple().create_target_machine(
    cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3,
    jit=True)
_ENGINES: list = []  # keep MCJIT engines (and their code) alive
_KERNELS: dict = {}


def _ftype(dtype):
    return ir.FloatType() if dtype == F32 else ir.DoubleType()


def _optimize_and_jit(m: ir.Module):
    mod = llvm.parse_assembly(str(m))
    mod.triple, mod.data_layout = _TM.triple, str(_TM.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = pto.slp_vectorization = True
    pb = llvm.create_pass_builder(_TM, pto)
    pb.getModulePassManager().run(mod, pb)
    ee = llvm.create_mcjit_compiler(mod, _TM)
    ee.finalize_object()
    _ENGINES.append(ee)
    return ee, str(mod)


def kernel(name: str, dtype):
    """(run(*arrays, n=None) -> out, optimized IR) for the loop out[i] = name(x[i], ...)."""
    key = (name, dtype)
    if key in _KERNELS:
        return _KERNELS[key]
    ptr, i64 = ir.PointerType(_ftype(dtype)), ir.IntType(64)
    nin = 2 if name == "pow" else 1
    m = ir.Module(name=f"vmath_{name}")
    fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [ptr] * (1 + nin) + [i64]), "kernel")
    for a in fn.args[:-1]:
        a.add_attribute("noalias")
    n = fn.args[-1]
    entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)
    b.cbranch(b.icmp_signed(">", n, ir.Constant(i64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(i64)
    i.add_incoming(ir.Constant(i64, 0), entry)
    args = [b.load(b.gep(p, [i], inbounds=True)) for p in fn.args[1:1 + nin]]
    b.store(EMITTERS[name](b, *args), b.gep(fn.args[0], [i], inbounds=True))
    nxt = b.add(i, ir.Constant(i64, 1))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    ee, text = _optimize_and_jit(m)
    cfn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (1 + nin), ctypes.c_int64)(
        ee.get_function_address("kernel"))

    def run(*arrays, out=None, n=None):
        arrays = [np.ascontiguousarray(a, dtype) for a in arrays]
        out = np.empty_like(arrays[0]) if out is None else out
        cfn(out.ctypes.data, *[a.ctypes.data for a in arrays], out.size if n is None else n)
        return out

    _KERNELS[key] = run, text
    return run, text


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype) -> np.ndarray:
    """|got - ref| in ulps of dtype at ref; inf where non-finite values or zero signs differ."""
    fi = np.finfo(dtype)
    with np.errstate(all="ignore"):
        ref_r = ref.astype(dtype)
        a = np.abs(ref.astype(np.longdouble))
        e = np.floor(np.log2(np.maximum(a, np.longdouble(fi.smallest_normal))))
        e = np.where(np.isfinite(e), e, 0).astype(int)
        ulp = np.ldexp(np.longdouble(1), e - fi.nmant)
        err = np.abs(got.astype(np.longdouble) - ref.astype(np.longdouble)) / ulp
    err = err.astype(np.float64)
    special = ~np.isfinite(ref_r) | ~np.isfinite(got)
    same_special = (np.isnan(got) & np.isnan(ref_r)) | (got == ref_r)
    err = np.where(special, np.where(same_special, 0.0, np.inf), err)
    zero_sign = (ref_r == 0) & (got == 0) & (np.signbit(got) != np.signbit(ref_r))
    return np.where(zero_sign, np.inf, err)


def reference(name: str, dtype, *arrays) -> np.ndarray:
    wide = np.float64 if dtype == F32 or name == "erf" else np.longdouble
    arrays = [a.astype(wide) for a in arrays]
    with np.errstate(all="ignore"):
        if name == "erf":
            return np.vectorize(math.erf, otypes=[np.float64])(arrays[0])
        fn = {"pow": np.power}.get(name) or getattr(np, name)
        return fn(*arrays)


def special_values(dtype) -> np.ndarray:
    fi = np.finfo(dtype)
    v = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, float(fi.max),
         -float(fi.max), float(fi.smallest_normal), float(fi.smallest_subnormal),
         -float(fi.smallest_subnormal), float(fi.eps), 1 - float(fi.epsneg)]
    return np.array(v, dtype)


def dense_inputs(name: str, dtype) -> np.ndarray:
    """The whole domain: dense near 0 and in the interesting range, log-uniform to the
    extremes of the dtype (denormals included), special values."""
    rng = np.random.default_rng(hash(name) % 2**32)
    fi = np.finfo(dtype)
    lo, hi = np.log2(float(fi.smallest_subnormal)), np.log2(float(fi.max))
    mags = 2.0 ** rng.uniform(lo, hi, 60_000)
    parts = [special_values(dtype), mags, -mags, np.linspace(-1, 1, 40_001),
             np.linspace(-20, 20, 40_001), np.linspace(-110, 110, 20_001)]
    if name in ("exp", "expm1"):
        parts.append(np.linspace(-760, 720, 20_001))
    if name in ("log", "log1p"):
        parts += [np.linspace(0, 4, 40_001), np.linspace(-1, -0.99, 1_001)]
    x = np.concatenate(parts).astype(dtype)
    if name in ("sin", "cos") and dtype == F64:
        x = x[~(np.abs(x) >= 2.0**50)]  # documented limit of the double reduction
    return x


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", UNARY)
def test_unary_accuracy(name, dtype):
    run, _ = kernel(name, dtype)
    x = dense_inputs(name, dtype)
    err = ulp_error(run(x), reference(name, dtype, x), dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= ULP[dtype][name], (
        f"{name} {dtype.__name__}: {err[worst]:.2f} ulp at x={x[worst]!r}")


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", UNARY)
def test_unary_special_values_exact(name, dtype):
    run, _ = kernel(name, dtype)
    x = special_values(dtype)
    got, want = run(x), reference(name, dtype, x).astype(dtype)
    nonfinite_or_zero = ~np.isfinite(want) | (want == 0) | ~np.isfinite(got)
    np.testing.assert_array_equal(got[nonfinite_or_zero], want[nonfinite_or_zero])
    np.testing.assert_array_equal(np.signbit(got[want == 0]), np.signbit(want[want == 0]))


def _pow_inputs(dtype, rng, m=100_000):
    sp = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0,
                   -3.0, 1e-30, -1e-30, 1e30, -1e30, 2.5, -2.5, 1e-310])
    gx, gy = np.meshgrid(sp, sp)
    x = (2.0 ** rng.uniform(-20, 20, m)) * rng.choice([-1, 1], m)
    y = rng.uniform(-30, 30, m)
    y[::3] = np.round(y[::3])  # integer exponents: negative bases are defined
    return (np.concatenate([gx.ravel(), x]).astype(dtype),
            np.concatenate([gy.ravel(), y]).astype(dtype))


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_pow_accuracy_and_special_cases(dtype):
    run, _ = kernel("pow", dtype)
    x, y = _pow_inputs(dtype, np.random.default_rng(7))
    err = ulp_error(run(x, y), reference("pow", dtype, x, y), dtype)
    worst = int(np.argmax(err))
    assert err[worst] <= ULP[dtype]["pow"], (
        f"pow {dtype.__name__}: {err[worst]:.2f} ulp at x={x[worst]!r} y={y[worst]!r}")


def test_pow_large_results():
    """|y log x| near the overflow threshold: float32 stays within 4 ulp (double inside);
    float64 carries log|x| as a double-double but still loses bits there (documented)."""
    rng = np.random.default_rng(3)
    x, y = rng.uniform(0.5, 2, 50_000), rng.uniform(-2000, 2000, 50_000)
    run32, _ = kernel("pow", F32)
    x32, y32 = x.astype(F32), (y / 8).astype(F32)
    assert ulp_error(run32(x32, y32), reference("pow", F32, x32, y32), F32).max() <= 4
    run64, _ = kernel("pow", F64)
    assert ulp_error(run64(x, y), reference("pow", F64, x, y), F64).max() <= 256


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", UNARY + ("pow",))
def test_odd_lengths_and_tails(name, dtype):
    """Vector body + scalar/vector tail: every length gives the same values, and the kernel
    writes exactly n elements."""
    run, _ = kernel(name, dtype)
    rng = np.random.default_rng(11)
    full = rng.uniform(0.1, 3, 4097 + 16).astype(dtype)
    args = (full, rng.uniform(-3, 3, full.size).astype(dtype)) if name == "pow" else (full,)
    want = run(*args)
    for n in (0, 1, 3, 7, 17, 1023, 4097):
        out = np.full(full.size, 12345.0, dtype)
        run(*args, out=out, n=n)
        np.testing.assert_array_equal(out[:n], want[:n])
        assert (out[n:] == 12345.0).all(), f"{name}: wrote past n={n}"


def _host_has_avx2() -> bool:
    return "+avx2" in llvm.get_host_cpu_features().flatten().split(",")


@pytest.mark.parametrize("name", UNARY + ("pow",))
def test_float32_loop_vectorizes(name):
    _, text = kernel(name, F32)
    calls = set(re.findall(r"call [^@]*@([\w.]+)", text))
    assert all(c.startswith("llvm.") for c in calls), f"{name}: library calls left: {calls}"
    if not _host_has_avx2():
        pytest.skip("host CPU lacks AVX2: the <8 x float> width check does not apply")
    assert "<8 x float>" in text, f"{name}: float32 loop was not vectorized to <8 x float>"


def test_float64_loop_vectorizes():
    _, text = kernel("exp", F64)
    if not _host_has_avx2():
        pytest.skip("host CPU lacks AVX2: the <4 x double> width check does not apply")
    assert "<4 x double>" in text


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_emitters_take_vector_values(dtype):
    """Emitted on explicit <8 x T> values, every primitive matches the scalar loop."""
    vty = ir.VectorType(_ftype(dtype), 8)
    vptr = ir.PointerType(vty)
    m = ir.Module(name="vmath_vectors")
    names = UNARY + ("pow",)
    for name in names:
        fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [vptr] * 3), f"v_{name}")
        b = ir.IRBuilder(fn.append_basic_block())
        align = np.dtype(dtype).itemsize  # numpy buffers are only element-aligned
        xs = [b.load(fn.args[1], align=align), b.load(fn.args[2], align=align)]
        b.store(EMITTERS[name](b, *xs[:2 if name == "pow" else 1]), fn.args[0], align=align)
        b.ret_void()
    ee, _ = _optimize_and_jit(m)
    x = np.array([0.5, -1.5, 2.0, 7.0, -0.0, np.inf, np.nan, 30.0], dtype)
    y = np.array([2.0, 3.0, -0.5, 0.25, 1.0, -1.0, 2.0, 0.5], dtype)
    for name in names:
        cfn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * 3)(ee.get_function_address(f"v_{name}"))
        out = np.empty_like(x)
        cfn(out.ctypes.data, x.ctypes.data, y.ctypes.data)
        want = kernel(name, dtype)[0](*((x, y) if name == "pow" else (x,)))
        np.testing.assert_array_equal(out, want, err_msg=name)


def test_registry_covers_scalar_primitives():
    assert set(EMITTERS) == set(UNARY) | {"pow"}
    assert set(UNARY) <= set(scalar.UNARY) and "pow" in scalar.BINARY
