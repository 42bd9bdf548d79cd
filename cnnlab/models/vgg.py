"""VGG family: seed 000's configurable VGG (A, B, D, E, with or without batch norm),
seed 004's VGG-11 built from blocks (and its 4x narrower version), seed 003's MiniVGGNet.

Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015.
"""

from __future__ import annotations

from torch import nn

from ._layers import FixedFlatten
from ..i18n import N_
from ._registry import ModelSpec, register

PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks, ICLR 2015"

cfgs: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def make_layers(cfg: list[int | str], batch_norm: bool = False, in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(int(v)), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = int(v)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """Seed 000's VGG: ``features`` from :func:`make_layers`, a 512x7x7 flatten (224x224
    input) and the 4096-4096 classifier. Kaiming init for convolutions, N(0, 0.01) for FC."""

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, init_weights: bool = True,
                 adaptive: bool = False):
        super().__init__()
        self.features = features
        self.flatten = FixedFlatten(512, 7, 7, adaptive)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            self._initialize_weights()

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)


def _vgg(cfg: str, batch_norm: bool):
    def build(num_classes: int = 1000, in_channels: int = 3, adaptive: bool = False) -> VGG:
        return VGG(make_layers(cfgs[cfg], batch_norm, in_channels), num_classes, adaptive=adaptive)
    return build


