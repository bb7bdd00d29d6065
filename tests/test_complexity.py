"""The DCASE complexity rule: hand-computed cases and a cross-check against torchinfo (the official tool)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeasc.complexity import (
    DCASE_INPUT_SIZE,
    ComplexityReport,
    count_dcase,
    format_complexity_table,
    param_bytes_by_dtype,
)
from edgeasc.models import create_model, list_models


class _Tiny(nn.Module):
    """conv(1->4, 3x3, bias) -> BN -> ReLU -> pool -> Linear(4->3); the conv is called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        x = self.conv2(self.conv2(x))  # shared module: MACs twice, parameters once
        return self.fc(self.pool(x).flatten(1))


def test_hand_computed_tiny_model():
    r = count_dcase(_Tiny(), input_size=(1, 1, 8, 8))
    # conv: (36 + 4) x 64 positions; conv2: 16 x 64, twice; BN: 2 x 4; Linear: 12 + 3; ReLU, pool: 0
    assert r.macs == 40 * 64 + 2 * 16 * 64 + 8 + 15 == 4_631
    assert r.params == 40 + 16 + 8 + 15 == 79
    assert [row.name for row in r.layers] == ["conv", "bn", "act", "conv2", "conv2", "pool", "fc"]
    assert [row.macs for row in r.layers] == [2560, 8, 0, 1024, 1024, 0, 15]
    assert r.layers[0].output_shape == (1, 4, 8, 8)
    assert r.layers[-1].type == "Linear"


def test_macs_scale_with_batch_like_torchinfo():
    one = count_dcase(_Tiny(), input_size=(1, 1, 8, 8)).macs
    assert count_dcase(_Tiny(), input_size=(3, 1, 8, 8)).macs == 3 * one


def test_linear_over_a_sequence_costs_every_position():
    # torchinfo 1.8 would charge 15 (parameters x batch); the real and conservative count is 15 x 5.
    r = count_dcase(nn.Linear(4, 3), input_size=(1, 5, 4))
    assert r.macs == 75


def test_buffers_are_not_parameters():
    r = count_dcase(nn.BatchNorm2d(16), input_size=(1, 16, 4, 4))
    assert r.params == 32 and r.macs == 32  # running_mean/var and num_batches_tracked not counted


def test_param_bytes():
    model = create_model("cpmobile_baseline")
    r = count_dcase(model)
    assert isinstance(r, ComplexityReport)
    assert r.param_bytes() == r.param_bytes_fp16 == 122_296
    assert r.param_bytes(1) == 61_148
    assert r.param_bytes_fp32 == 244_592
    assert r.stored_param_bytes == 244_592
    assert param_bytes_by_dtype(model) == {"float32": 244_592}
    half = count_dcase(model.half())
    assert half.stored_param_bytes == 122_296 and half.macs == r.macs
    assert param_bytes_by_dtype(model) == {"float16": 122_296}
    with pytest.raises(ValueError):
        r.param_bytes(0)


def test_mixed_dtypes_are_split():
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2).half())
    assert param_bytes_by_dtype(model) == {"float32": 8, "float16": 8}


def test_count_does_not_touch_the_model():
    model = create_model("test_cpmobile").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_dcase(model)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics not updated
    assert not any(m._forward_hooks for m in model.modules())


def test_format_complexity_table():
    r = count_dcase(create_model("cpmobile_baseline"))
    table = format_complexity_table(r)
    lines = table.splitlines()
    assert lines[0].split() == ["Layer", "Type", "Output", "shape", "Params", "MACs"]
    rules = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    assert len(rules) == 2
    assert len({len(line) for line in lines[: rules[1] + 1]}) == 1  # aligned columns
    proj = next(row for row in r.layers if row.name == "stages.s3.b6.block.2.0")
    assert proj.macs == 120 * 104 * 32 * 9
    assert any(line.startswith(proj.name + " ") and line.endswith(f"{proj.macs:,}") for line in lines)
    assert "29,419,156" in table and "61,148" in table and "122,296 bytes" in table
    assert not any(line.startswith("in_c.0.2") for line in lines)  # ReLU rows hidden by default
    assert any(line.startswith("in_c.0.2") for line in format_complexity_table(r, zero_cost_rows=True).splitlines())


@pytest.mark.parametrize("name", sorted(set(list_models()) - set(list_models("passt*"))))  # log-mel input models
def test_matches_torchinfo(name):
    torchinfo = pytest.importorskip("torchinfo")
    model = create_model(name)
    expected = torchinfo.summary(model, input_size=DCASE_INPUT_SIZE, verbose=0)
    r = count_dcase(model)
    assert (r.params, r.macs) == (expected.total_params, expected.total_mult_adds)


def test_matches_torchinfo_on_pruned_widths():
    torchinfo = pytest.importorskip("torchinfo")
    model = create_model(
        "sscp_mobile",
        stem_channels=(7, 29, 5),
        block_channels=((50, 29), (61, 29), (45, 29), (70, 43), (99, 43), (88, 77)),
    )
    expected = torchinfo.summary(model, input_size=DCASE_INPUT_SIZE, verbose=0)
    r = count_dcase(model)
    assert (r.params, r.macs) == (expected.total_params, expected.total_mult_adds)
    tiny = torchinfo.summary(_Tiny(), input_size=(1, 1, 8, 8), verbose=0)
    assert count_dcase(_Tiny(), input_size=(1, 1, 8, 8)).macs == tiny.total_mult_adds
