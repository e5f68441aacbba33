"""Devices and the array namespace each one computes with.

An op's eager implementation is written once against an array namespace ``xp`` (numpy
on the CPU, cupy on the GPU); the device of a tensor picks the namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BackendError


@dataclass(frozen=True)
class Device:
    type: str  # "cpu" or "gpu"
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.type == "cpu" else f"gpu({self.index})"

    @property
    def xp(self):
        """The array namespace of this device."""
        if self.type == "cpu":
            return np
        try:
            import cupy
        except ImportError as e:
            raise BackendError(
                "GPU tensors need cupy: pip install 'graphc[gpu]' (cupy-cuda13x)") from e
        return cupy


_CPU = Device("cpu")


def cpu() -> Device:
    return _CPU


def gpu(index: int = 0) -> Device:
    return Device("gpu", index)


def as_device(device) -> Device:
    """Accept a Device, ``'cpu'``, ``'cuda'``/``'gpu'`` or ``'gpu:1'``/``'cuda:1'``."""
    if device is None:
        return _CPU
    if isinstance(device, Device):
        return device
    if isinstance(device, str):
        name, _, index = device.partition(":")
        if name == "cpu":
            return _CPU
        if name in ("gpu", "cuda"):
            return Device("gpu", int(index or 0))
    raise BackendError(f"unknown device {device!r}; use gc.cpu(), gc.gpu(i) or 'cuda'")


def device_of(array) -> Device:
    """Where ``array`` lives: a GPU for CUDA arrays (cupy), else the CPU."""
    if type(array) is np.ndarray or not hasattr(array, "__cuda_array_interface__"):
        return _CPU
    return Device("gpu", int(getattr(array.device, "id", 0)))
