"""FPN: level counts, shapes and every add_extra_convs mode."""

from __future__ import annotations

import pytest
import torch

from kiln.models.necks import FPN

IN_CH = [8, 16, 32, 64]


def _inputs():
    return [torch.randn(1, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate(IN_CH)]


def test_plain_fpn_returns_one_level_per_input_with_out_channels():
    outs = FPN(IN_CH, 12, num_outs=4)(_inputs())
    assert [tuple(o.shape) for o in outs] == [(1, 12, 32, 32), (1, 12, 16, 16), (1, 12, 8, 8), (1, 12, 4, 4)]


def test_no_extra_convs_adds_maxpooled_levels():
    fpn = FPN(IN_CH, 12, num_outs=5)
    outs = fpn(_inputs())
    assert outs[4].shape[-1] == 2 and len(fpn.extra_convs) == 0
    assert torch.equal(outs[4], torch.nn.functional.max_pool2d(outs[3], 1, stride=2))


@pytest.mark.parametrize(
    "mode,first_in", [(True, 64), ("on_input", 64), ("on_lateral", 12), ("on_output", 12)]
)
def test_extra_conv_modes_take_the_documented_source(mode, first_in):
    fpn = FPN(IN_CH, 12, num_outs=6, start_level=1, add_extra_convs=mode)
    assert fpn.extra_convs[0].conv.in_channels == first_in
    outs = fpn(_inputs())
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1, 1]


def test_on_output_extra_level_is_the_conv_of_the_last_output():
    fpn = FPN(IN_CH, 12, num_outs=5, add_extra_convs="on_output").eval()
    outs = fpn(_inputs())
    assert torch.allclose(outs[4], fpn.extra_convs[0](outs[3]))


def test_relu_before_extra_convs_changes_the_second_extra_level():
    torch.manual_seed(0)
    a = FPN(IN_CH, 12, num_outs=6, add_extra_convs="on_input", relu_before_extra_convs=False)
    b = FPN(IN_CH, 12, num_outs=6, add_extra_convs="on_input", relu_before_extra_convs=True)
    b.load_state_dict(a.state_dict())
    x = _inputs()
    oa, ob = a(x), b(x)
    assert torch.equal(oa[4], ob[4]) and not torch.equal(oa[5], ob[5])
    assert torch.allclose(ob[5], b.extra_convs[1](torch.relu(ob[4])))


def test_wrong_number_of_inputs_is_reported():
    with pytest.raises(ValueError, match="in_channels"):
        FPN(IN_CH, 12, num_outs=4)(_inputs()[:3])


def test_invalid_extra_conv_mode_lists_choices():
    with pytest.raises(ValueError, match="on_lateral"):
        FPN(IN_CH, 12, num_outs=5, add_extra_convs="on_top")
