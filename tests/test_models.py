"""Model registry, CP-Mobile and SSCP-Mobile: golden sizes, checkpoint-compatible names, exact rebuilds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_batchnorm
from torch import nn

from edgeasc.complexity import count_dcase
from edgeasc.errors import ConfigError, EdgeAscError
from edgeasc.models import create_model, list_models, make_divisible, model_from_config, register_model

# (parameters, MACs on (1, 1, 256, 65)) by the DCASE rule. The baseline, S1 and S3 values are published
# (CPJKU baseline README; the seed's Table 1 and complexity.json); the rest were computed once and pinned.
GOLDEN: dict[str, tuple[int, int]] = {
    "cpmobile": (61_148, 29_419_156),
    "cpmobile_baseline": (61_148, 29_419_156),
    "cpmobile_b32": (61_148, 29_419_156),
    "cpmobile_b48": (138_728, 67_925_372),
    "cpmobile_b64": (228_340, 114_274_900),
    "cpmobile_b80": (362_992, 179_143_676),
    "cpmobile_b96": (524_924, 257_490_292),
    "sscp_mobile": (238_324, 115_432_276),
    "sscp_mobile_b32": (62_564, 29_654_916),
    "sscp_mobile_b48": (139_820, 65_614_708),
    "sscp_mobile_b64": (238_324, 115_432_276),
    "sscp_mobile_b80": (374_460, 179_535_684),
    "sscp_mobile_b96": (537_636, 256_749_796),
    "sscp_mobile_s1": (63_748, 29_982_132),
    "sscp_mobile_s3": (63_215, 29_221_122),
    "test_cpmobile": (3_770, 1_673_944),
    "test_sscp_mobile": (3_656, 1_475_212),
}

S1_BLOCKS = ((72, 32), (72, 32), (72, 32), (72, 56), (124, 56), (124, 104))
S3_BLOCKS = ((68, 32), (68, 32), (68, 32), (68, 58), (125, 58), (125, 101))


def test_every_registered_model_has_pinned_golden_numbers():
    assert sorted(GOLDEN) == sorted(set(list_models()) - set(list_models("passt*")))  # PaSST: test_passt.py


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_params_and_macs(name):
    model = create_model(name)
    report = count_dcase(model)
    assert (report.params, report.macs) == GOLDEN[name]
    assert sum(p.numel() for p in model.parameters()) == GOLDEN[name][0]


def test_published_budget_facts():
    baseline = count_dcase(create_model("cpmobile_baseline"))
    s1 = count_dcase(create_model("sscp_mobile_s1"))
    assert baseline.param_bytes() == 122_296
    assert s1.param_bytes() == 127_496  # the seed's complexity.json "Params"
    for name in ("cpmobile_baseline", "sscp_mobile_s1", "sscp_mobile_s3"):
        r = count_dcase(create_model(name))
        assert r.param_bytes(2) <= 128_000 and r.macs <= 30_000_000


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_forward_shape_and_config_round_trip(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(2, 1, 256, 65)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()

    cfg = model.model_config
    assert cfg["name"] == name
    rebuilt = model_from_config(cfg)
    assert rebuilt.model_config == cfg
    a, b = model.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    rebuilt.load_state_dict(a, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), y)


def _baseline_keys(n_blocks=(3, 2, 1)):
    """State-dict keys of CPJKU's models/baseline.py, written out from its structure."""
    convs = ["in_c.0", "in_c.1"]
    j = 0
    for s, count in enumerate(n_blocks, 1):
        for _ in range(count):
            j += 1
            convs += [f"stages.s{s}.b{j}.block.{i}" for i in range(3)]
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = set()
    for c in convs:
        keys.add(f"{c}.0.weight")
        keys.update(f"{c}.1.{p}" for p in bn)
    keys.add("feed_forward.0.weight")
    keys.update(f"feed_forward.1.{p}" for p in bn)
    return keys


def test_cpmobile_state_dict_keys_match_the_baseline():
    sd = create_model("cpmobile_baseline").state_dict()
    assert set(sd) == _baseline_keys()
    assert sd["in_c.0.0.weight"].shape == (8, 1, 3, 3)
    assert sd["in_c.1.0.weight"].shape == (32, 8, 3, 3)
    assert sd["stages.s1.b1.block.1.0.weight"].shape == (64, 1, 3, 3)
    assert sd["stages.s3.b6.block.2.0.weight"].shape == (104, 120, 1, 1)
    assert sd["feed_forward.0.weight"].shape == (10, 104, 1, 1)


