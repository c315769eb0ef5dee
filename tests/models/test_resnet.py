"""ResNet backbone: shapes, options, freezing, norms, and loading torchvision weights without downloads."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from kiln.models.backbones import Backbone, ResNet, convert_resnet_state_dict
from kiln.models.layers import FrozenBatchNorm2d
from kiln.registry import MODELS
from kiln.structures import ShapeSpec


@pytest.mark.parametrize("depth,expansion", [(18, 1), (50, 4)])
def test_outputs_have_documented_channels_and_strides(depth, expansion):
    m = ResNet(depth=depth, base_channels=8).eval()
    outs = m(torch.zeros(1, 3, 64, 96))
    assert [o.shape[1] for o in outs] == [8 * expansion, 16 * expansion, 32 * expansion, 64 * expansion]
    assert [(o.shape[2], o.shape[3]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    shapes = m.output_shape()
    assert list(shapes) == ["res2", "res3", "res4", "res5"]
    assert shapes["res4"] == ShapeSpec(channels=32 * expansion, stride=16)
    assert isinstance(m, Backbone) and m.size_divisibility == 32


def test_out_indices_and_num_stages_select_outputs():
    m = ResNet(depth=18, base_channels=8, num_stages=3, out_indices=(1, 2)).eval()
    outs = m(torch.zeros(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32]
    assert not hasattr(m, "layer4")


def test_dilation_replaces_stride_in_last_stage():
    m = ResNet(depth=18, base_channels=8, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2)).eval()
    outs = m(torch.zeros(1, 3, 64, 64))
    assert outs[-1].shape[-1] == 4 and m.output_shape()["res5"].stride == 16
    assert m.layer4[0].conv2.dilation == (2, 2)


def test_caffe_style_strides_in_first_1x1_conv_and_pytorch_in_3x3():
    pt = ResNet(depth=50, base_channels=8, style="pytorch")
    cf = ResNet(depth=50, base_channels=8, style="caffe")
    assert pt.layer2[0].conv1.stride == (1, 1) and pt.layer2[0].conv2.stride == (2, 2)
    assert cf.layer2[0].conv1.stride == (2, 2) and cf.layer2[0].conv2.stride == (1, 1)


def test_frozen_stages_freeze_stem_and_first_stages_and_keep_them_in_eval():
    m = ResNet(depth=18, base_channels=8, frozen_stages=1, norm_eval=False)
    m.train()
    assert not any(p.requires_grad for p in m.conv1.parameters())
    assert not any(p.requires_grad for p in m.layer1.parameters())
    assert all(p.requires_grad for p in m.layer2.parameters())
    assert not m.bn1.training and not m.layer1[0].bn1.training
    assert m.layer2[0].bn1.training


def test_norm_eval_keeps_batchnorm_statistics_fixed_in_train_mode():
    m = ResNet(depth=18, base_channels=8, norm_eval=True)
    m.train()
    before = m.layer3[0].bn1.running_mean.clone()
    m(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, m.layer3[0].bn1.running_mean)
    assert m.training  # the module itself is in train mode; only its norm layers are not


@pytest.mark.parametrize(
    "norm_cfg,layer_type",
    [
        (dict(type="BN"), nn.BatchNorm2d),
        (dict(type="SyncBN"), nn.SyncBatchNorm),
        (dict(type="GN", num_groups=4), nn.GroupNorm),
        (dict(type="FrozenBN"), FrozenBatchNorm2d),
    ],
)
def test_norm_cfg_selects_the_norm_layer(norm_cfg, layer_type):
    m = ResNet(depth=18, base_channels=8, norm_cfg=norm_cfg, norm_eval=False)
    assert isinstance(m.layer1[0].norm1, layer_type)
    m.train()
    out = m(torch.randn(2, 3, 32, 32))  # SyncBN falls back to plain BN outside distributed runs
    assert out[-1].shape == (2, 64, 1, 1)


def test_norm_requires_grad_false_freezes_affine_parameters():
    m = ResNet(depth=18, base_channels=8, norm_cfg=dict(type="BN", requires_grad=False))
    assert not m.bn1.weight.requires_grad and m.conv1.weight.requires_grad


def test_gn_with_indivisible_channels_names_the_problem():
    with pytest.raises(ValueError, match="not divisible"):
        ResNet(depth=18, base_channels=8, norm_cfg=dict(type="GN", num_groups=3))


def test_unsupported_depth_lists_the_choices():
    with pytest.raises(KeyError, match=r"depth=42.*\[18, 34, 50, 101, 152\]"):
        MODELS.build(dict(type="ResNet", depth=42))


def test_torchvision_state_dict_file_loads_and_reproduces_torchvision_features(tmp_path):
    tv = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "resnet18-custom.pth"
    torch.save(tv.state_dict(), path)
    m = ResNet(depth=18, pretrained=str(path), norm_eval=True).eval()
    m.init_weights()
    for name, p in m.named_parameters():
        assert torch.equal(p, tv.state_dict()[name]), name
    x = torch.randn(1, 3, 64, 64)
    expected = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
    assert torch.allclose(m(x)[-1], expected, atol=1e-5)
    via_init_cfg = ResNet(depth=18, init_cfg=dict(type="Pretrained", checkpoint=str(path)))
    via_init_cfg.init_weights()
    assert torch.equal(via_init_cfg.layer3[1].conv2.weight, tv.layer3[1].conv2.weight)


def test_torchvision_scheme_resolves_from_kiln_home_cache(tmp_path, monkeypatch):
    tv = torchvision.models.resnet18(weights=None)
    (tmp_path / "checkpoints").mkdir()
    torch.save(tv.state_dict(), tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    m = ResNet(depth=18, pretrained="torchvision://resnet18")
    m.init_weights()
    assert torch.equal(m.conv1.weight, tv.conv1.weight)


def test_missing_torchvision_checkpoint_warns_where_to_put_it_and_continues(tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.warns(UserWarning) as rec:
        m = ResNet(depth=18, base_channels=8, pretrained="torchvision://resnet50")
        m.init_weights()
    msg = str(rec[0].message)
    assert "resnet50-0676ba61.pth" in msg and str(tmp_path / "checkpoints") in msg and "random" in msg
    assert m.eval()(torch.zeros(1, 3, 32, 32))[-1].shape[1] == 64


def test_missing_local_pretrained_file_is_an_error_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ResNet(depth=18, base_channels=8, pretrained=str(tmp_path / "nope.pth")).init_weights()


def test_checkpoint_of_another_width_reports_shape_mismatch(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="shape mismatch.*conv1.weight"):
        ResNet(depth=18, base_channels=16, pretrained=str(tmp_path / "r18.pth")).init_weights()


def test_detectron2_and_prefixed_names_convert_to_torchvision_names():
    w = torch.zeros(1)
    sd = {
        "backbone.bottom_up.stem.conv1.weight": w,
        "stem.conv1.norm.running_mean": w,
        "res2.0.conv1.weight": w,
        "res3.1.conv2.norm.bias": w,
        "res5.0.shortcut.weight": w,
        "res5.0.shortcut.norm.weight": w,
        "module.fc.weight": w,
    }
    out = convert_resnet_state_dict(sd)
    assert sorted(out) == sorted(
        [
            "conv1.weight",
            "bn1.running_mean",
            "layer1.0.conv1.weight",
            "layer2.1.bn2.bias",
            "layer4.0.downsample.0.weight",
            "layer4.0.downsample.1.weight",
        ]
    )


def test_activation_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = ResNet(depth=18, base_channels=8, norm_eval=False)
    cp = ResNet(depth=18, base_channels=8, norm_eval=False, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    plain(x)[-1].sum().backward()
    g_plain = plain.layer2[0].conv1.weight.grad.clone()
    cp(x)[-1].sum().backward()
    assert torch.allclose(cp.layer2[0].conv1.weight.grad, g_plain, atol=1e-5)
