"""Importing CPJKU-baseline and seed Lightning checkpoints: widths from shapes, identical outputs, clean errors."""

from __future__ import annotations

import argparse

import pytest
import torch
from conftest import randomize_batchnorm
from torch import nn

from edgeasc.checkpoint import frontend_of, load_model, read_checkpoint
from edgeasc.config import FrontendConfig
from edgeasc.devices.bundle import read_bundle
from edgeasc.errors import CheckpointError, ConfigError
from edgeasc.features import mel_filterbank
from edgeasc.models import create_model
from edgeasc.models.import_ckpt import import_checkpoint, infer_family, infer_widths

PRUNED_BLOCKS = ((50, 27), (61, 27), (45, 27), (70, 43), (99, 43), (88, 77))


def _random_model(name: str, **kwargs) -> nn.Module:
    """A model with random weights *and* BatchNorm statistics, so a wrong load cannot go unnoticed."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.num_batches_tracked.fill_(1234)
    return randomize_batchnorm(model)


def _lightning_ckpt(model: nn.Module, prefix: str = "model.", sample_rate_hz: int = 32_000) -> dict:
    """The shape of a Lightning checkpoint of CPJKU's PLModule (network under `model.`, frontend under `mel.`,
    with the mel filterbank of a `sample_rate_hz` frontend)."""
    state = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    state["mel.0.kernel"] = torch.randn(1, 1, 40)
    state["mel.1.spectrogram.window"] = torch.hann_window(3072)
    state["mel.1.mel_scale.fb"] = mel_filterbank(2049, 0.0, sample_rate_hz / 2, 256, sample_rate_hz)
    state["mel_augment.0.dummy"] = torch.zeros(1)
    return {
        "epoch": 149,
        "global_step": 12_345,
        "pytorch-lightning_version": "2.1.3",
        "state_dict": state,
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.005, "params": [0, 1]}]}],
        "hyper_parameters": argparse.Namespace(lr=0.005, base_channels=32),
    }


def _assert_same_outputs(src_model: nn.Module, dst_path) -> nn.Module:
    imported, ckpt = load_model(dst_path)
    x = torch.randn(2, 1, 256, 65)
    with torch.no_grad():
        torch.testing.assert_close(imported(x), src_model(x), rtol=0, atol=0)
    assert ckpt["stage"] == "import"
    return imported


def test_import_cpjku_baseline_checkpoint_with_pruned_widths(tmp_path):
    model = _random_model("cpmobile", stem_channels=(6, 27), block_channels=PRUNED_BLOCKS)
    src = tmp_path / "baseline.ckpt"
    torch.save(_lightning_ckpt(model), src)

    dst = import_checkpoint(src, tmp_path / "out" / "model.pt")
    imported = _assert_same_outputs(model, dst)
    kw = imported.model_config["kwargs"]
    assert imported.model_config["name"] == "cpmobile"
    assert kw["stem_channels"] == (6, 27) and kw["block_channels"] == PRUNED_BLOCKS
    assert kw["n_blocks"] == (3, 2, 1) and kw["strides"] == {"b3": (1, 2), "b4": (2, 1)}
    extra = torch.load(dst, weights_only=True)["extra"]
    assert extra["source"] == str(src)
    assert extra["source_epoch"] == 149 and extra["dropped_keys"] == 4
    assert not any(k.startswith("mel") for k in imported.state_dict())
    assert frontend_of(torch.load(dst, weights_only=True)) == FrontendConfig()  # the stored filterbank's


def test_import_ties_the_frontend_to_the_stored_filterbank(tmp_path):
    model = _random_model("test_cpmobile", strides={"b3": (1, 2), "b4": (2, 1)})
    src = tmp_path / "at44k.ckpt"
    torch.save(_lightning_ckpt(model, sample_rate_hz=44_100), src)
    ckpt = torch.load(import_checkpoint(src, tmp_path / "44k.pt"), weights_only=True)
    fe = frontend_of(ckpt)
    assert fe.sample_rate_hz == 44_100 and fe.n_frames == 89
    assert "44.1 kHz" in ckpt["extra"]["frontend_match"]

    bad = _lightning_ckpt(model)
    bad["state_dict"]["mel.1.mel_scale.fb"] = torch.rand(2049, 256)  # no frontend edgeasc knows
    torch.save(bad, src)
    with pytest.raises(CheckpointError, match="matches none of edgeasc's frontends") as e:
        import_checkpoint(src, tmp_path / "bad.pt")
    _one_line(e)
    assert not (tmp_path / "bad.pt").exists()

    plain = {k[len("model."):]: v for k, v in bad["state_dict"].items() if k.startswith("model.")}
    torch.save(plain, src)  # a bare state_dict: no filterbank, the DCASE 2025 frontend is assumed
    ckpt = torch.load(import_checkpoint(src, tmp_path / "plain.pt"), weights_only=True)
    assert frontend_of(ckpt) == FrontendConfig() and "assumed" in ckpt["extra"]["frontend_match"]


def test_import_seed_sscp_checkpoint(tmp_path):
    model = _random_model(
        "sscp_mobile", stem_channels=(7, 29, 5), block_channels=PRUNED_BLOCKS, n_classes=10
    )
    ckpt = _lightning_ckpt(model)
    ckpt["state_dict"]["teacher_logits_dummy"] = torch.zeros(3)
    src = tmp_path / "c64_pruned.ckpt"
    torch.save(ckpt, src)

    dst = import_checkpoint(src, tmp_path / "s.pt")
    imported = _assert_same_outputs(model, dst)
    assert imported.model_config["name"] == "sscp_mobile"
    assert imported.model_config["kwargs"]["stem_channels"] == (7, 29, 5)


def test_import_the_seed_s3_widths_exactly(tmp_path):
    model = _random_model("sscp_mobile_s3")
    src = tmp_path / "s3.ckpt"
    torch.save(_lightning_ckpt(model), src)
    imported = _assert_same_outputs(model, import_checkpoint(src, tmp_path / "s3.pt", family="sscp_mobile"))
    assert imported.model_config["kwargs"] == model.model_config["kwargs"]


@pytest.mark.parametrize("prefix", ["net.", "model.module.", "student."])
def test_documented_prefixes(tmp_path, prefix):
    model = _random_model("test_cpmobile", strides={"b3": (1, 2), "b4": (2, 1)})
    src = tmp_path / "x.ckpt"
    torch.save(_lightning_ckpt(model, prefix=prefix), src)
    _assert_same_outputs(model, import_checkpoint(src, tmp_path / "x.pt"))


def test_raw_state_dict_and_fp16_weights(tmp_path):
    model = _random_model("cpmobile_baseline")
    src = tmp_path / "raw.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, src)
    imported, _ = load_model(import_checkpoint(src, tmp_path / "raw_out.pt"))
    assert next(imported.parameters()).dtype == torch.float32
    x = torch.randn(1, 1, 256, 65)
    with torch.no_grad():
        torch.testing.assert_close(imported(x), model(x), rtol=2e-2, atol=2e-2)


def test_explicit_strides(tmp_path):
    strides = {"b2": (1, 2), "b3": (2, 1)}
    model = _random_model("test_sscp_mobile")
    src = tmp_path / "t.ckpt"
    torch.save(_lightning_ckpt(model), src)
    imported = _assert_same_outputs(model, import_checkpoint(src, tmp_path / "t.pt", strides=strides))
    assert imported.model_config["kwargs"]["strides"] == strides


def test_infer_family_and_widths():
    sd = create_model("sscp_mobile_s1").state_dict()
    assert infer_family(sd) == "sscp_mobile"
    assert infer_family(create_model("test_cpmobile").state_dict()) == "cpmobile"
    kw = infer_widths(sd, "sscp_mobile")
    assert kw["block_channels"] == ((72, 32), (72, 32), (72, 32), (72, 56), (124, 56), (124, 104))
    assert kw["stem_channels"] == (8, 32, 8) and kw["n_classes"] == 10 and kw["in_channels"] == 1
    with pytest.raises(CheckpointError):
        infer_family({"foo.weight": torch.zeros(1)})


def test_family_mismatch_and_unknown_family(tmp_path):
    src = tmp_path / "s.ckpt"
    torch.save(_lightning_ckpt(_random_model("test_sscp_mobile")), src)
    with pytest.raises(CheckpointError, match="sscp_mobile"):
        import_checkpoint(src, tmp_path / "o.pt", family="cpmobile")
    with pytest.raises(ConfigError, match="family"):
        import_checkpoint(src, tmp_path / "o.pt", family="resnet")


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_truncated_file(tmp_path):
    src = tmp_path / "good.ckpt"
    torch.save(_lightning_ckpt(_random_model("test_cpmobile")), src)
    data = src.read_bytes()
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        import_checkpoint(bad, tmp_path / "o.pt")
    assert "truncated.ckpt" in _one_line(e)
    assert not (tmp_path / "o.pt").exists()


def test_garbage_and_missing_files(tmp_path):
    bad = tmp_path / "garbage.ckpt"
    bad.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(CheckpointError) as e:
        import_checkpoint(bad, tmp_path / "o.pt")
    _one_line(e)
    with pytest.raises(CheckpointError, match="not found"):
        import_checkpoint(tmp_path / "nope.ckpt", tmp_path / "o.pt")


def test_unsafe_pickle_is_refused(tmp_path):
    src = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "callback": _random_model}, src)  # a pickled function, not data
    with pytest.raises(CheckpointError, match="pickles Python objects") as e:
        import_checkpoint(src, tmp_path / "o.pt")
    _one_line(e)
    assert "weights_only=False" not in str(e.value)  # torch's advice runs the file's code: never passed on
    for reader in (read_checkpoint, read_bundle):  # the edgeasc readers share the one loader
        with pytest.raises(CheckpointError, match="pickles Python objects") as e:
            reader(src)
        assert "weights_only=False" not in str(e.value)


def test_checkpoint_without_a_network(tmp_path):
    src = tmp_path / "mel_only.ckpt"
    torch.save({"state_dict": {"mel.1.mel_scale.fb": torch.zeros(4, 4)}}, src)
    with pytest.raises(CheckpointError, match="no CP-Mobile"):
        import_checkpoint(src, tmp_path / "o.pt")
    torch.save([1, 2, 3], src)
    with pytest.raises(CheckpointError, match="state_dict"):
        import_checkpoint(src, tmp_path / "o.pt")


def test_weights_that_do_not_fit(tmp_path):
    ckpt = _lightning_ckpt(_random_model("test_cpmobile", strides={"b3": (1, 2), "b4": (2, 1)}))
    del ckpt["state_dict"]["model.feed_forward.1.bias"]
    src = tmp_path / "broken.ckpt"
    torch.save(ckpt, src)
    with pytest.raises(CheckpointError, match="do not fit") as e:
        import_checkpoint(src, tmp_path / "o.pt")
    _one_line(e)


def test_two_networks_are_ambiguous(tmp_path):
    model = _random_model("test_cpmobile", strides={"b3": (1, 2), "b4": (2, 1)})
    ckpt = _lightning_ckpt(model)
    ckpt["state_dict"].update({"net." + k: v for k, v in model.state_dict().items()})
    src = tmp_path / "two.ckpt"
    torch.save(ckpt, src)
    with pytest.raises(CheckpointError, match="several networks"):
        import_checkpoint(src, tmp_path / "o.pt")
