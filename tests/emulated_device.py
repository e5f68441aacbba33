"""A stand-in GPU for the CUDA executable on machines without one.

`EmulatedDriver` implements the interface of `graphc.backends.cuda.driver.CupyDriver` over
host memory: "device" arrays are numpy arrays, kernels are the generated CUDA C compiled
for the CPU by `cuda_emulator`, cuBLAS is numpy's matmul, and a CUDA graph is the captured
step list run again over the same static buffers. So `CudaExecutable`'s layouts, kernel
choice, launch arguments, scratch and staging buffers, sanitizer and graph mode are all
tested against the reference backend here; only the hardware is not.
"""

from __future__ import annotations

import cuda_emulator
import numpy as np


class EmulatedDriver:
    xp = np
    arch = "sm_90"
    sm_count = 2   # few blocks, so grid-stride loops take more than one trip

    def __init__(self):
        self.sources: list[str] = []   # every module loaded (tests compile them with nvcc)
        self.launches = 0
        self.captures = 0
        self.replays = 0

    def ptr(self, a) -> int:
        return a.__array_interface__["data"][0]

    def empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def to_device(self, a):
        return np.array(a)

    def view(self, base, offset, shape, dtype, strides):
        return np.ndarray(shape, dtype, buffer=base.reshape(-1).view(np.uint8),
                          offset=offset, strides=strides)

    def load(self, source: str):
        self.sources.append(source)
        module = cuda_emulator.load(source)
        driver = self

        class Counted:
            def get_function(self, name):
                fn = module.get_function(name)

                def launch(grid, block, args):
                    driver.launches += 1
                    fn(grid, block, args)
                return launch
        return Counted()

    def matmul(self, a, b, out) -> None:
        np.matmul(a, b, out=out)

    def capture(self, run):
        self.captures += 1
        driver = self

        class Replay:
            def launch(self):
                driver.replays += 1
                run()
        return Replay()

    def synchronize(self) -> None:
        pass
