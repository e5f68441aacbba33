"""Shape and data-movement ops against independent numpy references (tests/opcheck.py)."""

from __future__ import annotations

import numpy as np
import pytest
from opcheck import check_op

import graphc as gc
from graphc.ops import registry
from graphc.tensor import apply
from graphc.types import TensorType

HERE = "test_ops_shape.py"


def R(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def ints(*shape, dtype=np.int64):
    return np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape) - 3


def strided(*shape):
    """A non-contiguous view: every other column of a wider array."""
    wide = R(*shape[:-1], 2 * shape[-1], seed=1)
    return wide[..., ::2]


def raises(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match) as err:
        fn(*args, **kwargs)
    assert HERE in str(err.value), str(err.value)
    return err.value


def node_attrs(fn, *args):
    graph = gc.trace(fn, *args)
    return [n.attrs for n in graph.nodes]


# -- reshape ------------------------------------------------------------------------------

@pytest.mark.parametrize("x, shape, want", [
    (R(2, 3, 4), (4, 6), (4, 6)),
    (R(2, 3, 4), (6, -1), (6, 4)),
    (R(2, 3, 4), (0, -1), (2, 12)),          # Gluon: 0 copies the batch dim
    (R(2, 3, 4), (0, 0, 2, 2), (2, 3, 2, 2)),
    (R(2, 3, 4), (-1,), (24,)),
    (R(2, 3, 4), -1, (24,)),
    (R(1, 1), (), ()),
    (R(), (1, 1), (1, 1)),
    (R(0, 3), (3, 0), (3, 0)),               # empty input: 0 is a literal size
    (R(2, 0, 3), (0, 5), (0, 5)),
    (R(0, 3), (-1, 3), (0, 3)),
    (R(3, 4).T, (2, 6), (2, 6)),              # non-contiguous
    (strided(2, 3), (3, -1), (3, 2)),
    (R(2, 3, dtype=np.float64), (3, 2), (3, 2)),
])
def test_reshape(x, shape, want):
    check_op(lambda a: gc.reshape(a, shape), [x], reference=lambda a: np.reshape(a, want))


def test_reshape_int_and_method():
    check_op(lambda a: a.reshape(0, -1), [ints(2, 3, 2)],
             reference=lambda a: a.reshape(2, 6), grad=False)
    check_op(lambda a: a.reshape((3, 4)), [ints(2, 6, dtype=np.int32)],
             reference=lambda a: a.reshape(3, 4), grad=False)


def test_reshape_canonical_attrs():
    # The Gluon codes are kept (batch-agnostic export); the type rule resolves them.
    graph = gc.trace(lambda a: gc.reshape(a, (0, -1)), R(2, 3, 4))
    assert [n.attrs for n in graph.nodes] == [{"shape": (0, -1)}]
    assert graph.nodes[0].outputs[0].type == TensorType((2, 12), "float32")
    types = (TensorType((0, 3), "float32"),)
    op = registry.get("reshape")
    out, attrs = registry.infer(op, types, {"shape": [np.int64(3), -1]})
    assert attrs == {"shape": (3, -1)} and type(attrs["shape"][0]) is int
    assert out == (TensorType((3, 0), "float32"),)
    assert registry.infer(op, types, attrs) == (out, attrs)  # idempotent
    # the same node rebuilt on another batch size resolves again
    rebuilt = registry.infer(op, (TensorType((5, 3, 4), "float32"),), graph.nodes[0].attrs)
    assert rebuilt[0] == (TensorType((5, 12), "float32"),)


def test_flatten_is_batch_agnostic():
    graph = gc.trace(lambda a: gc.flatten(a), R(4, 3, 2))
    assert graph.nodes[0].attrs == {"shape": (0, -1)}


