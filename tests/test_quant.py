"""Weight fake-quantisation (edgeasc.train.qat): the int8 grid, its survival under BatchNorm folding, training."""

import json

import pytest
import torch
from conftest import randomize_batchnorm
from torch import nn

from edgeasc.checkpoint import load_model
from edgeasc.config import resolve_train_config
from edgeasc.models import create_model
from edgeasc.train.loop import train
from edgeasc.train.qat import (
    attach_weight_fake_quant,
    grid_error,
    quantize_per_channel,
    quantize_per_tensor,
    snapped_copy,
)


def test_per_channel_grid_by_hand():
    w = torch.tensor([[1.27, -0.5, 0.013], [-2.54, 0.02, 1.0]])
    q = quantize_per_channel(w)
    # channel 0: scale 0.01 -> 127, -50, 1; channel 1: scale 0.02 -> -127, 1, 50
    assert torch.allclose(q, torch.tensor([[1.27, -0.5, 0.01], [-2.54, 0.02, 1.0]]), atol=1e-7)
    assert torch.equal(quantize_per_channel(q), q)  # idempotent
    assert grid_error(nn.Linear(3, 2)) > 0.01  # a fresh layer is off the grid


def test_per_tensor_activation_rounding_by_hand():
    # range [0.5, 2.55] widens to [0, 2.55]: scale 0.01, zero point -128; 3.0 clips to 127 -> 2.55
    t = torch.tensor([0.0, 0.014, 0.016, 1.0, 3.0, -1.0])
    q = quantize_per_tensor(t, 0.5, 2.55)
    assert torch.allclose(q, torch.tensor([0.0, 0.01, 0.02, 1.0, 2.55, 0.0]), atol=1e-6)


def test_grid_survives_batchnorm_folding():
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 6, (3, 1), bias=False), nn.BatchNorm2d(6)
    randomize_batchnorm(nn.Sequential(conv, bn))
    with torch.no_grad():
        conv.weight.copy_(quantize_per_channel(conv.weight))
    fused = fuse_conv_bn_eval(conv.eval(), bn.eval())
    w = fused.weight.detach()
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127
    ints = w / scale
    assert float((ints - ints.round()).abs().max()) < 1e-4  # the folded weights are still int8 values


def test_fake_quant_forward_equals_snapped_copy():
    torch.manual_seed(0)
    model = create_model("test_sscp_mobile").eval()
    randomize_batchnorm(model)
    plain_keys = set(model.state_dict())
    assert attach_weight_fake_quant(model) > 0
    x = torch.randn(2, 1, 256, 65)
    snapped = snapped_copy(model)
    assert set(snapped.state_dict()) == plain_keys
    assert grid_error(snapped) < 1e-3
    torch.testing.assert_close(model(x), snapped(x))
    # gradients pass straight through to the latent float weights
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_train_with_weight_fake_quant_saves_grid_weights(tiny_data, tmp_path, fast_overrides):
    base = train(resolve_train_config(None, fast_overrides + ("optim.epochs=1",)), tiny_data, tmp_path / "base",
                 progress=False)
    over = fast_overrides + ("optim.epochs=2", f"model.init_checkpoint={str(base.model_path)!r}",
                             "quant.weight_fake_quant=true")
    run = train(resolve_train_config(None, over), tiny_data, tmp_path / "qat", progress=False)
    model, ckpt = load_model(run.model_path)
    assert grid_error(model) < 1e-3
    assert grid_error(load_model(base.model_path)[0]) > 0.01
    assert ckpt["config"]["quant"]["weight_fake_quant"] is True
    # resuming a complete fake-quant run reads its parametrised state back
    again = train(resolve_train_config(None, over), tiny_data, tmp_path / "qat", resume=True, progress=False)
    assert again.epochs_run == 0


def test_resume_accepts_a_config_written_before_a_new_field(tiny_data, tmp_path, fast_overrides):
    cfg = resolve_train_config(None, fast_overrides + ("optim.epochs=1",))
    run = tmp_path / "old"
    train(cfg, tiny_data, run, progress=False)
    state = torch.load(run / "last.pt", weights_only=True)
    del state["config"]["quant"]  # as written by an edgeasc without the quant section
    torch.save(state, run / "last.pt")
    assert train(cfg, tiny_data, run, resume=True, progress=False).epochs_run == 0
    assert "quant" in json.loads((run / "config.json").read_text())


def test_fake_quant_refuses_pruning_hook(tiny_data, tmp_path, fast_overrides):
    from edgeasc.errors import ConfigError

    cfg = resolve_train_config(None, fast_overrides + ("optim.epochs=1", "quant.weight_fake_quant=true"))
    with pytest.raises(ConfigError, match="pruning"):
        train(cfg, tiny_data, tmp_path / "r", progress=False, step_hook=lambda *a: None)


# --------------------------------------------------------------------------------------------------
# Input normalisation folded into the first convolutions
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cpmobile_baseline", "sscp_mobile_s1", "test_sscp_mobile"])
def test_folded_input_normalization_is_exact_borders_included(name):
    from edgeasc.deploy.onnx import fold_batchnorm
    from edgeasc.deploy.runtime import InputNormalization
    from edgeasc.train.qat import NormalizedInputConv, fold_input_normalization

    torch.manual_seed(0)
    model = fold_batchnorm(randomize_batchnorm(create_model(name)))
    x = torch.randn(3, 1, 256, 65) * 2.2 - 6.0  # real-recording log-mel levels: mean -6
    x[:, :, :, 0] = -11.5  # the borders hold the extremes, so zero padding of u would show there
    x[:, :, 0, :] = 8.0
    norm = InputNormalization.of(x.numpy())
    folded = fold_input_normalization(model, norm)
    u = torch.from_numpy(norm.apply(x.numpy()))
    with torch.no_grad():
        want, got = model(x), folded(u)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    convs = [m for m in folded.modules() if isinstance(m, NormalizedInputConv)]
    assert len(convs) == (2 if "sscp" in name else 1)
    # the explicit border constant is what makes it exact: zero-padding u instead changes the logits
    for m in convs:
        m.pad_value = 0.0
    with torch.no_grad():
        assert (folded(u) - want).abs().max() > 1e-4  # 10x the tolerance above


def test_input_normalization_statistics_and_metadata():
    import numpy as np

    from edgeasc.deploy.runtime import InputNormalization, ModelFileError

    x = np.array([[-8.0, -6.0], [-4.0, -6.0]], dtype=np.float32)
    norm = InputNormalization.of(x)
    assert norm.mean == -6.0 and norm.std == pytest.approx(np.sqrt(2.0), rel=1e-6)
    np.testing.assert_array_equal(norm.apply(x), ((x + 6.0) / np.float32(norm.std)).astype(np.float32))
    assert InputNormalization.from_metadata({"input_normalization": norm.to_dict()}) == norm
    assert InputNormalization.from_metadata({"input_normalization": None}) is None
    assert InputNormalization.from_metadata(None) is None
    with pytest.raises(ModelFileError, match="malformed input_normalization"):
        InputNormalization.from_metadata({"input_normalization": {"mean": 1.0}})
    with pytest.raises(ValueError, match="positive std"):
        InputNormalization(0.0, 0.0)