def vgg_block(num_convs: int, in_channels: int, out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


D2L_VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def d2l_vgg(conv_arch=D2L_VGG11, num_classes: int = 10, in_channels: int = 3,
            adaptive: bool = False) -> nn.Sequential:
    """Seed 004's ``vgg(conv_arch)``: VGG blocks, flatten, 4096-4096-classes."""
    blocks = []
    for num_convs, out_channels in conv_arch:
        blocks.append(vgg_block(num_convs, in_channels, out_channels))
        in_channels = out_channels
    return nn.Sequential(
        *blocks, FixedFlatten(in_channels, 7, 7, adaptive),
        nn.Linear(in_channels * 7 * 7, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    )


def d2l_vgg11_small(num_classes: int = 10, in_channels: int = 3, adaptive: bool = False):
    ratio = 4
    arch = [(n, c // ratio) for n, c in D2L_VGG11]
    return d2l_vgg(arch, num_classes, in_channels, adaptive)


class MiniVGGNet(nn.Module):
    """Seed 003's MiniVGGNet: two blocks of two 3x3 convolutions, then three FC layers.

    ``layers = (in channels, block1, block2, fc1 inputs, fc1, fc2, classes)``; ``fc1 inputs``
    is computed from ``input_size`` (800 for MNIST, 1152 for CIFAR-10) as the seed's debug dry
    run does. Note the seed's conv22 has padding 1 while the others have none.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size=(28, 28),
                 layers: tuple[int, ...] | None = None):
        super().__init__()
        fh, fw = ((input_size[0] - 4) // 2 - 2) // 2, ((input_size[1] - 4) // 2 - 2) // 2
        if layers is None:
            layers = (in_channels, 16, 32, max(fh, 1) * max(fw, 1) * 32, 120, 84, num_classes)
        self.layers = tuple(layers)
        self.conv11 = nn.Conv2d(layers[0], layers[1], kernel_size=3, stride=1, padding=0)
        self.relu11 = nn.ReLU()
        self.conv12 = nn.Conv2d(layers[1], layers[1], kernel_size=3, stride=1, padding=0)
        self.relu12 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv21 = nn.Conv2d(layers[1], layers[2], kernel_size=3, stride=1, padding=0)
        self.relu21 = nn.ReLU()
        self.conv22 = nn.Conv2d(layers[2], layers[2], kernel_size=3, stride=1, padding=1)
        self.relu22 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = FixedFlatten(layers[2], max(fh, 1), max(fw, 1))
        self.fc1 = nn.Linear(layers[3], layers[4])
        self.fc2 = nn.Linear(layers[4], layers[5])
        self.fc3 = nn.Linear(layers[5], layers[6])
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.pool1(self.relu12(self.conv12(self.relu11(self.conv11(x)))))
        x = self.pool2(self.relu22(self.conv22(self.relu21(self.conv21(x)))))
        x = self.act(self.fc1(self.flatten(x)))
        x = self.act(self.fc2(x))
        return self.fc3(x)


_DEPTH = {"A": 11, "B": 13, "D": 16, "E": 19}
# One whole text per model (the app shows each translated)
_SEED_VGG_NOTES = {
    "vgg11": N_(
        "Seed 000's VGG(make_layers(cfg['A'])). Flattens 512x7x7, so the input must be 224x224."),
    "vgg11_bn": N_(
        "Seed 000's VGG(make_layers(cfg['A'], batch_norm=True)). Flattens 512x7x7, so the input must be "
        "224x224."),
    "vgg13": N_(
        "Seed 000's VGG(make_layers(cfg['B'])). Flattens 512x7x7, so the input must be 224x224."),
    "vgg13_bn": N_(
        "Seed 000's VGG(make_layers(cfg['B'], batch_norm=True)). Flattens 512x7x7, so the input must be "
        "224x224."),
    "vgg16": N_(
        "Seed 000's VGG(make_layers(cfg['D'])). Flattens 512x7x7, so the input must be 224x224. VGG-16: "
        "138,357,544 params; 134,678,438 with 102 classes (Caltech101)."),
    "vgg16_bn": N_(
        "Seed 000's VGG(make_layers(cfg['D'], batch_norm=True)). Flattens 512x7x7, so the input must be "
        "224x224."),
    "vgg19": N_(
        "Seed 000's VGG(make_layers(cfg['E'])). Flattens 512x7x7, so the input must be 224x224."),
    "vgg19_bn": N_(
        "Seed 000's VGG(make_layers(cfg['E'], batch_norm=True)). Flattens 512x7x7, so the input must be "
        "224x224."),
}
for _cfg, _depth in _DEPTH.items():
    for _bn in (False, True):
        register(ModelSpec(
            name=f"vgg{_depth}{'_bn' if _bn else ''}",
            display_name=f"VGG-{_depth}{' with batch norm' if _bn else ''} (config {_cfg})",
            family="vgg", year=2014, paper=PAPER, seed="000", input_shape=(3, 224, 224),
            num_classes=1000, fixed_input=True, builder=_vgg(_cfg, _bn),
            notes=_SEED_VGG_NOTES[f"vgg{_depth}{'_bn' if _bn else ''}"],
        ))
register(ModelSpec(
    name="d2l_vgg11", display_name="VGG-11 from blocks (d2l)", family="vgg", year=2014,
    paper=PAPER, seed="004", input_shape=(3, 224, 224), num_classes=10, fixed_input=True,
    builder=lambda **kw: d2l_vgg(D2L_VGG11, **kw),
    notes=N_("conv_arch ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)), 10 classes."),
))
register(ModelSpec(
    name="d2l_vgg11_small", display_name="VGG-11 4x narrower (d2l)", family="vgg", year=2014,
    paper=PAPER, seed="004", input_shape=(3, 224, 224), num_classes=10, fixed_input=True,
    builder=d2l_vgg11_small,
    notes=N_("The same blocks with a quarter of the channels (16 ... 128), as d2l trains it."),
))
register(ModelSpec(
    name="mini_vggnet", display_name="MiniVGGNet", family="vgg", year=2014, paper=PAPER,
    seed="003", input_shape=(1, 28, 28), num_classes=10, fixed_input=True, sized_at_creation=True,
    builder=MiniVGGNet,
    notes=N_("Two VGG-style blocks (3x3 convolutions) and three FC layers; 123,502 params on MNIST. "
          "The first FC layer is sized from the input. The seed's log_softmax is left to the loss."),
))
