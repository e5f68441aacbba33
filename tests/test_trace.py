"""Tracing, jit, the symbolic Variable API, and the errors a trace raises."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc import autograd

HERE = "test_trace.py"


def test_slides_example_literally():
    A = gc.Variable('A')
    B = gc.Variable('B')
    C = B * A
    D = C + 1
    f = gc.compile(D)
    out = f(A=np.ones(10), B=np.ones(10) * 2)
    assert isinstance(out, gc.Tensor)
    np.testing.assert_array_equal(out.numpy(), np.full(10, 3.0))


def test_compile_infers_shapes_per_call_and_caches():
    A = gc.Variable('A')
    f = gc.compile(gc.exp(A) * 2)
    for shape in [(3,), (2, 5), (3,)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(f(A=x).numpy(), np.exp(x) * 2, rtol=1e-6)
    assert len(f._cache) == 2
    g = f.graph(A=np.ones((4,), np.float32))
    assert [v.type.shape for v in g.outputs] == [(4,)]


def test_compile_multiple_outputs_and_names():
    x = gc.Variable('x')
    y = gc.Variable('y')
    f = gc.compile(x + y, x * y)
    s, p = f(x=np.array([1.0, 2.0]), y=np.array([3.0, 4.0]))
    np.testing.assert_array_equal(s.numpy(), [4.0, 6.0])
    np.testing.assert_array_equal(p.numpy(), [3.0, 8.0])
    with pytest.raises(gc.GraphcError, match=r"missing \['y'\]"):
        f(x=np.ones(2))
    with pytest.raises(gc.GraphcError, match=r"unexpected \['z'\]"):
        f(x=np.ones(2), y=np.ones(2), z=np.ones(2))


def test_variable_declared_shape_is_checked():
    x = gc.Variable('x', shape=(3,), dtype='float32')
    assert x.shape == (3,)
    f = gc.compile(x * 2)
    with pytest.raises(gc.GraphcError, match="declares"):
        f(x=np.ones(4, np.float32))


def test_variable_shape_unknown_raises_trace_error():
    x = gc.Variable('x')
    with pytest.raises(gc.TraceError, match="known only when"):
        _ = (x + 1).shape


def test_variable_error_names_the_line_that_built_the_expression():
    a = gc.Variable('a')
    b = gc.Variable('b')
    bad = a + b  # the offending line
    f = gc.compile(bad)
    with pytest.raises(gc.ShapeError) as err:
        f(a=np.ones(3), b=np.ones(4))
    msg = str(err.value)
    assert "add" in msg and "(3,)" in msg and "(4,)" in msg and HERE in msg


def test_jit_matches_eager_and_caches_per_signature():
    calls = []

    @gc.jit
    def f(x, w):
        calls.append(1)
        return gc.relu(x * w + 1)

    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 2
    w = np.full(3, 0.5, np.float32)
    eager = gc.relu(gc.array(x) * gc.array(w) + 1)
    np.testing.assert_array_equal(f(x, w).numpy(), eager.numpy())
    f(x, w)
    assert len(calls) == 1
    f(x.astype(np.float64), w)           # new dtype: retrace
    f(np.ones((5, 3), np.float32), w)    # new shape: retrace
    assert len(calls) == 3 and f.cache_size == 3


def test_jit_retraces_on_training_flag():
    calls = []

    @gc.jit
    def f(x):
        calls.append(autograd.is_training())
        return x * 2

    f(np.ones(2))
    with autograd.train_mode():
        f(np.ones(2))
    f(np.ones(2))
    assert calls == [False, True]


def test_jit_static_argnames():
    @gc.jit(static_argnames="axis")
    def f(x, axis):
        return gc.sum(x, axis=axis)

    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(f(x, axis=0).numpy(), x.sum(0))
    np.testing.assert_array_equal(f(x, axis=1).numpy(), x.sum(1))
    assert f.cache_size == 2


def test_jit_pytrees_in_and_out():
    @gc.jit
    def f(params, inputs):
        h = inputs["x"] * params[0] + params[1]
        return {"h": h, "pair": (h * 2, [gc.exp(h)])}

    p = (np.float32(2) * np.ones(3, np.float32), np.ones(3, np.float32))
    out = f(p, {"x": np.arange(3, dtype=np.float32)})
    np.testing.assert_array_equal(out["h"].numpy(), [1, 3, 5])
    np.testing.assert_array_equal(out["pair"][0].numpy(), [2, 6, 10])
    np.testing.assert_allclose(out["pair"][1][0].numpy(), np.exp([1, 3, 5]), rtol=1e-6)


def test_trace_computes_no_numbers_and_names_inputs():
    seen = []

    def f(x, y):
        z = x * y
        seen.append(z)
        assert z.shape == (2, 3)  # shapes are known while tracing
        return gc.sum(z, axis=1)

    g = gc.trace(f, np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))
    assert [v.name for v in g.inputs] == ["x", "y"]
    assert seen[0].is_symbolic
    assert [n.op.name for n in g.nodes] == ["mul", "sum"]
    assert g.outputs[0].type == gc.types.TensorType((2,), "float32")
    text = str(g)
    assert "mul(%x, %y)" in text and "sum(" in text and "axis=(1,)" in text


@pytest.mark.parametrize("convert", [bool, float, int, lambda t: t.numpy(),
                                     lambda t: t.item()])
def test_value_of_traced_tensor_raises_naming_the_user_line(convert):
    def f(x):
        return convert(x > 0)  # data-dependent

    with pytest.raises(gc.TraceError) as err:
        gc.trace(f, np.ones((), np.float32))
    assert HERE in str(err.value)


def test_python_if_on_traced_tensor():
    @gc.jit
    def f(x):
        if x > 0:
            return x
        return -x

    with pytest.raises(gc.TraceError, match="control flow"):
        f(np.ones(()))


def test_captured_arrays_and_tensors_become_constants():
    table = np.array([1.0, 2.0, 3.0], np.float32)
    bias = gc.array([10.0, 20.0, 30.0])

    def f(x):
        return x * table + bias

    g = gc.trace(f, np.ones(3, np.float32))
    consts = g.inputs_by_role("constant")
    assert len(consts) == 2
    np.testing.assert_array_equal(g.constants[consts[0].name], table)
    out = gc.jit(f)(np.ones(3, np.float32))
    np.testing.assert_array_equal(out.numpy(), [11, 22, 33])


def test_nested_jit_inlines():
    inner = gc.jit(lambda x: x * 3)

    @gc.jit
    def outer(x):
        return inner(x) + 1

    np.testing.assert_array_equal(outer(np.ones(2)).numpy(), [4, 4])
    assert [n.op.name for n in outer.trace(np.ones(2)).nodes] == ["mul", "add"]


def test_compiled_executable_and_input_checks():
    f = gc.jit(lambda x: x + 1)
    exe = f.compiled(np.ones(3, np.float32))
    assert exe.graph.nodes[0].op.name == "add"
    assert exe.num_kernels == 1
    with pytest.raises(gc.ShapeError, match="expects f32"):
        exe(np.ones(4, np.float32))


def test_name_scope_prefixes_nodes():
    def f(x):
        with gc.name_scope("dense0"):
            return gc.relu(x)

    g = gc.trace(f, np.ones(2, np.float32))
    assert g.nodes[0].name == "dense0/relu"
    assert "dense0/relu" in str(g)


def test_unknown_backend():
    with pytest.raises(gc.BackendError, match="unknown backend"):
        gc.jit(lambda x: x, backend="nope")(np.ones(1))


def test_tensor_from_other_trace_is_rejected():
    leaked = []

    def f(x):
        leaked.append(x)
        return x

    gc.trace(f, np.ones(2))

    def g(y):
        return y + leaked[0]

    with pytest.raises(gc.TraceError, match="another trace"):
        gc.trace(g, np.ones(2))


def test_deep_variable_expression_does_not_recurse():
    x = gc.Variable('x')
    y = x
    for _ in range(3000):
        y = y + 1
    out = gc.compile(y)(x=np.zeros(1))
    assert out.numpy()[0] == 3000


def test_numpy_scalars_are_tensor_arguments_not_static():
    # regression: np.float64(2.0) was treated as a static leaf and traced as a float32 constant
    g = gc.trace(lambda s, x: x * s, np.float64(2.0), np.ones(2, np.float32))
    assert g.inputs[0].type == gc.types.TensorType((), "float64")
    assert g.outputs[0].type.dtype == "float64"
    f = gc.jit(lambda s, x: x * s)
    np.testing.assert_array_equal(f(np.float64(2.0), np.ones(2)).numpy(), [2.0, 2.0])
    np.testing.assert_array_equal(f(np.float64(3.0), np.ones(2)).numpy(), [3.0, 3.0])
    assert f.cache_size == 1


def test_shape_dependent_composites_work_on_variables():
    # regression: softmax reads its input's shape, which a Variable expression lacks
    x = gc.Variable('x')
    f = gc.compile(gc.log_softmax(x * 2, axis=-1), gc.layer_norm(x), backend="reference")
    xv = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    ls, ln = f(x=xv)
    np.testing.assert_allclose(ls.numpy(), gc.log_softmax(gc.array(xv * 2)).numpy(), rtol=1e-6)
    np.testing.assert_allclose(ln.numpy(), gc.layer_norm(gc.array(xv)).numpy(), rtol=1e-6)
    assert [n.op.name for n in f.graph(x=xv).nodes][:2] == ["mul", "max"]