def test_reshape_errors():
    x = gc.array(R(2, 3))
    raises(gc.ShapeError, r"reshape: cannot reshape \(2, 3\).*\(4, -1\)", gc.reshape, x,
           (4, -1))
    raises(gc.ShapeError, r"reshape: cannot reshape \(2, 3\).*\(5,\)", gc.reshape, x, (5,))
    raises(gc.ShapeError, r"reshape: .*\(2, 3\).*\(-1, -1\)", gc.reshape, x, (-1, -1))
    raises(gc.ShapeError, r"reshape: .*0 at position 2", gc.reshape, x, (1, 6, 0))
    raises(gc.ShapeError, r"reshape: .*\(0, 3\).*\(-1, 0\).*-1 cannot be inferred",
           gc.reshape, gc.array(R(0, 3)), (-1, 0))
    raises(gc.ShapeError, "reshape: .*shape must be an int", gc.reshape, x, (2.0, 3))


def test_reshape_error_while_tracing():
    with pytest.raises(gc.ShapeError, match=r"reshape: cannot reshape \(2, 3\)") as err:
        gc.trace(lambda a: gc.reshape(a, (7,)), R(2, 3))
    assert HERE in str(err.value)


# -- transpose ----------------------------------------------------------------------------

@pytest.mark.parametrize("x, axes", [
    (R(2, 3, 4), None), (R(2, 3, 4), (1, 0, 2)), (R(2, 3, 4), (-1, 0, -2)),
    (R(3), None), (R(), None), (R(2, 0, 3), (2, 0, 1)), (R(1, 3, 1), (2, 1, 0)),
    (strided(3, 2), None), (R(2, 2, dtype=np.float64), (1, 0)),
])
def test_transpose(x, axes):
    check_op(lambda a: gc.transpose(a, axes), [x], reference=lambda a: np.transpose(a, axes))


def test_transpose_int_method_and_attrs():
    check_op(lambda a: a.T, [ints(2, 3)], reference=lambda a: a.T, grad=False)
    check_op(lambda a: a.transpose(1, 2, 0), [ints(2, 3, 2, dtype=np.int32)],
             reference=lambda a: a.transpose(1, 2, 0), grad=False)
    assert node_attrs(lambda a: gc.transpose(a), R(2, 3, 4)) == [{"axes": (2, 1, 0)}]
    assert node_attrs(lambda a: gc.transpose(a, (-1, 0, 1)), R(2, 3, 4)) == [{"axes": (2, 0, 1)}]


def test_transpose_errors():
    x = gc.array(R(2, 3))
    raises(gc.ShapeError, r"transpose: axes \(0, 0\) are not a permutation .*\(2, 3\)",
           gc.transpose, x, (0, 0))
    raises(gc.ShapeError, r"transpose: axes \(0,\) are not a permutation", gc.transpose, x,
           (0,))
    raises(gc.ShapeError, "transpose: axis 2 is out of range", gc.transpose, x, (0, 2))


# -- broadcast_to -------------------------------------------------------------------------

@pytest.mark.parametrize("x, shape", [
    (R(3, 1), (2, 3, 4)), (R(1), (5,)), (R(), (2, 2)), (R(0, 1), (0, 3)),
    (R(3), (2, 0, 3)), (R(2, 3), (2, 3)), (R(4, 3).T[:, :1], (2, 3, 2)),
    (R(1, 2, dtype=np.float64), (3, 2)),
])
def test_broadcast_to(x, shape):
    check_op(lambda a: gc.broadcast_to(a, shape), [x],
             reference=lambda a: np.broadcast_to(a, shape))


def test_broadcast_to_int_and_errors():
    check_op(lambda a: a.broadcast_to((2, 3)), [ints(3)],
             reference=lambda a: np.broadcast_to(a, (2, 3)), grad=False)
    x = gc.array(R(3))
    raises(gc.ShapeError, r"broadcast_to: cannot broadcast shape \(3,\) to \(4,\)",
           gc.broadcast_to, x, (4,))
    raises(gc.ShapeError, r"broadcast_to: cannot broadcast shape \(3,\) to \(\)",
           gc.broadcast_to, x, ())
    raises(gc.ShapeError, r"broadcast_to: cannot broadcast shape \(2, 3\) to \(3, 3\)",
           gc.broadcast_to, gc.array(R(2, 3)), (3, 3))


# -- expand_dims / squeeze ----------------------------------------------------------------

