"""Backbones: the :class:`Backbone` interface and ResNet."""

from .base import Backbone
from .pretrained import convert_resnet_state_dict, resolve_pretrained
from .resnet import BasicBlock, Bottleneck, ResNet

__all__ = [
    "Backbone",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "convert_resnet_state_dict",
    "resolve_pretrained",
]
