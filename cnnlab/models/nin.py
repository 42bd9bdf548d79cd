"""Network in Network (seed 004, d2l).

Lin, Chen, Yan, "Network In Network", ICLR 2014.
"""

from __future__ import annotations

from torch import nn

from ..i18n import N_
from ._registry import ModelSpec, register


def nin_block(in_channels: int, out_channels: int, kernel_size: int, strides: int, padding: int):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
    )


def nin_net(num_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    """Seed 004's ``nin_net``: no FC layers; the last NiN block has one channel per class and
    global average pooling turns it into the logits."""
    return nn.Sequential(
        nin_block(in_channels, 96, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(96, 256, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(256, 384, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(384, num_classes, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )


register(ModelSpec(
    name="d2l_nin", display_name="NiN (d2l)", family="nin", year=2013,
    paper="Lin et al., Network In Network, ICLR 2014", seed="004", input_shape=(3, 224, 224),
    num_classes=10, builder=nin_net,
    notes=N_("1x1 convolutions act as per-pixel MLPs; global average pooling replaces the FC "
          "layers. Note: the last block ends in a ReLU, so logits are never negative (as in d2l)."),
))