@pytest.mark.parametrize("x, axis", [
    (R(2, 3), 0), (R(2, 3), -1), (R(2, 3), 1), (R(2, 3), (0, 3)), (R(2, 3), (-1, 0)),
    (R(), 0), (R(0, 2), (1,)), (strided(2, 2), 2),
])
def test_expand_dims(x, axis):
    check_op(lambda a: gc.expand_dims(a, axis), [x],
             reference=lambda a: np.expand_dims(a, axis))


@pytest.mark.parametrize("x, axis", [
    (R(1, 3, 1), None), (R(1, 3, 1), 0), (R(1, 3, 1), -1), (R(1, 3, 1), (0, 2)),
    (R(1, 1), None), (R(2, 3), None), (R(1, 0, 1), (0,)), (R(4, 3).T[:1], 0),
])
def test_squeeze(x, axis):
    check_op(lambda a: gc.squeeze(a, axis), [x], reference=lambda a: np.squeeze(a, axis))


def test_expand_squeeze_int_attrs_and_errors():
    check_op(lambda a: a.expand_dims(1).squeeze(), [ints(1, 3, dtype=np.int32)],
             reference=lambda a: a.reshape(3), grad=False)
    assert node_attrs(lambda a: gc.squeeze(a), R(1, 2, 1)) == [{"axis": (0, 2)}]
    assert node_attrs(lambda a: gc.expand_dims(a, -1), R(2)) == [{"axis": (1,)}]
    x = gc.array(R(1, 3))
    raises(gc.ShapeError, r"squeeze: cannot squeeze axis 1 of shape \(1, 3\): its size is 3",
           gc.squeeze, x, 1)
    raises(gc.ShapeError, "squeeze: axis 2 is out of range", gc.squeeze, x, 2)
    raises(gc.ShapeError, "expand_dims: repeated axis", gc.expand_dims, x, (0, 0))
    raises(gc.ShapeError, "expand_dims: axis 3 is out of range", gc.expand_dims, x, 3)


# -- concat / stack / split ---------------------------------------------------------------

@pytest.mark.parametrize("xs, axis", [
    ([R(2, 3), R(1, 3, seed=2)], 0),
    ([R(2, 3), R(2, 1, seed=2), R(2, 0)], 1),
    ([R(2, 3), strided(2, 2)], -1),
    ([R(3)], 0),
    ([R(0, 2), R(0, 2)], 0),
    ([R(2, 2, dtype=np.float64), R(2, 2, seed=3)], 0),
])
def test_concat(xs, axis):
    check_op(lambda *a: gc.concat(a, axis=axis), xs,
             reference=lambda *a: np.concatenate(a, axis=axis))


def test_concat_ints_promotion_and_errors():
    check_op(lambda a, b: gc.concat([a, b], 1), [ints(2, 2), ints(2, 3, dtype=np.int32)],
             reference=lambda a, b: np.concatenate([a, b], 1), grad=False)
    out = gc.concat([gc.array(R(2)), gc.array(ints(2))])
    assert out.dtype == np.float32
    raises(gc.ShapeError, r"concat: shapes \(2, 3\), \(3, 3\) differ outside axis 1",
           gc.concat, [gc.array(R(2, 3)), gc.array(R(3, 3))], 1)
    raises(gc.ShapeError, r"concat: shapes \(2, 3\), \(3,\) differ", gc.concat,
           [gc.array(R(2, 3)), gc.array(R(3))])
    raises(gc.ShapeError, "concat: needs at least one tensor", gc.concat, [])
    raises(gc.ShapeError, "concat: axis 2 is out of range", gc.concat, [gc.array(R(2, 3))], 2)


@pytest.mark.parametrize("xs, axis", [
    ([R(2, 3), R(2, 3, seed=2)], 0),
    ([R(2, 3), R(2, 3, seed=2), strided(2, 3)], -1),
    ([R(2, 3), R(2, 3, seed=2)], 1),
    ([R()], 0),
    ([R(0, 2), R(0, 2)], 1),
])
def test_stack(xs, axis):
    check_op(lambda *a: gc.stack(a, axis=axis), xs,
             reference=lambda *a: np.stack(a, axis=axis))


