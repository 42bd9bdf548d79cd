"""Imports every family module so that each registers its models."""

from . import alexnet, cifar, densenet, googlenet, lenet, nin, resnet, vgg  # noqa: F401
