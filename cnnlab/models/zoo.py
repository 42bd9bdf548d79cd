"""Imports every family module so that each registers its models."""

from . import alexnet, cifar, densenet, googlenet, lenet, nin, pretrained, resnet, vgg  # noqa: F401

pretrained._register_transfer_models()