def test_stack_ints_and_errors():
    check_op(lambda a, b: gc.stack([a, b], -1), [ints(2, 2), ints(2, 2)],
             reference=lambda a, b: np.stack([a, b], -1), grad=False)
    raises(gc.ShapeError, r"stack: all shapes must be equal, got \(2, 3\), \(2, 2\)",
           gc.stack, [gc.array(R(2, 3)), gc.array(R(2, 2))])
    raises(gc.ShapeError, "stack: needs at least one tensor", gc.stack, [])
    raises(gc.ShapeError, "stack: axis 3 is out of range", gc.stack, [gc.array(R(2, 3))], 3)


@pytest.mark.parametrize("x, spec, axis", [
    (R(6, 2), 3, 0), (R(2, 6), 2, -1), (R(5, 2), [1, 3], 0), (R(5, 2), [-2], 0),
    (R(5, 2), [2, 9], 0), (R(4), 1, 0), (R(4), [0, 0, 4], 0), (R(0, 3), 3, 1),
    (strided(2, 4), [1], 1), (R(4, 2, dtype=np.float64), 2, 0),
])
def test_split(x, spec, axis):
    check_op(lambda a: gc.split(a, spec, axis=axis), [x],
             reference=lambda a: tuple(np.split(a, spec, axis=axis)))


def test_split_ints_attrs_and_errors():
    outs = check_op(lambda a: gc.split(a, 2, axis=1), [ints(2, 4)],
                    reference=lambda a: tuple(np.split(a, 2, axis=1)), grad=False)
    assert len(outs) == 2
    assert node_attrs(lambda a: gc.split(a, 3), R(6)) == [
        {"indices_or_sections": (2, 4), "axis": 0}]
    assert node_attrs(lambda a: gc.split(a, [-1, 9], -1), R(2, 5)) == [
        {"indices_or_sections": (4, 5), "axis": 1}]
    assert isinstance(gc.split(gc.array(R(3)), 1), tuple)
    x = gc.array(R(5, 2))
    raises(gc.ShapeError, r"split: cannot split axis 0 of shape \(5, 2\) into 2 equal",
           gc.split, x, 2)
    raises(gc.ShapeError, r"split: cannot split .* into 0 equal", gc.split, x, 0)
    raises(gc.ShapeError, r"split: split indices \(3, 1\) on axis 0 .* must be increasing",
           gc.split, x, [3, 1])


def test_split_then_use_one_piece():
    """Only one output gets a cotangent; the VJP sees zeros for the others."""
    check_op(lambda a: gc.sin(gc.split(a, [1], axis=1)[1]), [R(2, 3)],
             reference=lambda a: np.sin(a[:, 1:]))


# -- slice --------------------------------------------------------------------------------

@pytest.mark.parametrize("x, begin, end, step, key", [
    (R(5, 4), (1,), (3,), None, np.s_[1:3]),
    (R(5, 4), (None, 1), (None, None), (2, 1), np.s_[::2, 1:]),
    (R(5, 4), (-2, -3), (None, -1), None, np.s_[-2:, -3:-1]),
    (R(5, 4), (None,), (None,), (-1,), np.s_[::-1]),
    (R(5, 4), (3, None), (0, None), (-2, -3), np.s_[3:0:-2, ::-3]),
    (R(5, 4), (-1, 2), (-10, 0), (-1, -1), np.s_[-1:-10:-1, 2:0:-1]),
    (R(5, 4), (-100,), (100,), None, np.s_[-100:100]),        # clamped
    (R(5, 4), (4,), (1,), None, np.s_[4:1]),                   # empty
    (R(5, 4), (10,), (None,), (-1,), np.s_[10::-1]),
    (R(0, 3), (None, 1), (None, 2), None, np.s_[:, 1:2]),
    (R(1, 3), (0, 2), (1, 3), None, np.s_[0:1, 2:3]),
    (strided(4, 3), (1, None), (None, None), (1, -2), np.s_[1:, ::-2]),
    (R(4, 3, dtype=np.float64), (None, 2), (None, None), (3, -1), np.s_[::3, 2::-1]),
])
def test_slice(x, begin, end, step, key):
    check_op(lambda a: gc.slice(a, begin, end, step), [x], reference=lambda a: a[key])


