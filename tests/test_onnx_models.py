"""ONNX conformance on models nobody here wrote: the test data shipped inside the onnx
package (onnx/backend/test/data).

- ``light``: AlexNet, DenseNet-121, Inception v1/v2, ResNet-50, ShuffleNet, SqueezeNet,
  VGG-19, ZFNet-512 (weights filled by ConstantOfShape, initializers listed among the graph
  inputs as older exporters wrote them), through the full pipeline on the reference and
  llvm backends, against the shipped output for an all-ones input (relative error 1e-4).
- ``pytorch-converted`` and ``pytorch-operator``: every case, against its shipped outputs
  (onnx's own backend-test tolerances, rtol 1e-3 / atol 1e-7). Every case passes; one
  that stops passing fails.
- the importer's contracts: inputs by position or ONNX name, initializer-listed inputs are
  not inputs, every unsupported op reported at once, damaged files refused, `graphc info`
  and `graphc run` on .onnx files.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="ONNX tests need the onnx package (graphc[onnx])")
from onnx import helper, numpy_helper  # noqa: E402

import graphc as gc  # noqa: E402
import graphc.onnx  # noqa: E402,F401
from graphc.onnx import OnnxImportError  # noqa: E402

DATA = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")
LIGHT = sorted(f[len("light_"):-len(".onnx")] for f in os.listdir(os.path.join(DATA, "light"))
               if f.endswith(".onnx"))


def _host(x) -> np.ndarray:
    return np.asarray(x.numpy() if isinstance(x, gc.Tensor) else x)


@pytest.mark.parametrize("backend", ["reference", "llvm"])
@pytest.mark.parametrize("name", LIGHT)
def test_light_models_match_shipped_outputs(name, backend):
    path = os.path.join(DATA, "light", f"light_{name}.onnx")
    want = numpy_helper.to_array(onnx.load_tensor(
        os.path.join(DATA, "light", f"light_{name}_output_0.pb")))
    model = gc.onnx.compile(path, backend=backend)
    ones = [np.ones(dims, dtype) for _, dtype, dims in model.model.inputs]
    got = _host(model(*ones))
    assert got.shape == want.shape and got.dtype == want.dtype
    err = np.abs(got.astype(np.float64) - want).max() / np.abs(want).max()
    assert err <= 1e-4, f"{name} on {backend}: relative error {err:.3g}"


def _cases(kind: str) -> list[str]:
    return sorted(c for c in os.listdir(os.path.join(DATA, kind))
                  if os.path.exists(os.path.join(DATA, kind, c, "model.onnx")))


def _tensors(folder: str, prefix: str) -> list[np.ndarray]:
    files = sorted((f for f in os.listdir(folder) if f.startswith(prefix)),
                   key=lambda f: int(f[len(prefix):-3]))
    return [numpy_helper.to_array(onnx.load_tensor(os.path.join(folder, f))) for f in files]


@pytest.mark.parametrize("kind,case", [(k, c) for k in ("pytorch-converted", "pytorch-operator")
                                        for c in _cases(k)])
def test_pytorch_cases_match_shipped_outputs(kind, case):
    folder = os.path.join(DATA, kind, case)
    model = gc.onnx.compile(os.path.join(folder, "model.onnx"), backend="llvm")
    data = os.path.join(folder, "test_data_set_0")
    ins, wants = _tensors(data, "input_"), _tensors(data, "output_")
    outs = model(*ins)
    outs = outs if isinstance(outs, tuple) else (outs,)
    assert len(outs) == len(wants)
    for got, want in zip(outs, wants):
        got = _host(got)
        assert got.shape == want.shape, f"{case}: shape {got.shape}, expected {want.shape}"
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7, err_msg=case)


# -- the importer's contracts -------------------------------------------------------------------

def _add_model(opset: int = 13, initializer_as_input: bool = False):
    """y = x + b + w, with b and w initializers (listed among the inputs if asked)."""
    f = onnx.TensorProto.FLOAT
    b = numpy_helper.from_array(np.arange(3, dtype=np.float32), "b")
    w = numpy_helper.from_array(np.full(3, 10, np.float32), "w")
    inputs = [helper.make_tensor_value_info("x:0", f, ["N", 3])]
    if initializer_as_input:
        inputs += [helper.make_tensor_value_info("b", f, [3]),
                   helper.make_tensor_value_info("w", f, [3])]
    nodes = [helper.make_node("Add", ["x:0", "b"], ["t"]),
             helper.make_node("Add", ["t", "w"], ["y"])]
    graph = helper.make_graph(nodes, "add", inputs,
                              [helper.make_tensor_value_info("y", f, ["N", 3])], [b, w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("listed", [False, True], ids=["", "initializers_listed"])
def test_inputs_by_position_or_name(listed):
    model = gc.onnx.compile(_add_model(initializer_as_input=listed))
    assert model.input_names == ["x:0"]
    x = np.ones((2, 3), np.float32)
    want = x + np.arange(3) + 10
    np.testing.assert_array_equal(_host(model(x)), want)
    np.testing.assert_array_equal(_host(model(**{"x:0": x})), want)
    exe = model.compiled(x)   # the executable for this signature, as gc.jit's
    assert [v.name for v in exe.graph.inputs if v.role != "constant"] == ["x_0"]
    with pytest.raises(OnnxImportError, match="not an input"):
        model(y=x)
    with pytest.raises(OnnxImportError, match="expects float32"):
        model(x.astype(np.float64))


def test_load_names_graph_inputs_after_the_model():
    g = gc.onnx.load(_add_model(), input_shapes={"x:0": (4, 3)})
    assert [v.name for v in g.inputs if v.role != "constant"] == ["x_0"]
    assert g.outputs[0].shape == (4, 3)
    with pytest.raises(OnnxImportError, match="symbolic dims"):
        gc.onnx.load(_add_model())


def test_every_unsupported_op_is_reported_at_once():
    f = onnx.TensorProto.FLOAT
    nodes = [helper.make_node("Frobnicate", ["x"], ["a"]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Quux", ["b"], ["c"], domain="com.example")]
    graph = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", f, [2])],
                              [helper.make_tensor_value_info("c", f, [2])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(OnnxImportError, match=r"Frobnicate, com\.example\.Quux"):
        gc.onnx.compile(proto)


def test_damaged_or_missing_files_are_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf message\xff\xff\xff")
    with pytest.raises(OnnxImportError, match="not a readable ONNX model"):
        gc.onnx.compile(str(bad))
    with pytest.raises(OnnxImportError, match="cannot read"):
        gc.onnx.compile(str(tmp_path / "missing.onnx"))


def test_cli_info_and_run_accept_onnx(tmp_path, capsys):
    from graphc.cli import main
    path = tmp_path / "add.onnx"
    onnx.save(_add_model(), str(path))
    assert main(["info", str(path), "--shape", "x:0=2,3"]) == 0
    out = capsys.readouterr().out
    assert "x_0" in out and "(2, 3)" in out
    x = np.full((2, 3), 2, np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(path), "--input", f"x:0={tmp_path / 'x.npy'}",
                 "--out", str(tmp_path / "y.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), x + np.arange(3) + 10)
    assert main(["info", str(path)]) == 2   # symbolic batch dim, no --shape
    assert "symbolic dims" in capsys.readouterr().err


def test_an_op_newer_than_the_models_opset_is_refused():
    f = onnx.TensorProto.FLOAT
    graph = helper.make_graph([helper.make_node("Gelu", ["x"], ["y"])], "gelu",
                              [helper.make_tensor_value_info("x", f, [2])],
                              [helper.make_tensor_value_info("y", f, [2])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(OnnxImportError, match=r"Gelu \(since opset 20; the model imports 13\)"):
        gc.onnx.compile(proto)


def test_a_weight_read_by_several_nodes_is_one_constant():
    f = onnx.TensorProto.FLOAT
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(2, 2), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]),
             helper.make_node("MatMul", ["a", "w"], ["y"])]
    graph = helper.make_graph(nodes, "mm", [helper.make_tensor_value_info("x", f, [3, 2])],
                              [helper.make_tensor_value_info("y", f, [3, 2])], [w])
    g = gc.onnx.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert len([v for v in g.inputs if v.role == "constant"]) == 1


@pytest.mark.parametrize("name", ["mlp", "lenet", "lstm_lm", "transformer", "lenet_constants"])
def test_export_then_import_gives_the_same_model(name, tmp_path):
    """graphc -> ONNX -> graphc (llvm): the imported model computes what the original
    does on the reference backend (onnxruntime's side is tests/test_onnx_export.py)."""
    import models as M
    fn, args = M.INFERENCE[name]()
    path = tmp_path / f"{name}.onnx"
    gc.onnx.export(gc.trace(fn, *args), path)
    imported = gc.onnx.compile(str(path), backend="llvm")
    got = imported(*args)
    got = got if isinstance(got, tuple) else (got,)
    want = gc.jit(fn, backend="reference")(*args)
    want = want if isinstance(want, tuple | list) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(_host(g), _host(w), rtol=1e-5, atol=1e-6, err_msg=name)
