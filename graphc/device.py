"""Devices and the array namespace each one computes with.

An op's eager implementation is written once against an array namespace ``xp`` (numpy
on the CPU, cupy on the GPU); the device of a tensor picks the namespace. cupy is
imported only when a GPU is used (``Device.xp``), never by ``import graphc``.

`move` puts an array on a device (no copy when it is there already); arrays go between
GPUs through the host, which is slow but always works.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from .errors import BackendError, GraphcError

_NO_SCOPE = contextlib.nullcontext()


class DeviceError(GraphcError, ValueError):
    """Tensors on different devices used together, or a device graphc cannot use."""


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

    def scope(self):
        """A context making this device cupy's current one (nothing to do on the CPU), so
        that arrays an op allocates land on it."""
        if self.type == "cpu":
            return _NO_SCOPE
        return self.xp.cuda.Device(self.index)


_CPU = Device("cpu")


def cpu() -> Device:
    return _CPU


def gpu(index: int = 0) -> Device:
    return Device("gpu", index)


def as_device(device) -> Device:
    """Accept a Device, ``'cpu'``, ``'cuda'``/``'gpu'``, ``'gpu:1'``/``'cuda:1'`` or
    ``'gpu(1)'`` (what ``str(gc.gpu(1))`` prints)."""
    if device is None:
        return _CPU
    if isinstance(device, Device):
        return device
    if isinstance(device, str):
        text = device.strip().lower()
        if text.endswith(")") and "(" in text:
            name, _, index = text[:-1].partition("(")
        else:
            name, _, index = text.partition(":")
        try:
            number = int(index or 0)
        except ValueError:
            number = -1
        if name == "cpu" and number == 0:
            return _CPU
        if name in ("gpu", "cuda") and number >= 0:
            return Device("gpu", number)
    raise BackendError(f"unknown device {device!r}; use gc.cpu(), gc.gpu(i), 'cpu', "
                       "'cuda' or 'cuda:i'")


def device_of(array) -> Device:
    """Where ``array`` lives: a GPU for CUDA arrays (cupy), else the CPU."""
    if type(array) is np.ndarray or not hasattr(array, "__cuda_array_interface__"):
        return _CPU
    dev = getattr(array, "device", None)
    if isinstance(dev, Device):  # a graphc Tensor
        return dev
    index = getattr(dev, "id", None)  # cupy.cuda.Device
    if index is None:
        index = getattr(dev, "index", None)  # torch.device
    return Device("gpu", int(index or 0))


def to_host(array) -> np.ndarray:
    """``array`` as a numpy array: a copy from the GPU, else ``np.asarray``."""
    if type(array) is np.ndarray:
        return array
    if hasattr(array, "__cuda_array_interface__"):
        get = getattr(array, "get", None)  # cupy
        if get is None:
            return np.asarray(device_of(array).xp.asarray(array).get())
        return get()
    return np.asarray(array)


def move(array, device: Device, dtype=None):
    """``array`` (any array-like) on ``device`` with ``dtype`` (default: its own),
    without a copy when it is there already with that dtype."""
    if device.type == "cpu":
        return np.asarray(to_host(array), dtype)
    xp = device.xp
    if not hasattr(array, "__cuda_array_interface__"):
        array = np.asarray(array, dtype)  # lists (of tensors), scalars: built on the host
    elif device_of(array) != device:
        array = to_host(array)  # from another GPU: through the host
    with device.scope():
        return xp.asarray(array, dtype)
