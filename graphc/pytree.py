"""Nested tuples, lists and dicts of tensors: flattened to leaves and rebuilt.

Tensors, arrays and numpy scalars are leaves; anything else (Python numbers, strings,
None) is static and part of the tree description, which is hashable so that it can key a
compile cache: a changed Python number retraces.
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor

_LEAF_TYPES = (Tensor, np.ndarray, np.generic)


def _is_leaf(x) -> bool:
    return isinstance(x, _LEAF_TYPES) or hasattr(x, "__cuda_array_interface__")


def flatten(tree) -> tuple[list, tuple]:
    """The leaves of ``tree`` in order, and a hashable description of everything else."""
    leaves: list = []

    def go(x):
        if _is_leaf(x):
            leaves.append(x)
            return ("*",)
        if isinstance(x, tuple | list):
            return (type(x).__name__, tuple(go(c) for c in x))
        if isinstance(x, dict):
            keys = tuple(sorted(x, key=repr))
            return ("dict", keys, tuple(go(x[k]) for k in keys))
        return ("static", x)

    return leaves, go(tree)


def unflatten(treedef: tuple, leaves) -> object:
    it = iter(leaves)

    def build(d):
        tag = d[0]
        if tag == "*":
            return next(it)
        if tag == "tuple":
            return tuple(build(c) for c in d[1])
        if tag == "list":
            return [build(c) for c in d[1]]
        if tag == "dict":
            return {k: build(c) for k, c in zip(d[1], d[2])}
        return d[1]

    return build(treedef)
