"""Multilayer perceptrons: the fully connected baselines the seeds compare CNNs with.

* ``mlp_100``: seed 001's ``NeuralNet(input_size=28*28, hidden_size=100, num_classes=10)`` on
  MNIST (TensorBoard section): ``l1 = Linear(784, 100)``, ``ReLU``, ``l2 = Linear(100, 10)``,
  trained with ``CrossEntropyLoss`` on raw outputs; 784*100+100 + 100*10+10 = 79,510 parameters.
* ``mlp_64``: seed 002's question 2, "compare LeNet's parameters with those of a multilayer
  perceptron with 64 hidden units" (MNIST, 1x28x28): 784*64+64 + 64*10+10 = 50,890 parameters,
  more than LeNet's 44,426: every pixel connects to every hidden unit, with no weight sharing.
  The seed gives only the hidden size (no code); the activation is ReLU, the one of the seeds' only
  MLP code (seed 001's ``NeuralNet``), so the two MLPs differ from each other only in width and
  from LeNetV2 (ReLU) only in their architecture.

The seeds flatten the image outside the model (``images.reshape(-1, 28*28)``); here the model
takes images and flattens them itself, so it trains, inspects and shows activations like the
CNNs. The first Linear layer is sized from ``in_channels * H * W`` given at creation.

Rumelhart, Hinton & Williams, "Learning representations by back-propagating errors", Nature 1986.
"""

from __future__ import annotations

from torch import nn

from ..i18n import N_
from ._layers import FixedFlatten
from ._registry import ModelSpec, register

PAPER = "Rumelhart, Hinton & Williams, Learning representations by back-propagating errors, Nature 1986"


class MLP(nn.Module):
    """Flatten, ``l1 = Linear(C*H*W, hidden)``, activation, ``l2 = Linear(hidden, classes)``
    (the layer names of seed 001's ``NeuralNet``). Returns raw logits."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size=(28, 28),
                 hidden: int = 100, activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        h, w = input_size
        self.flatten = FixedFlatten(in_channels, h, w)
        self.flatten.remedy = N_(
            "Create the model again with input_size set to the images' size (its first Linear layer "
            "is sized from the input at creation), or resize the images to {h}x{w}.")
        self.flatten.remedy_values = {"h": h, "w": w}
        self.flatten.mismatch = N_(
            "{model}: layer '{layer}' flattens the features for the first fully connected layer 'l1', which "
            "expects {c}x{h}x{w} = {n:,} values, but this input produced {got} = {got_n:,}.")
        self.l1 = nn.Linear(in_channels * h * w, hidden)
        self.act = activation()
        self.l2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.l2(self.act(self.l1(self.flatten(x))))


def mlp_100(**kw) -> MLP:
    """Seed 001's 784-100-10 network (ReLU)."""
    return MLP(hidden=100, activation=nn.ReLU, **kw)


def mlp_64(**kw) -> MLP:
    """Seed 002's MLP with 64 hidden units (ReLU, as seed 001's MLP)."""
    return MLP(hidden=64, activation=nn.ReLU, **kw)


register(ModelSpec(
    name="mlp_100", display_name="MLP 784-100-10", family="mlp", year=1986, paper=PAPER, seed="001",
    input_shape=(1, 28, 28), num_classes=10, fixed_input=True, sized_at_creation=True, builder=mlp_100,
    notes=N_("Seed 001's NeuralNet on MNIST: Linear(784, 100) - ReLU - Linear(100, 10), 79,510 parameters "
          "for 1x28x28 (the seed reaches 95.03% test accuracy after 2 epochs of Adam, lr 0.001, "
          "batch 100). The seed flattens the images before the model; here the model flattens them. "
          "The first Linear layer is sized from the input (channels x H x W) given at creation."),
))
register(ModelSpec(
    name="mlp_64", display_name="MLP 784-64-10", family="mlp", year=1986, paper=PAPER, seed="002",
    input_shape=(1, 28, 28), num_classes=10, fixed_input=True, sized_at_creation=True, builder=mlp_64,
    notes=N_("Seed 002's question 2 (compare LeNet's parameters with a multilayer perceptron with 64 hidden "
          "units): Linear(784, 64) - ReLU - Linear(64, 10), 50,890 parameters for 1x28x28, more than "
          "LeNet's 44,426. The seed gives only the hidden size; the ReLU activation is seed 001's MLP's (it "
          "does not change the count). The first Linear layer is sized from the input given at creation."),
))