def test_sscp_state_dict_keys_match_the_seed():
    sd = create_model("sscp_mobile_s1").state_dict()
    assert sd["in_c.0.0.weight"].shape == (8, 1, 3, 1)
    assert sd["in_c.1.0.weight"].shape == (32, 8, 1, 3)
    assert sd["in_c2.0.0.weight"].shape == (8, 1, 1, 3)
    assert sd["in_c2.1.0.weight"].shape == (32, 8, 3, 1)
    assert sd["stages.s2.b5.exp_conv.0.weight"].shape == (124, 56, 1, 1)
    assert sd["stages.s2.b5.depth_conv.0.weight"].shape == (124, 1, 3, 1)
    assert sd["stages.s2.b5.depth_conv2.0.weight"].shape == (124, 1, 1, 3)
    assert sd["stages.s2.b5.proj_conv.0.weight"].shape == (56, 124, 1, 1)
    assert "stages.s2.b5.proj_conv.1.running_var" in sd
    assert not any(".block." in k for k in sd)
    assert not any(k.endswith(".0.bias") for k in sd)  # convs carry no bias; BN follows each


def test_stage_layout_and_strides():
    model = create_model("cpmobile_baseline")
    assert [n for n, _ in model.stages.named_children()] == ["s1", "s2", "s3"]
    assert [n for n, _ in model.stages.s1.named_children()] == ["b1", "b2", "b3"]
    assert [n for n, _ in model.stages.s2.named_children()] == ["b4", "b5"]
    assert [n for n, _ in model.stages.s3.named_children()] == ["b6"]
    assert model.stages.s1.b3.block[1][0].stride == (1, 2)
    assert model.stages.s2.b4.block[1][0].stride == (2, 1)
    assert isinstance(model.stages.s1.b1.shortcut, nn.Identity)
    assert isinstance(model.stages.s1.b3.shortcut, nn.AvgPool2d)  # strided residual
    assert model.stages.s2.b4.shortcut is None  # 32 -> 56
    assert isinstance(model.stages.s2.b5.shortcut, nn.Identity)
    with torch.no_grad():
        assert model.forward_features(torch.zeros(1, 1, 256, 65)).shape == (1, 104, 32, 9)


def test_only_relu_and_tflite_friendly_ops():
    allowed = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Sequential)
    for name in ("test_cpmobile", "test_sscp_mobile"):
        for sub in create_model(name).modules():
            assert isinstance(sub, allowed) or sub.__class__.__module__.startswith("edgeasc."), type(sub)
        for sub in create_model(name).modules():
            if isinstance(sub, nn.Conv2d):
                assert sub.bias is None


def _cbr(x, seq, relu=True):
    conv, bn = seq[0], seq[1]
    y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    return F.relu(y) if relu else y


def _randomise(model):
    return randomize_batchnorm(model, seed=1)


def test_cpmobile_block_matches_a_functional_reference():
    model = _randomise(create_model("test_cpmobile"))
    block = model.stages.s1.b2  # 8 -> 8, stride (1, 2): AvgPool shortcut
    x = torch.randn(2, 8, 16, 12)
    y = _cbr(x, block.block[0])
    y = _cbr(y, block.block[1])
    y = _cbr(y, block.block[2], relu=False)
    expected = F.relu(y + F.avg_pool2d(x, 3, (1, 2), 1))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)


def test_sscp_block_and_stem_match_a_functional_reference():
    model = _randomise(create_model("test_sscp_mobile"))
    block = model.stages.s1.b2
    x = torch.randn(2, 8, 16, 12)
    e = _cbr(x, block.exp_conv)
    d = _cbr(e, block.depth_conv) + _cbr(e, block.depth_conv2)  # each branch: own BN and ReLU, then sum
    expected = F.relu(_cbr(d, block.proj_conv, relu=False) + F.avg_pool2d(x, 3, (1, 2), 1))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)

    x = torch.randn(2, 1, 256, 65)
    stem = _cbr(_cbr(x, model.in_c[0]), model.in_c[1]) + _cbr(_cbr(x, model.in_c2[0]), model.in_c2[1])
    with torch.no_grad():
        torch.testing.assert_close(model.forward_stem(x), stem)
    assert stem.shape == (2, 8, 64, 17)


def test_variable_length_input():
    model = create_model("test_sscp_mobile").eval()
    with torch.no_grad():
        assert model(torch.randn(3, 1, 256, 101)).shape == (3, 10)


@pytest.mark.parametrize(
    "v,expected", [(32, 32), (57.6, 56), (103.68, 104), (67.2, 64), (117.6, 120), (140.8, 144), (3, 8), (12, 16)]
)
def test_make_divisible(v, expected):
    assert make_divisible(v, 8) == expected


def test_make_divisible_adds_a_step_when_rounding_loses_over_ten_percent():
    assert make_divisible(20, 16) == 32  # 16 < 0.9 * 20
    assert make_divisible(1, 8, min_value=4) == 4


