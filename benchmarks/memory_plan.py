"""Memory plans of the issue-4 models: naive vs in-place vs arena vs the lower bound.

For each model (MLP 784-512-512-10 batch 64, LeNet-style CNN batch 64, a small LSTM
language model, a pre-LN transformer encoder block batch 8 x seq 128 x d 256) and opt
level, the table gives the plan of

- ``inference``: the model function under gc.jit;
- ``train step``: gc.jit of forward + gc.value_and_grad + SGD update (one graph);
- ``hybrid fwd`` / ``hybrid bwd``: the forward (outputs + saved activations) and backward
  graphs that `graphc.passes.autodiff.differentiate` makes of the model's graph, as a
  hybridized block runs them under autograd.record.

Columns: naive (every op output of the traced graph in its own buffer), in-place (arena
buffers after in-place and views, unshared), arena, the lower bound (most bytes live at
one step of the chosen order), arena/naive (target <= 25% inference, <= 50% training) and
arena/lower bound (target <= 1.10). Sizes are 64-byte aligned.

    python benchmarks/memory_plan.py [--levels 0,2] [--models mlp,lenet] [--plans]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import models as M  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.passes import pipeline  # noqa: E402
from graphc.passes.autodiff import differentiate  # noqa: E402
from graphc.passes.memory import format_bytes, plan_memory  # noqa: E402

FULL = {
    "mlp": lambda: M.mlp_spec(batch=64),
    "lenet": lambda: M.lenet_spec(batch=64),
    "lstm_lm": lambda: M.lstm_lm_spec(steps=16, batch=8, vocab=32, embed=32, hidden=64),
    "transformer": lambda: M.transformer_spec(batch=8, seq=128, d=256, ffn=1024),
}
DESCRIPTION = {
    "mlp": "MLP 784-512-512-10, batch 64",
    "lenet": "LeNet-style CNN 1x12x12, batch 64",
    "lstm_lm": "LSTM LM vocab 32, embed 32, hidden 64, 16 steps x batch 8",
    "transformer": "pre-LN encoder block, 4 heads, d 256, FFN 1024, batch 8 x seq 128",
}


def graphs(name: str):
    """(mode, graph) pairs for one model at full size."""
    M.SPECS[name] = FULL[name]
    spec = FULL[name]()
    fn, args = spec.inference()
    yield "inference", gc.trace(fn, *args)
    fn, args = M.train_step(name)
    yield "train step", gc.trace(fn, *args)

    def logits(*a):
        return spec.logits(*a)
    logits.__name__ = f"{name}_logits"
    graph = gc.trace(logits, *spec.data, *spec.params)
    n_data = len(spec.data)
    params = [i for i, v in enumerate(graph.inputs) if i >= n_data and v.role != "constant"]
    diff = differentiate(graph, params)
    yield "hybrid fwd", diff.forward
    yield "hybrid bwd", diff.backward


def landed(level: int) -> bool:
    try:
        for p in pipeline.OPT_LEVELS[level]:
            pipeline.get_pass(p)
    except gc.GraphcError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="0,2")
    ap.add_argument("--models", default=",".join(FULL))
    ap.add_argument("--plans", action="store_true", help="print every plan's buffer table")
    opts = ap.parse_args()
    levels = [int(x) for x in opts.levels.split(",")]
    for level in levels:
        if not landed(level):
            print(f"opt_level {level}: passes {pipeline.OPT_LEVELS[level]} not all "
                  "registered yet; skipped")
    levels = [lvl for lvl in levels if landed(lvl)]
    header = (f"{'model':<12} {'mode':<11} {'O':>2} {'nodes':>6} {'naive':>11} "
              f"{'in-place':>11} {'arena':>11} {'lower bd':>11} {'arena/naive':>11} "
              f"{'arena/lb':>9} {'plan s':>7}  ok")
    print(header)
    print("-" * len(header))
    misses = []
    for name in opts.models.split(","):
        for mode, graph in graphs(name):
            for level in levels:
                exe = pipeline.compile_graph(graph, "reference", opt_level=level)
                plan = exe.memory_plan
                t = time.perf_counter()
                plan_memory(exe.graph, source=graph)  # timed again on its own
                secs = time.perf_counter() - t
                r_naive = plan.arena_bytes / plan.naive_bytes
                r_lb = plan.arena_bytes / plan.lower_bound_bytes \
                    if plan.lower_bound_bytes else 1.0
                target = 0.25 if mode == "inference" else 0.5
                ok = r_naive <= target and r_lb <= 1.10
                if not ok:
                    misses.append(f"{name} {mode} O{level}")
                print(f"{name:<12} {mode:<11} {level:>2} {len(exe.graph.nodes):>6} "
                      f"{format_bytes(plan.naive_bytes):>11} "
                      f"{format_bytes(plan.inplace_bytes):>11} "
                      f"{format_bytes(plan.arena_bytes):>11} "
                      f"{format_bytes(plan.lower_bound_bytes):>11} {r_naive:>11.1%} "
                      f"{r_lb:>9.3f} {secs:>7.3f}  {'yes' if ok else 'NO'}")
                if opts.plans:
                    print(plan)
    print()
    for name in opts.models.split(","):
        print(f"{name}: {DESCRIPTION[name]}")
    print("targets: arena <= 1.10 x lower bound; arena <= 25% of naive (inference), "
          "<= 50% (training)")
    print("all targets met" if not misses else f"targets missed: {', '.join(misses)}")


if __name__ == "__main__":
    main()
