"""LLVM CPU backend (work in progress): native code for fused kernels through llvmlite.

`vmath` emits the transcendental primitives as straight-line IR so loops using them vectorize.
"""
