"""Convolution and pooling library nodes for the LLVM backend (not yet native: every node
runs in the reference interpreter)."""

from __future__ import annotations

from ...graph import Node


def handles(node: Node) -> bool:
    """Whether `ConvKernel` compiles ``node`` natively."""
    return False


class ConvKernel:
    def __init__(self, node: Node, name: str, builder, make_kernel):
        raise NotImplementedError
