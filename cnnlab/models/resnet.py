"""ResNet family: seed 000's ResNet (basic and bottleneck blocks), seed 003's CIFAR ResNet,
seed 004's d2l ResNet-18.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

from torch import nn

from ._layers import FixedFlatten
from ..i18n import N_
from ._registry import ModelSpec, register

PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"


class ResidualBlock(nn.Module):
    """Seed 000's residual block: two 3x3 convolutions, or 1x1-3x3-1x1 with expansion 4."""

    def __init__(self, in_channels: int, bn_channels: int, stride: int = 1, bottleneck: bool = False):
        super().__init__()
        self.expansion = 4 if bottleneck else 1
        out_channels = bn_channels * self.expansion
        if bottleneck:
            self.block = nn.Sequential(
                nn.Conv2d(in_channels, bn_channels, kernel_size=1, padding=0, bias=False),
                nn.BatchNorm2d(bn_channels), nn.ReLU(True),
                nn.Conv2d(bn_channels, bn_channels, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(bn_channels), nn.ReLU(True),
                nn.Conv2d(bn_channels, out_channels, kernel_size=1, padding=0, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.block = nn.Sequential(
                nn.Conv2d(in_channels, bn_channels, kernel_size=3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(bn_channels), nn.ReLU(True),
                nn.Conv2d(bn_channels, out_channels, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Sequential()
        self.relu = nn.ReLU()  # the seed's F.relu, as a module so that hooks see it (Look inside, the X-ray)

    def forward(self, x):
        out = self.block(x)
        out = out + self.shortcut(x)
        return self.relu(out)


class ResNet(nn.Module):
    """Seed 000's ResNet. Faithful quirks: the shortcut projection is only added when the
    channel count changes (a stride-2 block with equal channels would break, but no standard
    configuration has one), ``avgpool`` is ``AvgPool2d((1, 1))`` (a no-op), and the final layer
    reads the whole 512x7x7 map (``Linear(512*7*7, classes)``), so the input must be 224x224."""

    def __init__(self, layers=(3, 4, 6, 3), bottleneck: bool = False, num_classes: int = 10,
                 in_channels: int = 3, adaptive: bool = False):
        super().__init__()
        self.in_channels = 64
        self.bottleneck = bottleneck
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
            nn.BatchNorm2d(64), nn.ReLU(True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.conv2_x = self._make_layer(64, layers[0])
        self.conv3_x = self._make_layer(128, layers[1], stride=2)
        self.conv4_x = self._make_layer(256, layers[2], stride=2)
        self.conv5_x = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AvgPool2d((1, 1))
        self.flatten = FixedFlatten(self.in_channels, 7, 7, adaptive)
        self.fc = nn.Linear(self.in_channels * 7 * 7, num_classes)

    def _make_layer(self, out_channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = []
        for index in range(blocks):
            block = ResidualBlock(self.in_channels, out_channels, stride if index == 0 else 1,
                                  bottleneck=self.bottleneck)
            layers.append(block)
            self.in_channels = out_channels * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.conv5_x(self.conv4_x(self.conv3_x(self.conv2_x(x))))
        x = self.avgpool(x)
        return self.fc(self.flatten(x))


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class CifarResidualBlock(nn.Module):
    """Seed 003's residual block (torchvision-style BasicBlock with an optional downsample)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            residual = self.downsample(x)
        out = out + residual
        return self.relu(out)


class CifarResNet(nn.Module):
    """Seed 003's CIFAR-10 ResNet (paper section 4.2): 16-32-64 channels, [2, 2, 2] blocks,
    AvgPool2d(8) on the 8x8 map of a 32x32 input (195,738 params). The seed's downsample
    uses a 3x3 convolution, kept here."""

    def __init__(self, layers=(2, 2, 2), num_classes: int = 10, in_channels: int = 3,
                 adaptive: bool = False):
        super().__init__()
        self.in_channels = 16
        self.conv = conv3x3(in_channels, 16)
        self.bn = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self.make_layer(16, layers[0])
        self.layer2 = self.make_layer(32, layers[1], 2)
        self.layer3 = self.make_layer(64, layers[2], 2)
        self.avg_pool = nn.AdaptiveAvgPool2d(1) if adaptive else nn.AvgPool2d(8)
        self.flatten = FixedFlatten(64, 1, 1)
        self.fc = nn.Linear(64, num_classes)

    def make_layer(self, out_channels: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = nn.Sequential(conv3x3(self.in_channels, out_channels, stride=stride),
                                       nn.BatchNorm2d(out_channels))
        layers = [CifarResidualBlock(self.in_channels, out_channels, stride, downsample)]
        self.in_channels = out_channels
        for _ in range(1, blocks):
            layers.append(CifarResidualBlock(out_channels, out_channels))
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.relu(self.bn(self.conv(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = self.avg_pool(out)
        return self.fc(self.flatten(out))


class Residual(nn.Module):
    """Seed 004's (d2l) residual block with an optional 1x1 projection."""

    def __init__(self, input_channels: int, num_channels: int, use_1x1conv: bool = False, strides: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = (nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides)
                      if use_1x1conv else None)
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)
        # d2l's F.relu calls, as modules so that hooks see them (Look inside, the X-ray)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, X):
        Y = self.relu1(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3 is not None:
            X = self.conv3(X)
        return self.relu2(Y + X)


def d2l_resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    b1 = nn.Sequential(nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def resnet_block(input_channels, num_channels, num_residuals, first_block=False):
        blk = []
        for i in range(num_residuals):
            if i == 0 and not first_block:
                blk.append(Residual(input_channels, num_channels, use_1x1conv=True, strides=2))
            else:
                blk.append(Residual(num_channels, num_channels))
        return blk

    b2 = nn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(64, 128, 2))
    b4 = nn.Sequential(*resnet_block(128, 256, 2))
    b5 = nn.Sequential(*resnet_block(256, 512, 2))
    return nn.Sequential(b1, b2, b3, b4, b5, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(512, num_classes))


_SEED_RESNETS = {
    "resnet18": ((2, 2, 2, 2), False), "resnet34": ((3, 4, 6, 3), False),
    "resnet50": ((3, 4, 6, 3), True), "resnet101": ((3, 4, 23, 3), True),
}
# One whole text per model (the app shows each translated)
_SEED_RESNET_NOTES = {
    "resnet18": N_(
        "Seed 000's ResNet([2, 2, 2, 2], bottleneck=False). Its final layer reads the whole 7x7 map (no "
        "global pooling), so the input must be 224x224."),
    "resnet34": N_(
        "Seed 000's ResNet([3, 4, 6, 3], bottleneck=False). Its final layer reads the whole 7x7 map (no "
        "global pooling), so the input must be 224x224. [3,4,6,3] basic: 21,535,626 params with 10 classes."),
    "resnet50": N_(
        "Seed 000's ResNet([3, 4, 6, 3], bottleneck=True). Its final layer reads the whole 7x7 map (no global"
        " pooling), so the input must be 224x224."),
    "resnet101": N_(
        "Seed 000's ResNet([3, 4, 23, 3], bottleneck=True). Its final layer reads the whole 7x7 map (no "
        "global pooling), so the input must be 224x224."),
}
for _name, (_layers, _bottleneck) in _SEED_RESNETS.items():
    _depth = _name[len("resnet"):]
    register(ModelSpec(
        name=_name, display_name=f"ResNet-{_depth} (seed 000)", family="resnet", year=2015,
        paper=PAPER, seed="000", input_shape=(3, 224, 224), num_classes=10, fixed_input=True,
        builder=lambda _l=_layers, _b=_bottleneck, **kw: ResNet(_l, _b, **kw),
        notes=_SEED_RESNET_NOTES[_name],
    ))
register(ModelSpec(
    name="cifar_resnet", display_name="CIFAR ResNet [2,2,2]", family="resnet", year=2015,
    paper=PAPER, seed="003", input_shape=(3, 32, 32), num_classes=10, fixed_input=True,
    builder=CifarResNet,
    notes=N_("The paper's CIFAR-10 ResNet (section 4.2) with [2, 2, 2] blocks: 195,738 params. "
          "AvgPool2d(8) expects the 8x8 map of a 32x32 input."),
))
register(ModelSpec(
    name="d2l_resnet18", display_name="ResNet-18 (d2l)", family="resnet", year=2015, paper=PAPER,
    seed="004", input_shape=(3, 224, 224), num_classes=10, builder=d2l_resnet18,
    notes=N_("d2l's ResNet-18 with global average pooling: any input of 32x32 or more works."),
))
