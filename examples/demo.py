"""graphc in one screen: the same model run imperatively and compiled, side by side.

A 2-layer MLP (784-256-10, batch 64) written with plain graphc ops is traced into a graph,
printed, compiled with `gc.jit`, and timed both ways; then the MXNet slides' symbolic
example. Both runs must give the same numbers; which is faster depends on the backend
(the numpy `reference` backend is an interpreter, so expect no speed-up from it).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import graphc as gc

BATCH, IN, HIDDEN, OUT = 64, 784, 256, 10
WARMUP, REPEATS = 10, 200


def mlp(x, w1, b1, w2, b2):
    h = gc.relu(x @ w1 + b1)
    return gc.softmax(h @ w2 + b2)


def median_seconds(fns, *args) -> list[float]:
    """Median time per call of each of ``fns``, interleaved so that noise hits all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for rep in range(WARMUP + REPEATS):
        for fn, ts in zip(fns, times):
            start = time.perf_counter()
            fn(*args)
            if rep >= WARMUP:
                ts.append(time.perf_counter() - start)
    return [statistics.median(ts) for ts in times]


def main() -> None:
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(s).astype(np.float32) * scale
              for s, scale in (((IN, HIDDEN), IN ** -0.5), ((HIDDEN,), 0.1),
                               ((HIDDEN, OUT), HIDDEN ** -0.5), ((OUT,), 0.1))]
    x = rng.standard_normal((BATCH, IN)).astype(np.float32)
    args = [gc.array(a) for a in (x, *params)]

    print(gc.trace(mlp, *args))

    compiled = gc.jit(mlp)  # backend: gc.backends.DEFAULT
    eager_out, compiled_out = mlp(*args), compiled(*args)
    exe = compiled.compiled(*args)
    print(f"\nbackend {gc.backends.DEFAULT!r}: {exe.num_kernels} kernels")

    t_eager, t_compiled = median_seconds((mlp, compiled), *args)
    print(f"imperative: {t_eager * 1e6:9.1f} us per call (median of {REPEATS})")
    print(f"compiled:   {t_compiled * 1e6:9.1f} us per call (median of {REPEATS})")
    diff = float(np.max(np.abs(eager_out.numpy() - compiled_out.numpy())))
    print(f"max abs difference: {diff:.3e}")

    # The symbolic API, as on the original MXNet slides.
    A = gc.Variable("A")
    B = gc.Variable("B")
    C = B * A
    D = C + 1
    f = gc.compile(D)
    print(f"slides: f(A=ones(10), B=2*ones(10)) = {f(A=np.ones(10), B=np.ones(10) * 2).tolist()}")


if __name__ == "__main__":
    main()
