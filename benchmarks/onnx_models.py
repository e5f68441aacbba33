"""graphc (an imported ONNX model, compiled with llvm) against onnxruntime's CPU provider,
same model file, same thread count, side by side in one run.

Models, written here as ONNX graphs the way exporters write them (Conv,
BatchNormalization, Relu, Add, MaxPool, GlobalAveragePool, Gemm, Concat, Flatten), with
seeded random weights and a symbolic batch dim:

- ResNet-50 (bottleneck blocks, 25.6M parameters), SqueezeNet 1.1 (fire modules), and a
  MobileNet-v1-style depthwise-separable network (width 1.0, 224x224);
- also, at batch 1, the shipped `light` ResNet-50 and SqueezeNet of the onnx package.

Each is timed at batch 1 and 8: medians of ``--repeat`` timed calls after warm-up, the two
runtimes alternating per round so machine noise hits both alike. ``--profile`` adds
graphc's per-kernel profile of each model (where the time goes).

    python benchmarks/onnx_models.py --threads 2 [--quick] [--profile] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

DEFAULT_THREADS = 2


# -- models ---------------------------------------------------------------------------------

class _Builder:
    """An ONNX graph under construction: nodes, seeded initializers, fresh names."""

    def __init__(self, seed: int = 0):
        from onnx import helper
        self.helper = helper
        self.nodes, self.inits = [], []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def weight(self, shape, scale: float | None = None) -> str:
        from onnx import numpy_helper
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = np.sqrt(2.0 / fan_in) if scale is None else scale
        data = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        name = self.name("w")
        self.inits.append(numpy_helper.from_array(data, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(self, x, c_in, c_out, k, stride=1, pad=0, groups=1, bias=False) -> str:
        ins = [x, self.weight((c_out, c_in // groups, k, k))]
        if bias:
            ins.append(self.weight((c_out,), 0.01))
        return self.node("Conv", ins, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, group=groups)

    def bn(self, x, c) -> str:
        return self.node("BatchNormalization",
                         [x, self._positive(c), self.weight((c,), 0.1),
                          self.weight((c,), 0.1), self._positive(c)], epsilon=1e-5)

    def _positive(self, c) -> str:
        from onnx import numpy_helper
        name = self.name("var")
        self.inits.append(numpy_helper.from_array(
            (self.rng.random(c) + 0.5).astype(np.float32), name))
        return name

    def conv_bn_relu(self, x, c_in, c_out, k, stride=1, pad=0, groups=1, relu=True) -> str:
        y = self.bn(self.conv(x, c_in, c_out, k, stride, pad, groups), c_out)
        return self.node("Relu", [y]) if relu else y

    def model(self, out: str, classes: int, name: str):
        h = self.helper
        from onnx import TensorProto
        x = h.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 224, 224])
        y = h.make_tensor_value_info(out, TensorProto.FLOAT, ["N", classes])
        graph = h.make_graph(self.nodes, name, [x], [y], self.inits)
        return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)],
                            producer_name="graphc-bench")


def _classifier(b: _Builder, x: str, c: int, classes: int) -> str:
    x = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    return b.node("Gemm", [x, b.weight((classes, c)), b.weight((classes,), 0.01)], transB=1)


def resnet50(classes: int = 1000):
    b = _Builder(50)
    x = b.conv_bn_relu("data", 3, 64, 7, 2, 3)
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = 64
    for stage, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        for i in range(blocks):
            stride = 2 if i == 0 and stage > 0 else 1
            y = b.conv_bn_relu(x, c_in, width, 1)
            y = b.conv_bn_relu(y, width, width, 3, stride, 1)
            y = b.conv_bn_relu(y, width, width * 4, 1, relu=False)
            short = x if i > 0 else b.conv_bn_relu(x, c_in, width * 4, 1, stride, relu=False)
            x = b.node("Relu", [b.node("Add", [y, short])])
            c_in = width * 4
    return b.model(_classifier(b, x, c_in, classes), classes, "resnet50")


def squeezenet(classes: int = 1000):
    """SqueezeNet 1.1."""
    b = _Builder(11)
    x = b.node("Relu", [b.conv("data", 3, 64, 3, 2, 0, bias=True)])
    c = 64

    def fire(x, c_in, s, e):
        sq = b.node("Relu", [b.conv(x, c_in, s, 1, bias=True)])
        e1 = b.node("Relu", [b.conv(sq, s, e, 1, bias=True)])
        e3 = b.node("Relu", [b.conv(sq, s, e, 3, 1, 1, bias=True)])
        return b.node("Concat", [e1, e3], axis=1), 2 * e
    pool = dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    x = b.node("MaxPool", [x], **pool)
    for s, e in [(16, 64), (16, 64)]:
        x, c = fire(x, c, s, e)
    x = b.node("MaxPool", [x], **pool)
    for s, e in [(32, 128), (32, 128)]:
        x, c = fire(x, c, s, e)
    x = b.node("MaxPool", [x], **pool)
    for s, e in [(48, 192), (48, 192), (64, 256), (64, 256)]:
        x, c = fire(x, c, s, e)
    x = b.node("Relu", [b.conv(x, c, classes, 1, bias=True)])
    out = b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)
    return b.model(out, classes, "squeezenet1_1")


def mobilenet(classes: int = 1000):
    """MobileNet v1 (width 1.0): depthwise 3x3 + pointwise 1x1 blocks."""
    b = _Builder(1)
    x = b.conv_bn_relu("data", 3, 32, 3, 2, 1)
    c = 32
    for c_out, stride in [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + \
            [(512, 1)] * 5 + [(1024, 2), (1024, 1)]:
        x = b.conv_bn_relu(x, c, c, 3, stride, 1, groups=c)
        x = b.conv_bn_relu(x, c, c_out, 1)
        c = c_out
    return b.model(_classifier(b, x, c, classes), classes, "mobilenet_v1")


MODELS = {"resnet50": resnet50, "squeezenet1.1": squeezenet, "mobilenet_v1": mobilenet}


def light_model(name: str):
    import onnx
    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        f"light_{name}.onnx")
    return onnx.load(path)


# -- timing ---------------------------------------------------------------------------------

def _median_pair(fa, fb, repeat: int, block: int = 5) -> tuple[float, float]:
    """Medians (seconds) of ``fa`` and ``fb`` over ``repeat`` timed calls each, run in
    alternating blocks of ``block`` calls whose first two are not timed: each runtime's
    worker threads spin for a while after a call (onnxruntime's, OpenBLAS's), and would
    otherwise steal the cores from the other's next call."""
    ta: list[float] = []
    tb: list[float] = []
    while len(ta) < repeat:
        for f, times in ((fa, ta), (fb, tb)):
            f()
            f()
            for _ in range(block):
                t = time.perf_counter()
                f()
                times.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def bench(name: str, proto, batch: int, threads: int, repeat: int, profile: bool) -> dict:
    import onnxruntime as ort

    import graphc as gc
    gc.set_num_threads(threads)
    data = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)) \
        .astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    in_name = session.get_inputs()[0].name
    t = time.perf_counter()
    model = gc.onnx.compile(proto, backend="llvm")
    got = np.asarray(model(data))
    first = time.perf_counter() - t
    want = session.run(None, {in_name: data})[0]
    err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
    tg, to = _median_pair(lambda: model(data), lambda: session.run(None, {in_name: data}),
                          repeat)
    row = {"model": name, "batch": batch, "threads": threads, "graphc_s": tg, "ort_s": to,
           "ratio": tg / to, "first_call_s": first, "max_rel_diff": err}
    if profile:
        with gc.profiler.profile() as p:
            exe_model = gc.onnx.compile(proto, backend="llvm")
            for _ in range(3):
                exe_model(data)
        row["profile"] = p.table()
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--quick", action="store_true", help="batch 1 only, 5 repeats")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--models", default="resnet50,squeezenet1.1,mobilenet_v1,light_resnet50,"
                                        "light_squeezenet")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    repeat = 5 if args.quick else args.repeat
    rows = []
    print(f"{'model':18s} {'batch':>5s} {'graphc llvm':>12s} {'onnxruntime':>12s} "
          f"{'ratio':>6s} {'first call':>10s} {'max rel diff':>12s}")
    for name in args.models.split(","):
        light = name.startswith("light_")
        proto = light_model(name[6:]) if light else MODELS[name]()
        for batch in (1,) if light or args.quick else (1, 8):
            row = bench(name, proto, batch, args.threads, repeat, args.profile)
            rows.append(row)
            print(f"{name:18s} {batch:5d} {row['graphc_s'] * 1e3:9.2f} ms "
                  f"{row['ort_s'] * 1e3:9.2f} ms {row['ratio']:6.2f} "
                  f"{row['first_call_s']:9.2f}s {row['max_rel_diff']:12.2e}")
            if args.profile:
                print(row["profile"])
            sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
