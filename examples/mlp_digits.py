"""An MLP on the 8x8 handwritten digits, trained imperatively and then hybridized
(see examples/digits.py for what both runs share and what the report means).

    python examples/mlp_digits.py            # default: 15 epochs per mode
    python examples/mlp_digits.py --quick    # a few seconds, for smoke tests
"""

from __future__ import annotations

import digits

from graphc import nn


def build_net() -> nn.HybridSequential:
    net = nn.HybridSequential()
    net.add(nn.Dense(128, activation="relu"), nn.Dense(64, activation="relu"), nn.Dense(10))
    return net


if __name__ == "__main__":
    digits.main(build_net, __doc__.split("\n\n")[0], images_as="flat", epochs=15, lr=3e-3)
