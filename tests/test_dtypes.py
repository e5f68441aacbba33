"""The dtype rules of graphc/dtypes.py, as users meet them through ops.

One total order ``bool < int32 < int64 < float16 < float32 < float64`` for tensors; weak
Python scalars; float-only ops (and true division) give float32 on ints and bools;
comparisons give bool; anything outside the six dtypes is a DTypeError. Each result dtype
is checked both eagerly and as the traced graph's type (the type rules must agree).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphc as gc
from graphc import dtypes as dt

ORDER = ["bool", "int32", "int64", "float16", "float32", "float64"]


def tensor(dtype: str, shape=(3,)) -> np.ndarray:
    return np.ones(shape, dtype)


def result_dtype(fn, *args) -> str:
    """The dtype ``fn`` gives eagerly, after asserting the traced graph says the same."""
    eager = fn(*[gc.array(a) for a in args]).dtype.name
    traced = gc.trace(fn, *args).outputs[0].type.dtype
    assert eager == traced, f"eager {eager} vs type rule {traced}"
    return eager


# -- tensors with tensors --------------------------------------------------------------------

@pytest.mark.parametrize("a,b", list(itertools.combinations_with_replacement(ORDER, 2)))
def test_promote_is_the_larger_in_one_total_order(a, b):
    larger = ORDER[max(ORDER.index(a), ORDER.index(b))]
    assert dt.promote(a, b) == dt.promote(b, a) == larger
    assert dt.promote(a, b, "bool") == larger
    # arithmetic never computes in bool: bool operands become int64
    want = "int64" if larger == "bool" else larger
    assert result_dtype(gc.add, tensor(a), tensor(b)) == want
    assert result_dtype(lambda x, y: x * y, tensor(b), tensor(a)) == want
    assert result_dtype(gc.maximum, tensor(a, (2, 1)), tensor(b)) == want


def test_documented_examples():
    assert result_dtype(gc.add, tensor("int32"), tensor("float16")) == "float16"
    assert result_dtype(gc.add, tensor("int32"), tensor("float32")) == "float32"  # numpy: f64
    assert result_dtype(gc.sub, tensor("int64"), tensor("float16")) == "float16"
    assert result_dtype(gc.mul, tensor("bool"), tensor("bool")) == "int64"


# -- Python scalars are weak -----------------------------------------------------------------

@pytest.mark.parametrize("dtype,scalar,want", [
    ("float32", 2.5, "float32"), ("float16", 2.5, "float16"), ("float64", 2.5, "float64"),
    ("float32", 2, "float32"), ("float64", 3, "float64"), ("float16", True, "float16"),
    ("int32", 1, "int32"), ("int64", 1, "int64"), ("int32", True, "int32"),
    ("int32", 0.5, "float32"), ("int64", 0.5, "float32"),
    ("bool", 1, "int64"), ("bool", 1.5, "float32"), ("bool", True, "int64"),
])
def test_weak_python_scalars(dtype, scalar, want):
    assert dt.scalar_dtype(scalar, dtype) in (want, "bool")
    for fn in (lambda x: x + scalar, lambda x: scalar * x, lambda x: gc.maximum(x, scalar),
               lambda x: gc.sub(scalar, x)):
        assert result_dtype(fn, tensor(dtype)) == want
    x = gc.array(np.array([1, 0, 1], dtype))
    np.testing.assert_array_equal((x + scalar).numpy(), np.array([1, 0, 1]) + scalar)


def test_scalars_alone_take_default_dtypes():
    assert dt.scalar_dtype(1.5, None) == "float32"
    assert dt.scalar_dtype(7, None) == "int64"
    assert dt.scalar_dtype(False, None) == "bool"
    assert gc.full((2,), 1.5).dtype == np.float32 and gc.full((2,), 3).dtype == np.int64


def test_python_int_that_does_not_fit_is_a_dtype_error():
    """Weak ints take the tensor's dtype, so one out of its range cannot be represented;
    numpy raised a bare OverflowError here."""
    with pytest.raises(gc.DTypeError, match=r"1099511627776 does not fit int32.*int32 tensor"):
        dt.scalar_dtype(2**40, "int32")
    with pytest.raises(gc.DTypeError, match=r"does not fit int64"):
        dt.scalar_dtype(2**70, None)
    with pytest.raises(gc.DTypeError, match=r"does not fit int64"):
        gc.full((2,), 2**70)
    assert dt.scalar_dtype(2**31 - 1, "int32") == "int32"
    assert dt.scalar_dtype(-2**31, "int32") == "int32"
    assert dt.scalar_dtype(2**40, "int64") == "int64"
    assert dt.scalar_dtype(2**40, "float16") == "float16"  # floats overflow to inf, as numpy
    with pytest.raises(gc.DTypeError, match=r"does not fit int32"):
        gc.trace(lambda t: t + 2**31, tensor("int32"))


def test_python_int_that_does_not_fit_is_a_dtype_error_eagerly():
    x = gc.array(tensor("int32"))
    x + 1  # caches the promotion plan for (add, int32, int)
    with pytest.raises(gc.DTypeError, match=r"does not fit int32"):
        x + 2**40


# -- float-only ops, division, comparisons -----------------------------------------------------

FLOAT_ONLY = {
    "exp": gc.exp, "log": gc.log, "sqrt": gc.sqrt, "rsqrt": gc.rsqrt, "sin": gc.sin,
    "tanh": gc.tanh, "sigmoid": gc.sigmoid, "erf": gc.erf, "softplus": gc.softplus,
    "gelu": gc.gelu, "elu": gc.elu, "leaky_relu": gc.leaky_relu, "floor": gc.floor,
    "round": gc.round, "reciprocal": gc.reciprocal, "mean": gc.mean, "var": gc.var,
    "softmax": gc.softmax, "log_softmax": gc.log_softmax, "logsumexp": gc.logsumexp,
    "layer_norm": gc.layer_norm,
}


@pytest.mark.parametrize("name", FLOAT_ONLY)
@pytest.mark.parametrize("dtype,want", [("bool", "float32"), ("int32", "float32"),
                                        ("int64", "float32"), ("float16", "float16"),
                                        ("float32", "float32"), ("float64", "float64")])
def test_float_only_ops_give_float32_on_ints(name, dtype, want):
    assert result_dtype(FLOAT_ONLY[name], tensor(dtype, (2, 3))) == want


@pytest.mark.parametrize("a,b,want", [
    ("int32", "int32", "float32"), ("int64", "int64", "float32"), ("bool", "bool", "float32"),
    ("int32", "int64", "float32"), ("int64", "float16", "float16"),
    ("int32", "float64", "float64"), ("float32", "float64", "float64"),
])
def test_true_division(a, b, want):
    assert result_dtype(gc.div, tensor(a), tensor(b)) == want
    assert result_dtype(lambda x, y: x / y, tensor(b), tensor(a)) == want
    x = gc.array(np.array([1, 2, 3] if a != "bool" else [True, False, True], a))
    np.testing.assert_allclose((x / 2).numpy(), [0.5, 1.0, 1.5] if a != "bool" else [0.5, 0, 0.5])
    assert result_dtype(lambda t: 1 / t, tensor(a)) == dt.float_of(a)


@pytest.mark.parametrize("a,b", list(itertools.product(ORDER, repeat=2)))
def test_comparisons_give_bool(a, b):
    for fn in (gc.equal, gc.not_equal, gc.less, gc.less_equal, gc.greater, gc.greater_equal):
        assert result_dtype(fn, tensor(a), tensor(b)) == "bool"
    assert result_dtype(lambda x: x < 0.5, tensor(a)) == "bool"
    assert result_dtype(lambda x: 2 == x, tensor(a)) == "bool"


def test_comparison_computes_in_the_common_dtype():
    """1 < 1.5 must not be decided on int(1.5) == 1."""
    x = gc.array(np.array([1, 2], np.int32))
    assert (x < 1.5).numpy().tolist() == [True, False]
    assert (x == gc.array(np.array([1.0, 2.5], np.float16))).numpy().tolist() == [True, False]


def test_logical_ops_give_bool():
    for a, b in itertools.product(ORDER, repeat=2):
        assert result_dtype(gc.logical_and, tensor(a), tensor(b)) == "bool"
    assert result_dtype(gc.logical_not, tensor("float32")) == "bool"


# -- where ---------------------------------------------------------------------------------

@pytest.mark.parametrize("x,y,want", [
    ("int32", "float16", "float16"), ("int32", "int64", "int64"), ("bool", "int32", "int32"),
    ("bool", "bool", "bool"), ("float64", "float32", "float64"), ("int64", "float32", "float32"),
])
def test_where_promotes_its_branches(x, y, want):
    c = np.array([True, False, True])
    assert result_dtype(gc.where, c, tensor(x), tensor(y)) == want
    assert result_dtype(gc.where, c, tensor(y), tensor(x)) == want


@pytest.mark.parametrize("x,scalar,want", [("float32", 1, "float32"), ("int32", 2.5, "float32"),
                                           ("int32", 7, "int32"), ("float16", 0.5, "float16"),
                                           ("bool", 1, "int64")])
def test_where_with_a_scalar_branch(x, scalar, want):
    c = np.array([True, False, True])
    assert result_dtype(lambda c, t: gc.where(c, t, scalar), c, tensor(x)) == want
    assert result_dtype(lambda c, t: gc.where(c, scalar, t), c, tensor(x)) == want


def test_where_with_two_scalars_uses_their_defaults():
    c = np.array([True, False])
    assert result_dtype(lambda c: gc.where(c, 1, 2), c) == "int64"
    assert result_dtype(lambda c: gc.where(c, 1, 2.5), c) == "float32"
    assert gc.where(gc.array(c), 1, 2.5).numpy().tolist() == [1.0, 2.5]


# -- reductions ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ORDER)
def test_reduction_dtypes(dtype):
    acc = dtype if dt.is_float(dtype) else "int64"
    assert result_dtype(gc.sum, tensor(dtype, (2, 3))) == acc
    assert result_dtype(gc.prod, tensor(dtype, (2, 3))) == acc
    assert result_dtype(gc.mean, tensor(dtype, (2, 3))) == dt.float_of(dtype)
    assert result_dtype(gc.max, tensor(dtype, (2, 3))) == dtype
    assert result_dtype(gc.argmin, tensor(dtype, (2, 3))) == "int64"


# -- names and unsupported dtypes --------------------------------------------------------------

@pytest.mark.parametrize("given,name", [
    ("float32", "float32"), (float, "float32"), (int, "int64"), (bool, "bool"),
    (np.float16, "float16"), (np.dtype("int32"), "int32"), ("f8", "float64"), (np.bool_, "bool"),
    ("int64", "int64"),
])
def test_canonical_names(given, name):
    assert dt.canonical(given) == name
    assert gc.cast(gc.ones(2), given).dtype.name == name


def test_float_of_and_is_float():
    assert [dt.float_of(d) for d in ORDER] == ["float32"] * 3 + ["float16", "float32", "float64"]
    assert [dt.is_float(d) for d in ORDER] == [False] * 3 + [True] * 3
    assert all(dt.name_of(np.dtype(d)) == d for d in ORDER)


UNSUPPORTED = [np.complex64, "complex128", np.uint8, "uint8", "int8", np.uint64, "int16",
               object, "foo", np.dtype("U3")]


@pytest.mark.parametrize("dtype", UNSUPPORTED, ids=str)
def test_unsupported_dtypes_are_dtype_errors(dtype):
    with pytest.raises(gc.DTypeError, match="unsupported dtype.*graphc supports bool, int32"):
        dt.canonical(dtype)
    with pytest.raises(gc.DTypeError):
        gc.cast(gc.ones(2), dtype)
    with pytest.raises(gc.DTypeError):
        gc.zeros(3, dtype=dtype)


def test_unsupported_arrays_are_dtype_errors():
    for arr in (np.array([1, 2], np.uint8), np.array([1j]), np.array([1], np.int16),
                np.array(["a"])):
        with pytest.raises(gc.DTypeError, match="unsupported dtype"):
            gc.array(arr)
        with pytest.raises(gc.DTypeError, match="unsupported dtype"):
            gc.trace(gc.exp, arr)
        with pytest.raises(gc.DTypeError, match="unsupported dtype"):
            gc.add(gc.ones(1), arr)
    with pytest.raises(gc.DTypeError, match="unsupported dtype"):
        gc.array([1 + 2j, 3])
    with pytest.raises(gc.DTypeError, match="cannot use complex"):
        dt.scalar_dtype(1j, "float32")
    with pytest.raises(gc.DTypeError, match="cannot use str"):
        dt.scalar_dtype("a", None)


def test_complex_python_scalar_operand_is_a_dtype_error():
    with pytest.raises(gc.DTypeError):
        gc.ones(2) + 1j
