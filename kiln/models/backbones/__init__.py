"""Backbones: the :class:`Backbone` interface ResNet and ResNeXt."""

from .base import Backbone
from .pretrained import convert_resnet_state_dict, resolve_pretrained
from .resnet import BasicBlock, Bottleneck, ResNet, ResNeXt

__all__ = [
    "Backbone",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNeXt",
    "convert_resnet_state_dict",
    "resolve_pretrained",
]

from .darknet import Darknet  # noqa: E402
from .ssd_vgg import SSDVGG  # noqa: E402

__all__ += ["Darknet", "SSDVGG"]
