"""A LeNet-style CNN on the 8x8 handwritten digits, trained imperatively and then
hybridized (see examples/digits.py for what both runs share and what the report means).

    python examples/lenet_digits.py            # default: 20 epochs per mode
    python examples/lenet_digits.py --quick    # a few seconds, for smoke tests
"""

from __future__ import annotations

import digits

from graphc import nn


def build_net() -> nn.HybridSequential:
    """LeNet scaled to 8x8 inputs: 'same' 3x3 convolutions, two 2x2 poolings (8 -> 4 -> 2)."""
    net = nn.HybridSequential()
    net.add(nn.Conv2D(16, kernel_size=3, padding=1, activation="relu"),
            nn.MaxPool2D(pool_size=2),
            nn.Conv2D(32, kernel_size=3, padding=1, activation="relu"),
            nn.MaxPool2D(pool_size=2),
            nn.Flatten(),
            nn.Dense(64, activation="relu"),
            nn.Dense(10))
    return net


if __name__ == "__main__":
    digits.main(build_net, __doc__.split("\n\n")[0], images_as="nchw", epochs=20, lr=5e-3)
