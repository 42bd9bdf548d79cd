"""LeNet family: LeNet and LeNetV2 (seed 002), LeNetColor (seed 002), LeNet5 (seed 003).

LeCun et al., "Gradient-based learning applied to document recognition", Proc. IEEE 1998.
"""

from __future__ import annotations

from torch import nn

from ..i18n import N_
from ._layers import FixedFlatten
from ._registry import ModelSpec, register

PAPER = "LeCun et al., Gradient-based learning applied to document recognition, 1998"


class LeNet(nn.Module):
    """Seed 002's LeNet: C1-S2-C3-S4-F5-F6-F7 with average pooling and tanh (44,426 params)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, adaptive: bool = False,
                 pool: type[nn.Module] = nn.AvgPool2d, activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        self.C1 = nn.Conv2d(in_channels, 6, 5)
        self.S2 = pool(2)
        self.C3 = nn.Conv2d(6, 16, 5)
        self.S4 = pool(2)
        self.flatten = FixedFlatten(16, 4, 4, adaptive)
        self.F5 = nn.Linear(256, 120)
        self.F6 = nn.Linear(120, 84)
        self.F7 = nn.Linear(84, num_classes)
        # One activation module reused after S2, S4, F5 and F6, as in the seed.
        self.activation = activation()

    def forward(self, x):
        x = self.activation(self.S2(self.C1(x)))
        x = self.activation(self.S4(self.C3(x)))
        x = self.activation(self.F5(self.flatten(x)))
        x = self.activation(self.F6(x))
        return self.F7(x)


def lenet(**kw) -> LeNet:
    return LeNet(**kw)


def lenet_v2(**kw) -> LeNet:
    return LeNet(pool=nn.MaxPool2d, activation=nn.ReLU, **kw)


class LeNetColor(nn.Module):
    """Seed 002's LeNetColor: LeNetV2 widened for 3x32x32 CIFAR-100 images."""

    def __init__(self, num_classes: int = 100, in_channels: int = 3, adaptive: bool = False):
        super().__init__()
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(in_channels, 18, 5),  # 3x32x32 -> 18x28x28
            nn.MaxPool2d(2),  # -> 18x14x14
            nn.ReLU(),
            nn.Conv2d(18, 28, 5),  # -> 28x10x10
            nn.MaxPool2d(2),  # -> 28x5x5
            nn.ReLU(),
        )
        self.flatten = FixedFlatten(28, 5, 5, adaptive)
        self.classifier = nn.Sequential(
            nn.Linear(700, 360), nn.ReLU(),
            nn.Linear(360, 252), nn.ReLU(),
            nn.Linear(252, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.feature_extractor(x)))


def _flat_size_lenet5(h: int, w: int) -> tuple[int, int]:
    # conv1 5x5 pad 2 keeps the size; pool /2; conv2 5x5 -4; pool /2
    return ((h // 2) - 4) // 2, ((w // 2) - 4) // 2


class LeNet5(nn.Module):
    """Seed 003's LeNet5 with its ``layers`` tuple.

    ``layers = (in channels, conv1 channels, conv2 channels, fc1 inputs, fc1, fc2, classes)``.
    The seed finds ``fc1 inputs`` with a debug dry run (400 for MNIST, 576 for CIFAR-10); here
    it is computed from ``input_size``. The seed's ``F.relu``/``F.max_pool2d`` calls are
    modules so that they appear in the per-layer table; the seed's final ``log_softmax`` is
    left to the loss (models return logits).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size=(28, 28),
                 layers: tuple[int, ...] | None = None):
        super().__init__()
        fh, fw = _flat_size_lenet5(*input_size)
        if layers is None:
            layers = (in_channels, 6, 16, max(fh, 1) * max(fw, 1) * 16, 120, 84, num_classes)
        self.layers = tuple(layers)
        self.conv1 = nn.Conv2d(layers[0], layers[1], 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(layers[1], layers[2], 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = FixedFlatten(layers[2], max(fh, 1), max(fw, 1))
        self.flatten.remedy = N_(  # sized at creation: there is no lenet5_adaptive
            "Create the model again with input_size set to the images' size (its first FC layer is "
            "sized from the input at creation), or resize the images to {h}x{w}.")
        self.flatten.remedy_values = {"h": input_size[0], "w": input_size[1]}
        self.fc1 = nn.Linear(layers[3], layers[4])
        self.fc2 = nn.Linear(layers[4], layers[5])
        self.fc3 = nn.Linear(layers[5], layers[6])
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.act(self.fc1(self.flatten(x)))
        x = self.act(self.fc2(x))
        return self.fc3(x)


register(ModelSpec(
    name="lenet", display_name="LeNet", family="lenet", year=1998, paper=PAPER, seed="002",
    input_shape=(1, 28, 28), num_classes=10, fixed_input=True, builder=lenet,
    notes=N_("Tanh activations and average pooling; 44,426 parameters on MNIST. "
          "The flatten expects 16x4x4, so the input must be 28x28."),
))
register(ModelSpec(
    name="lenet_v2", display_name="LeNetV2", family="lenet", year=1998, paper=PAPER, seed="002",
    input_shape=(1, 28, 28), num_classes=10, fixed_input=True, builder=lenet_v2,
    notes=N_("LeNet with ReLU instead of tanh and max pooling instead of average pooling."),
))
register(ModelSpec(
    name="lenet_color", display_name="LeNetColor", family="lenet", year=1998, paper=PAPER,
    seed="002", input_shape=(3, 32, 32), num_classes=100, fixed_input=True, builder=LeNetColor,
    notes=N_("LeNetV2 for 3x32x32 colour images (CIFAR-100): 18 and 28 feature maps, FC 360-252."),
))
register(ModelSpec(
    name="lenet5", display_name="LeNet-5", family="lenet", year=1998, paper=PAPER, seed="003",
    input_shape=(1, 28, 28), num_classes=10, fixed_input=True, sized_at_creation=True,
    builder=LeNet5,
    notes=N_("ReLU and max pooling, conv1 padded. The first FC layer is sized from the input "
          "(400 for 1x28x28: 61,706 params; 576 for 3x32x32: 83,126 params), as the seed does "
          "with its debug dry run. The seed's log_softmax output is left to the loss."),
))
