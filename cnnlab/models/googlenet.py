"""GoogLeNet (Inception v1): seed 000's version and seed 004's d2l version.

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import FixedFlatten
from ..i18n import N_
from ._registry import ModelSpec, register

PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"


class Inception(nn.Module):
    """Seed 000's Inception block. Faithful to the seed, the "5x5" branch uses a 3x3
    convolution (as in the popular kuangliu CIFAR code it derives from)."""

    def __init__(self, in_planes, n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_planes):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(in_planes, n1x1, kernel_size=1), nn.ReLU(True))
        self.b2 = nn.Sequential(
            nn.Conv2d(in_planes, n3x3red, kernel_size=1), nn.ReLU(True),
            nn.Conv2d(n3x3red, n3x3, kernel_size=3, padding=1), nn.ReLU(True),
        )
        self.b3 = nn.Sequential(
            nn.Conv2d(in_planes, n5x5red, kernel_size=1), nn.ReLU(True),
            nn.Conv2d(n5x5red, n5x5, kernel_size=3, padding=1), nn.ReLU(True),
        )
        self.b4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1),
            nn.Conv2d(in_planes, pool_planes, kernel_size=1), nn.ReLU(True),
        )

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    """Seed 000's GoogLeNet: 224x224 input, AvgPool2d(7) then a 1024 -> classes layer
    (5,832,378 params with 10 classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, adaptive: bool = False):
        super().__init__()
        self.pre_layers = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(64, 192, kernel_size=1, stride=1), nn.ReLU(True),
            nn.Conv2d(192, 192, kernel_size=3, stride=1, padding=1), nn.ReLU(True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.a3 = Inception(192, 64, 96, 128, 16, 32, 32)
        self.b3 = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.a4 = Inception(480, 192, 96, 208, 16, 48, 64)
        self.b4 = Inception(512, 160, 112, 224, 24, 64, 64)
        self.c4 = Inception(512, 128, 128, 256, 24, 64, 64)
        self.d4 = Inception(512, 112, 144, 288, 32, 64, 64)
        self.e4 = Inception(528, 256, 160, 320, 32, 128, 128)
        self.a5 = Inception(832, 256, 160, 320, 32, 128, 128)
        self.b5 = Inception(832, 384, 192, 384, 48, 128, 128)
        # AvgPool2d(7) on the 7x7 map of a 224x224 input; the adaptive twin pools any map.
        self.avgpool = nn.AdaptiveAvgPool2d(1) if adaptive else nn.AvgPool2d(7, stride=1)
        self.dropout = nn.Dropout(0.4)
        self.flatten = FixedFlatten(1024, 1, 1)
        self.linear = nn.Linear(1024, num_classes)

    def forward(self, x):
        out = self.pre_layers(x)
        out = self.maxpool(self.b3(self.a3(out)))
        out = self.e4(self.d4(self.c4(self.b4(self.a4(out)))))
        out = self.b5(self.a5(self.maxpool(out)))
        out = self.dropout(self.avgpool(out))
        return self.linear(self.flatten(out))


class D2LInception(nn.Module):
    """Seed 004's Inception block: four paths, a true 5x5 convolution on the third."""

    def __init__(self, in_channels, c1, c2, c3, c4):
        super().__init__()
        self.p1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
        self.p2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
        self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
        self.p3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
        self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
        self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
        self.p4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        r = self.relu
        p1 = r(self.p1_1(x))
        p2 = r(self.p2_2(r(self.p2_1(x))))
        p3 = r(self.p3_2(r(self.p3_1(x))))
        p4 = r(self.p4_2(self.p4_1(x)))
        return torch.cat((p1, p2, p3, p4), dim=1)


def d2l_googlenet(num_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    b1 = nn.Sequential(nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(nn.Conv2d(64, 64, kernel_size=1), nn.ReLU(),
                       nn.Conv2d(64, 192, kernel_size=3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b3 = nn.Sequential(D2LInception(192, 64, (96, 128), (16, 32), 32),
                       D2LInception(256, 128, (128, 192), (32, 96), 64),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b4 = nn.Sequential(D2LInception(480, 192, (96, 208), (16, 48), 64),
                       D2LInception(512, 160, (112, 224), (24, 64), 64),
                       D2LInception(512, 128, (128, 256), (24, 64), 64),
                       D2LInception(512, 112, (144, 288), (32, 64), 64),
                       D2LInception(528, 256, (160, 320), (32, 128), 128),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b5 = nn.Sequential(D2LInception(832, 256, (160, 320), (32, 128), 128),
                       D2LInception(832, 384, (192, 384), (48, 128), 128),
                       nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
    return nn.Sequential(b1, b2, b3, b4, b5, nn.Linear(1024, num_classes))


register(ModelSpec(
    name="googlenet", display_name="GoogLeNet (seed 000)", family="googlenet", year=2014,
    paper=PAPER, seed="000", input_shape=(3, 224, 224), num_classes=10, fixed_input=True,
    builder=GoogLeNet,
    notes=N_("Nine Inception blocks; 5,832,378 params with 10 classes. AvgPool2d(7) needs a 7x7 map, "
          "so the input must be 224x224. Its '5x5' branches are 3x3 convolutions, as in the seed."),
))
register(ModelSpec(
    name="d2l_googlenet", display_name="GoogLeNet (d2l)", family="googlenet", year=2014,
    paper=PAPER, seed="004", input_shape=(3, 96, 96), num_classes=10, builder=d2l_googlenet,
    notes=N_("d2l's GoogLeNet with real 5x5 paths and global average pooling; trained at 96x96."),
))