def test_slice_ints_attrs_and_errors():
    check_op(lambda a: gc.slice(a, (None, 1), (None, None), (-1, 2)), [ints(3, 4)],
             reference=lambda a: a[::-1, 1::2], grad=False)
    attrs = node_attrs(lambda a: gc.slice(a, (None, -1), (None, -10), (-1, -1)), R(3, 4))
    assert attrs == [{"begin": (2, 3), "end": (None, None), "step": (-1, -1)}]
    assert node_attrs(lambda a: gc.slice(a, (4,), (1,)), R(5)) == [
        {"begin": (0,), "end": (0,), "step": (1,)}]
    assert node_attrs(lambda a: gc.slice(a, (0,), (10,), (3,)), R(10)) == [
        {"begin": (0,), "end": (10,), "step": (3,)}]
    op = registry.get("slice")
    for shape in [(5,), (1,), (0,), (7,)]:
        for key in [(-9, None, -1), (None, None, -2), (3, -9, -1), (2, 5, 2), (-1, None, 1)]:
            types = (TensorType(shape, "float32"),)
            raw = {"begin": key[:1], "end": key[1:2], "step": key[2:]}
            _, attrs = registry.infer(op, types, raw)
            assert registry.infer(op, types, attrs)[1] == attrs
    x = gc.array(R(2, 3))
    raises(gc.ShapeError, r"slice: slice step cannot be zero \(shape \(2, 3\)\)", gc.slice, x,
           (0,), (1,), (0,))
    raises(gc.ShapeError, "slice: 3 begin entries for a tensor of rank 2", gc.slice, x,
           (0, 0, 0), (1, 1, 1))


def test_slice_grad_op():
    """The scatter that undoes a strided slice, and its own VJP (a slice)."""
    op = registry.get("slice_grad")
    attrs = dict(shape=(5, 3), begin=(4, None), end=(None, None), step=(-2, -1))
    check_op(lambda g: apply(op, g, **attrs), [R(3, 3)],
             reference=lambda g: _scatter(g, (5, 3), np.s_[4::-2, ::-1]))
    raises(gc.ShapeError, r"slice_grad: gradient of shape \(2, 3\) does not fit",
           apply, op, gc.array(R(2, 3)), **attrs)


def _scatter(g, shape, key):
    out = np.zeros(shape)
    out[key] = g
    return out


# -- take ---------------------------------------------------------------------------------

@pytest.mark.parametrize("x, idx, axis", [
    (R(5, 3), np.array([0, 4, 2]), 0),
    (R(5, 3), np.array([[1, -1], [1, 1]]), 0),          # negative, repeated
    (R(5, 3), np.array(2), 1),
    (R(5, 3), np.array([2, 0, 2, 2]), -1),
    (R(4), np.array([], np.int64), 0),
    (R(0, 3), np.array([1]), 1),
    (R(2, 3, 2), np.array([[0], [2]], np.int32), 1),
    (strided(4, 3), np.array([3, 0]), 0),
    (R(3, 2, dtype=np.float64), np.array([0, 0]), 0),
])
def test_take(x, idx, axis):
    check_op(lambda a, i: gc.take(a, i, axis=axis), [x, idx],
             reference=lambda a, i: np.take(a, i, axis=axis))


def test_take_ints_method_and_lists():
    check_op(lambda a: a.take([2, -1], axis=1), [ints(2, 4)],
             reference=lambda a: np.take(a, [2, -1], axis=1), grad=False)
    check_op(lambda a: gc.take(a, 1), [ints(3, dtype=np.int32)],
             reference=lambda a: np.take(a, 1), grad=False)
    assert gc.take(gc.array(R(3)), []).shape == (0,)


def test_take_errors():
    x = gc.array(R(3, 2))
    err = raises(gc.ShapeError, r"take: .*out of bounds.*\(inputs f32\[3,2\], i64\[2\]\)",
                 gc.take, x, [1, 3])
    assert err.op == "take"
    raises(gc.ShapeError, r"take: .*-4", gc.take, x, [-4])
    raises(gc.ShapeError, r"take: cannot take indices i64\[1\] from axis 0 of shape \(0, 2\)",
           gc.take, gc.array(R(0, 2)), [0])
    raises(gc.DTypeError, "take: indices must be integers, got float32", gc.take, x,
           gc.array(R(2)))
    raises(gc.DTypeError, "take: indices must be integers, got bool", gc.take, x, [True])
    raises(gc.ShapeError, "take: axis 2 is out of range", gc.take, x, [0], 2)


