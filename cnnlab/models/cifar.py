"""Small CIFAR-10 networks: seed 001's ConvNet.

The LeNet-style network of the PyTorch CIFAR-10 tutorial, with the seed's own hidden sizes.
"""

from __future__ import annotations

from torch import nn

from ._layers import FixedFlatten
from ..i18n import N_
from ._registry import ModelSpec, register


class ConvNet(nn.Module):
    """Seed 001's ConvNet: conv 3->6 (5x5), pool, conv 6->16 (5x5), pool, FC 400-220-184-10."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, adaptive: bool = False,
                 hidden_size1: int = 220, hidden_size2: int = 184):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.flatten = FixedFlatten(16, 5, 5, adaptive)
        self.fc1 = nn.Linear(16 * 5 * 5, hidden_size1)
        self.fc2 = nn.Linear(hidden_size1, hidden_size2)
        self.fc3 = nn.Linear(hidden_size2, num_classes)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.pool(self.relu2(self.conv2(x)))
        x = self.act(self.fc1(self.flatten(x)))
        x = self.act(self.fc2(x))
        return self.fc3(x)


register(ModelSpec(
    name="cifar_convnet", display_name="CIFAR-10 ConvNet", family="cifar", year=2017,
    paper="PyTorch CIFAR-10 tutorial network (LeNet-style)", seed="001",
    input_shape=(3, 32, 32), num_classes=10, fixed_input=True, builder=ConvNet,
    notes=N_("Two 5x5 convolutions (3-6-16) with max pooling, FC layers of 220 and 184 units as "
          "chosen in the seed. The pooling module is reused twice. Needs 32x32 inputs."),
))
