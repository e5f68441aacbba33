"""The pass pipeline: which passes run at which opt level, and compiling a graph with them.

A pass is a plain function Graph -> Graph registered by name (`register_pass`); the pass
modules of this package register themselves when imported. `optimize` runs a list of
passes, validating the graph after each when asked (``validate=True`` or
``GRAPHC_VALIDATE=1``, which the test suite sets) and writing the IR text after each,
numbered, to ``dump_ir`` or ``GRAPHC_DUMP_IR``, so a user sees what every pass did.
`compile_graph` is what `gc.jit`, `gc.compile` and `hybridize` call: optimize, plan memory,
hand the result to a backend.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable

from ..errors import GraphcError
from ..graph import Graph

Pass = Callable[[Graph], Graph]

_PASSES: dict[str, Pass] = {}

#: The passes of each opt level, by name. 0 runs the traced graph as it is.
OPT_LEVELS: dict[int, tuple[str, ...]] = {
    0: (),
    1: ("simplify",),
    2: ("simplify", "fuse"),
    3: ("simplify", "fold_batch_norm", "simplify", "fuse"),
}
DEFAULT_OPT_LEVEL = 2


def register_pass(name: str) -> Callable[[Pass], Pass]:
    def deco(fn: Pass) -> Pass:
        _PASSES[name] = fn
        return fn
    return deco


def _load_pass_modules() -> None:
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "pipeline":
            importlib.import_module(f"{__package__}.{info.name}")


def get_pass(name: str | Pass) -> Pass:
    if callable(name):
        return name
    if name not in _PASSES:
        _load_pass_modules()
    if name not in _PASSES:
        raise GraphcError(f"unknown pass {name!r}; available: {sorted(_PASSES)}")
    return _PASSES[name]


def passes_for(opt_level: int | None) -> tuple[str, ...]:
    level = DEFAULT_OPT_LEVEL if opt_level is None else opt_level
    if level not in OPT_LEVELS:
        raise GraphcError(f"opt_level must be one of {sorted(OPT_LEVELS)}, got {opt_level!r}")
    return OPT_LEVELS[level]


def _pass_name(p) -> str:
    return p if isinstance(p, str) else getattr(p, "__name__", "pass")


def optimize(graph: Graph, opt_level: int | None = None, passes=None,
             dump_ir: str | None = None, validate: bool | None = None) -> Graph:
    """``graph`` after the passes of ``opt_level`` (or the explicit ``passes`` list)."""
    names = list(passes_for(opt_level) if passes is None else passes)
    dump_ir = dump_ir or os.environ.get("GRAPHC_DUMP_IR") or None
    if validate is None:
        validate = os.environ.get("GRAPHC_VALIDATE", "") not in ("", "0")
    if dump_ir:
        os.makedirs(dump_ir, exist_ok=True)
        _dump(dump_ir, graph, 0, "traced")
    for i, p in enumerate(names, 1):
        fn = get_pass(p)
        graph = fn(graph)
        if validate:
            try:
                graph.validate()
            except GraphcError as e:
                raise GraphcError(f"pass {_pass_name(p)!r} produced an invalid graph: "
                                  f"{e}") from None
        if dump_ir:
            _dump(dump_ir, graph, i, _pass_name(p))
    return graph


def _dump(directory: str, graph: Graph, i: int, name: str) -> None:
    path = os.path.join(directory, f"{graph.name}-{i:02d}-{name}.txt")
    with open(path, "w") as f:
        f.write(str(graph) + "\n")


def compile_graph(graph: Graph, backend: str | None = None, *, opt_level: int | None = None,
                  passes=None, dump_ir: str | None = None, validate: bool | None = None,
                  donate=(), sanitize: bool | None = None, **backend_options):
    """Optimize ``graph``, plan its memory and compile it with ``backend``; the executable
    keeps the optimized graph as ``.graph`` and the plan as ``.memory_plan``.

    ``donate``: runtime inputs (names, or indices among the non-constant inputs) whose
    buffers the plan may overwrite in place. ``sanitize``: run the plan literally and poison
    dead buffers (the reference backend; default: ``GRAPHC_SANITIZE``)."""
    from ..backends import get_backend
    from .memory import plan_memory
    optimized = optimize(graph, opt_level, passes, dump_ir, validate)
    plan = plan_memory(optimized, source=graph, donate=donate)
    if sanitize is not None:
        backend_options["sanitize"] = sanitize
    exe = get_backend(backend).compile(optimized, memory_plan=plan, **backend_options)
    exe.source_graph = graph
    exe.memory_plan = plan
    return exe