def test_take_grad_op():
    """The scatter-add that undoes take (repeated indices accumulate) and its VJP (take)."""
    op = registry.get("take_grad")
    idx = np.array([[1, 1], [-1, 0]])

    def reference(g, i):
        out = np.zeros((2, 4, 3))
        np.add.at(out, (slice(None), i), g)
        return out

    check_op(lambda g, i: apply(op, g, i, axis=1, size=4), [R(2, 2, 2, 3), idx],
             reference=reference)
    raises(gc.ShapeError, r"take_grad: gradient f32\[2,3\] does not fit indices i64\[2,2\]",
           apply, op, gc.array(R(2, 3)), gc.array(idx), axis=0, size=4)


# -- pad ----------------------------------------------------------------------------------

@pytest.mark.parametrize("x, width, value", [
    (R(2, 3), 1, 0.0), (R(2, 3), (1, 2), 0.0), (R(2, 3), ((0, 1), (2, 0)), 1.5),
    (R(2, 3), ((1,), (2,)), -1.0), (R(2, 3), ((1, 0),), 0.0), (R(3), (0, 0), 0.0),
    (R(0, 2), ((1, 1), (0, 1)), 2.0), (R(), 3, 0.0), (strided(2, 2), 1, 0.0),
    (R(2, 2, dtype=np.float64), ((1, 0), (0, 2)), 0.0),
])
def test_pad(x, width, value):
    check_op(lambda a: gc.pad(a, width, value), [x],
             reference=lambda a: np.pad(a, width, constant_values=value))


def test_pad_ints_attrs_and_errors():
    check_op(lambda a: gc.pad(a, (2, 1), 7), [ints(2, 2, dtype=np.int32)],
             reference=lambda a: np.pad(a, (2, 1), constant_values=7), grad=False)
    assert node_attrs(lambda a: gc.pad(a, 1), R(2, 3)) == [
        {"pad_width": ((1, 1), (1, 1)), "value": 0.0}]
    assert gc.pad(gc.array(R()), ()).shape == ()
    x = gc.array(R(2, 3))
    raises(gc.ShapeError, r"pad: pad_width \(-1, 1\) is not .* per axis of shape \(2, 3\)",
           gc.pad, x, (-1, 1))
    raises(gc.ShapeError, r"pad: pad_width .* per axis of shape \(2, 3\)", gc.pad, x,
           ((1, 1), (1, 1), (1, 1)))
    raises(gc.ShapeError, r"pad: pad_width \(1, 2, 3\)", gc.pad, x, (1, 2, 3))


# -- flatten ------------------------------------------------------------------------------

@pytest.mark.parametrize("x, start, end, want", [
    (R(2, 3, 4), 1, -1, (2, 12)), (R(2, 3, 4), 0, -1, (24,)), (R(2, 3, 4, 2), 1, 2, (2, 12, 2)),
    (R(2, 3), -1, -1, (2, 3)), (R(0, 3, 2), 1, -1, (0, 6)), (R(3, 0, 2), 0, 1, (0, 2)),
    (R(4, 3).T, 0, 1, (12,)),
])
def test_flatten(x, start, end, want):
    check_op(lambda a: gc.flatten(a, start, end), [x], reference=lambda a: a.reshape(want))


def test_flatten_method_ints_and_errors():
    check_op(lambda a: a.flatten(), [ints(2, 2, 2)], reference=lambda a: a.reshape(2, 4),
             grad=False)
    raises(gc.ShapeError, r"flatten: start_axis 2 comes after end_axis 1 for shape",
           gc.flatten, gc.array(R(2, 3, 4)), 2, 1)
    raises(gc.ShapeError, "flatten: axis 1 is out of range for a tensor of rank 1",
           gc.flatten, gc.array(R(3)))


# -- getitem ------------------------------------------------------------------------------