def test_explicit_widths_override_the_width_rule():
    model = create_model("cpmobile_b64", stem_channels=(8, 32), block_channels=S1_BLOCKS)
    assert model.model_config["kwargs"]["block_channels"] == S1_BLOCKS
    assert sum(p.numel() for p in model.parameters()) < GOLDEN["cpmobile_b64"][0]
    s1 = create_model("sscp_mobile", stem_channels=(8, 32), block_channels=S1_BLOCKS)
    assert count_dcase(s1).macs == GOLDEN["sscp_mobile_s1"][1]


def test_pruned_widths_need_not_be_multiples_of_8():
    blocks = ((50, 27), (61, 27), (45, 27), (70, 43), (99, 43), (88, 77))
    model = create_model("cpmobile", stem_channels=(6, 27), block_channels=blocks, n_classes=7).eval()
    assert model.model_config["kwargs"]["block_channels"] == blocks
    assert isinstance(model.stages.s1.b3.shortcut, nn.AvgPool2d)
    assert model.stages.s3.b6.shortcut is None
    with torch.no_grad():
        assert model(torch.randn(1, 1, 256, 65)).shape == (1, 7)


def test_sscp_stem_branches_may_have_different_middle_widths():
    model = create_model("sscp_mobile_s3", stem_channels=(7, 32, 6), block_channels=S3_BLOCKS)
    assert model.in_c[0][0].out_channels == 7 and model.in_c2[0][0].out_channels == 6
    assert model.model_config["kwargs"]["stem_channels"] == (7, 32, 6)
    same = create_model("sscp_mobile", stem_channels=(8, 32, 8), block_channels=S1_BLOCKS)
    assert same.model_config["kwargs"]["stem_channels"] == (8, 32)
    with pytest.raises(ConfigError, match="stem_channels"):
        create_model("cpmobile", stem_channels=(8, 32, 8), block_channels=S1_BLOCKS)


def test_width_rule_override_on_an_explicit_variant():
    model = create_model("sscp_mobile_s1", base_channels=32)
    assert model.model_config["kwargs"] == create_model("sscp_mobile_b32").model_config["kwargs"]


def test_overrides_are_kept_in_model_config():
    model = create_model("cpmobile_baseline", n_classes=5, in_channels=2, strides={"b2": [2, 2]})
    kw = model.model_config["kwargs"]
    assert (kw["n_classes"], kw["in_channels"], kw["strides"]) == (5, 2, {"b2": (2, 2)})
    assert model.model_config["name"] == "cpmobile_baseline"


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(ConfigError, match="cpmobile_baseline"):
        create_model("cpmobile_basline")
    with pytest.raises(ConfigError, match="sscp_mobile_s1"):
        create_model("sscp_mobil_s1")
    assert issubclass(ConfigError, EdgeAscError)


def test_unknown_kwarg_suggests_close_matches():
    with pytest.raises(ConfigError, match="did you mean 'base_channels'"):
        create_model("cpmobile", base_channel=48)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"stem_channels": (8, 32)}, "together"),
        ({"stem_channels": (8, 32), "block_channels": S1_BLOCKS, "base_channels": 32}, "not both"),
        ({"stem_channels": (8, 32), "block_channels": S1_BLOCKS[:5]}, "n_blocks"),
        ({"stem_channels": (8, 0), "block_channels": S1_BLOCKS}, "positive"),
        ({"strides": {"b9": (2, 2)}}, "b9"),
        ({"strides": {"b2": (0, 1)}}, "positive"),
        ({"n_classes": 0}, "n_classes"),
        ({"base_channels": -4}, "positive"),
        ({"n_blocks": (1, 1), "strides": {"b4": (2, 1)}}, "b4"),
        ({"n_blocks": (2, 1)}, "b4"),  # the default (baseline) strides name b4, which 3 blocks lack
    ],
)
def test_invalid_kwargs_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create_model("cpmobile", **kwargs)


def test_model_from_config_rejects_malformed_dicts():
    with pytest.raises(ConfigError):
        model_from_config({"kwargs": {}})
    with pytest.raises(ConfigError):
        model_from_config({"name": "cpmobile", "kwargs": {}, "weights": 1})
    with pytest.raises(ConfigError, match="did you mean"):
        model_from_config({"name": "sscp_mobile_s4", "kwargs": {}})


def test_list_models_pattern_and_duplicate_registration():
    assert list_models("sscp_mobile_s*") == ["sscp_mobile_s1", "sscp_mobile_s3"]
    assert list_models("test_*") == ["test_cpmobile", "test_sscp_mobile"]
    assert "cpmobile_baseline" in list_models()

    def cpmobile(**kwargs):  # same name as a registered builder
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="registered twice"):
        register_model(cpmobile)
