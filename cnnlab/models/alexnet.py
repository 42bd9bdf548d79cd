"""AlexNet family: seed 000's AlexNet (LRN, grouped conv), seed 004's d2l AlexNet,
and seed 002's MiniAlexNet V1-V4 for CIFAR.

Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NeurIPS 2012.
"""

from __future__ import annotations

from torch import nn

from ._layers import LRN, FixedFlatten
from ..i18n import N_
from ._registry import ModelSpec, register

PAPER = "Krizhevsky et al., ImageNet Classification with Deep CNNs, NeurIPS 2012"


class AlexNet(nn.Module):
    """Seed 000's AlexNet: 227x227 input, LRN after the first two blocks, the second
    convolution split in two groups as on the paper's two GPUs (62,071,144 params)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, adaptive: bool = False):
        super().__init__()
        self.layer1 = nn.Sequential(
            nn.Conv2d(in_channels, 96, kernel_size=11, stride=4),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            LRN(local_size=5, alpha=1e-4, beta=0.75, across_channels=True),
        )
        self.layer2 = nn.Sequential(
            nn.Conv2d(96, 256, kernel_size=5, groups=2, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            LRN(local_size=5, alpha=1e-4, beta=0.75, across_channels=True),
        )
        self.layer3 = nn.Sequential(nn.Conv2d(256, 384, padding=1, kernel_size=3), nn.ReLU(inplace=True))
        self.layer4 = nn.Sequential(nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.layer5 = nn.Sequential(
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.flatten = FixedFlatten(256, 6, 6, adaptive)
        self.layer6 = nn.Sequential(nn.Linear(6 * 6 * 256, 4096), nn.ReLU(inplace=True), nn.Dropout())
        self.layer7 = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout())
        self.layer8 = nn.Linear(4096, num_classes)

    def forward(self, x):
        x = self.layer5(self.layer4(self.layer3(self.layer2(self.layer1(x)))))
        x = self.flatten(x)
        return self.layer8(self.layer7(self.layer6(x)))


def d2l_alexnet(num_classes: int = 10, in_channels: int = 3, adaptive: bool = False) -> nn.Sequential:
    """Seed 004's (d2l) AlexNet: no LRN, no groups, padding 1 on conv1; 224x224 input."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 96, kernel_size=11, stride=4, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding=2), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        FixedFlatten(256, 5, 5, adaptive),
        nn.Linear(6400, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096), nn.ReLU(),
        nn.Dropout(p=0.5),
        nn.Linear(4096, num_classes),
    )


class MiniAlexNet(nn.Module):
    """Seed 002's MiniAlexNet, versions 1 to 4.

    V1: five convolutions, three FC layers, 3x32x32 input. V2: V1 plus dropout before FC6 and
    FC7. V3: V2 for 28x28 random crops (flatten 256x3x3). V4: V3 plus batch normalisation
    before every layer but the first.
    """

    def __init__(self, num_classes: int = 100, in_channels: int = 3, version: int = 1,
                 adaptive: bool = False):
        super().__init__()
        bn = version >= 4
        spatial = 4 if version <= 2 else 3

        def maybe_bn(c: int) -> list[nn.Module]:
            return [nn.BatchNorm2d(c)] if bn else []

        self.feature_extractor = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
            *maybe_bn(16),
            nn.Conv2d(16, 32, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
            *maybe_bn(32),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
            *maybe_bn(64),
            nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
            *maybe_bn(128),
            nn.Conv2d(128, 256, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
        )
        self.flatten = FixedFlatten(256, spatial, spatial, adaptive)
        flat = 256 * spatial * spatial
        drop = version >= 2
        layers: list[nn.Module] = []
        if drop:
            layers.append(nn.Dropout())
        if bn:
            layers.append(nn.BatchNorm1d(flat))
        layers += [nn.Linear(flat, 2048), nn.ReLU()]
        if drop:
            layers.append(nn.Dropout())
        if bn:
            layers.append(nn.BatchNorm1d(2048))
        layers += [nn.Linear(2048, 1024), nn.ReLU()]
        if bn:
            layers.append(nn.BatchNorm1d(1024))
        layers.append(nn.Linear(1024, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x):
        return self.classifier(self.flatten(self.feature_extractor(x)))


register(ModelSpec(
    name="alexnet", display_name="AlexNet (LRN, grouped conv)", family="alexnet", year=2012,
    paper=PAPER, seed="000", input_shape=(3, 227, 227), num_classes=1000, fixed_input=True,
    builder=AlexNet,
    notes=N_("As in seed 000: local response normalisation across 5 channels after the first two "
          "blocks and a 2-group second convolution. Needs 227x227 (256x6x6 before the FC layers)."),
))
register(ModelSpec(
    name="d2l_alexnet", display_name="AlexNet (d2l)", family="alexnet", year=2012, paper=PAPER,
    seed="004", input_shape=(3, 224, 224), num_classes=10, fixed_input=True, builder=d2l_alexnet,
    notes=N_("Dive into Deep Learning's AlexNet: no LRN, single group, 224x224 input "
          "(256x5x5 = 6400 features before the FC layers), 10 classes for CIFAR-10 resized."),
))
_MINI_NOTES = {
    1: N_("Five convolutions and three FC layers for 3x32x32 CIFAR-100 images."),
    2: N_("V1 with dropout (p=0.5) before the first two FC layers, where AlexNet has it."),
    3: N_("V2 for 28x28 random crops (augmentation): the flatten expects 256x3x3."),
    4: N_("V3 with batch normalisation before every layer except the first."),
}
for _v in (1, 2, 3, 4):
    register(ModelSpec(
        name=f"mini_alexnet_v{_v}", display_name=f"MiniAlexNet V{_v}", family="alexnet",
        year=2012, paper=PAPER, seed="002",
        input_shape=(3, 32, 32) if _v <= 2 else (3, 28, 28), num_classes=100, fixed_input=True,
        builder=lambda _v=_v, **kw: MiniAlexNet(version=_v, **kw), notes=_MINI_NOTES[_v],
    ))