KEYS = [
    np.s_[1:3, ::2], np.s_[:, 0], np.s_[..., None], np.s_[[0, 2]], np.s_[-1], np.s_[::-1],
    np.s_[1], np.s_[1, 2], np.s_[1, 2, 3], np.s_[None, 1, :, None], np.s_[..., 1],
    np.s_[1, ...], np.s_[:, [2, 0, 2]], np.s_[[[0], [-1]]], np.s_[0, :, [1, 2]],
    np.s_[None, 0, [1, 2]], np.s_[0, None, [1, 2]], np.s_[:, 1:, [3]], np.s_[[1], 0],
    np.s_[..., [0, -1]], np.s_[np.array([1, 0])], np.s_[::-2, -1, 1::2], np.s_[:],
    np.s_[...], np.s_[5:], np.s_[[]],
]


@pytest.mark.parametrize("key", KEYS, ids=[str(i) for i in range(len(KEYS))])
def test_getitem(key):
    check_op(lambda a: a[key], [R(3, 4, 5)], reference=lambda a: a[key])


def test_getitem_more():
    check_op(lambda a: a[1:, ::-1], [strided(3, 2)], reference=lambda a: a[1:, ::-1])
    check_op(lambda a: a[::2, 1], [ints(3, 4)], reference=lambda a: a[::2, 1], grad=False)
    check_op(lambda a: a[0], [R(1)], reference=lambda a: a[0])
    check_op(lambda a: a[:, 1:3], [R(0, 4)], reference=lambda a: a[:, 1:3])
    check_op(lambda a, i: a[:, i], [R(2, 4), np.array([[3, 1]], np.int32)],
             reference=lambda a, i: a[:, i])
    x = gc.array(R(3, 2))
    np.testing.assert_array_equal(x[gc.array(np.array(2))].numpy(), x.numpy()[2])
    assert [r.shape for r in x] == [(2,)] * 3


def test_getitem_errors():
    x = gc.array(R(3, 4))
    raises(gc.ShapeError, "getitem: boolean mask indexing is not supported",
           x.__getitem__, np.array([True, False, True]))
    raises(gc.ShapeError, "getitem: boolean mask", x.__getitem__, x > 0)
    raises(gc.ShapeError, "getitem: boolean mask", x.__getitem__, True)
    raises(gc.ShapeError, r"getitem: index 3 is out of range for axis 0 of shape \(3, 4\)",
           x.__getitem__, 3)
    raises(gc.ShapeError, r"getitem: index -5 is out of range for axis 1 of shape \(3, 4\)",
           x.__getitem__, (0, -5))
    raises(gc.ShapeError, r"getitem: too many indices for shape \(3, 4\)", x.__getitem__,
           (0, 0, 0))
    raises(gc.ShapeError, "getitem: only one integer array index", x.__getitem__,
           ([0], [1]))
    raises(gc.ShapeError, "getitem: .*single ellipsis", x.__getitem__, (..., 0, ...))
    raises(gc.ShapeError, "getitem: index arrays must be integers, got float", x.__getitem__,
           [0.5])
    raises(gc.ShapeError, "getitem: unsupported index 'a'", x.__getitem__, "a")
    raises(gc.ShapeError, r"take: .*out of bounds", x.__getitem__, [0, 7])


def test_getitem_while_tracing():
    graph = gc.trace(lambda a: a[1:, 0], R(3, 4))
    assert [n.op.name for n in graph.nodes] == ["slice", "reshape"]
    with pytest.raises(gc.ShapeError, match="getitem: index 9 is out of range") as err:
        gc.trace(lambda a: a[9], R(3, 4))
    assert HERE in str(err.value)


# -- compositions and lowering facts ------------------------------------------------------

def test_chain_of_views_gradient():
    check_op(lambda a: gc.sin(gc.pad(a.T[::-1, 1:], 1).reshape(-1)[2:9]), [R(3, 2)],
             reference=lambda a: np.sin(np.pad(a.T[::-1, 1:], 1).reshape(-1)[2:9]))


def test_lowering_facts():
    views = ("reshape", "transpose", "broadcast_to", "expand_dims", "squeeze", "slice")
    for name in views:
        assert registry.get(name).view_of == 0, name
    for name in (*views, "concat", "stack", "split", "take", "pad", "slice_grad"):
        assert registry.get(name).kind is registry.Kind.INJECTIVE, name
