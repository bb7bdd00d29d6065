"""PaSST: official parameter names and shapes, its frontend, patchout, and loading official checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from edgeasc.checkpoint import save_checkpoint
from edgeasc.errors import CheckpointError, ConfigError
from edgeasc.models import create_model, model_from_config
from edgeasc.models.passt import PaSST, kaldi_mel_banks, load_passt_checkpoint

# Parameters (DCASE rule: every parameter, head_dist included). `passt` with 527 classes is the official
# passt-s-f128-p16-s10 AudioSet model (86.2 M, as the PaSST paper's ViT-B/DeiT-B size).
GOLDEN_PARAMS = {
    ("passt", 527): 86_153_758,
    ("passt", 10): 85_358_612,
    ("passt_small", 10): 832_276,
    ("passt_tiny", 10): 35_220,
}


def official_keys(depth: int) -> set[str]:
    """State-dict keys of kkoutini/PaSST models/passt.py (distilled, no pre-logits), from its structure."""
    keys = {"cls_token", "dist_token", "new_pos_embed", "freq_new_pos_embed", "time_new_pos_embed",
            "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias",
            "head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias", "head_dist.weight", "head_dist.bias"}
    for i in range(depth):
        for sub in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            keys.update({f"blocks.{i}.{sub}.weight", f"blocks.{i}.{sub}.bias"})
    return keys


def test_full_passt_has_the_official_names_shapes_and_size():
    with torch.device("meta"):  # shapes only: no 86 M-parameter allocation
        model = create_model("passt", n_classes=527)
    sd = model.state_dict()
    assert set(sd) == official_keys(12)
    shapes = {
        "patch_embed.proj.weight": (768, 1, 16, 16),
        "cls_token": (1, 1, 768),
        "dist_token": (1, 1, 768),
        "new_pos_embed": (1, 2, 768),
        "freq_new_pos_embed": (1, 768, 12, 1),
        "time_new_pos_embed": (1, 768, 1, 99),
        "blocks.11.attn.qkv.weight": (2304, 768),
        "blocks.11.attn.qkv.bias": (2304,),
        "blocks.0.mlp.fc1.weight": (3072, 768),
        "blocks.0.mlp.fc2.weight": (768, 3072),
        "head.0.weight": (768,),
        "head.1.weight": (527, 768),
        "head_dist.weight": (527, 768),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert model.norm.eps == 1e-6 and model.blocks[0].norm1.eps == 1e-6 and model.head[0].eps == 1e-5


@pytest.mark.parametrize("name,n_classes", sorted(GOLDEN_PARAMS))
def test_golden_parameter_counts(name, n_classes):
    with torch.device("meta"):
        model = create_model(name, n_classes=n_classes)
    assert sum(p.numel() for p in model.parameters()) == GOLDEN_PARAMS[(name, n_classes)]


def test_small_variants_share_the_official_key_names():
    for name, depth in (("passt_small", 4), ("passt_tiny", 2)):
        assert set(create_model(name).state_dict()) == official_keys(depth)


def test_kaldi_mel_banks_follow_the_formula():
    banks = kaldi_mel_banks(128, 1024, 32_000, 0.0, 15_500.0)
    assert banks.shape == (128, 513)
    assert torch.all(banks[:, -1] == 0)  # the padded Nyquist column
    assert torch.all(banks >= 0) and torch.all(banks.amax(dim=1) <= 1.0)
    assert torch.all(banks.amax(dim=1) > 0)  # every filter covers an FFT bin (the lowest ones only barely)
    # filter m peaks at the FFT bin closest (in mel) to its centre 700 (exp(c_m / 1127) - 1)
    mel = lambda f: 1127.0 * math.log(1 + f / 700.0)  # noqa: E731
    delta = mel(15_500.0) / 129
    for m in (5, 40, 100):
        center_hz = 700.0 * (math.exp((m + 1) * delta / 1127.0) - 1)
        nearest = min(range(512), key=lambda k: abs(mel(k * 31.25) - mel(center_hz)))
        assert int(banks[m].argmax()) == nearest


def test_frontend_shape_normalisation_and_a_tone():
    model = create_model("passt_tiny").eval()
    silence = model.mel(torch.zeros(2, 32_000))
    assert silence.shape == (2, 1, 128, 100)  # pre-emphasis drops a sample: 1 + 31,999 // 320 frames
    torch.testing.assert_close(silence, torch.full_like(silence, (math.log(1e-5) + 4.5) / 5))
    t = torch.arange(32_000) / 32_000
    tone = model.mel(torch.sin(2 * math.pi * 1000.0 * t).unsqueeze(0))[0, 0]
    peak = int(tone.mean(dim=1).argmax())
    f_max = 16_000 - 500  # PaSST: Nyquist minus half the f_max jitter range
    centres = [700.0 * (math.exp((m + 1) * 1127.0 * math.log(1 + f_max / 700) / 129 / 1127.0) - 1) for m in range(128)]
    assert abs(centres[peak] - 1000.0) < 60.0


def test_eval_forward_is_deterministic_and_train_draws_come_from_the_generator():
    torch.manual_seed(0)
    model = create_model("passt_tiny")
    wave = torch.randn(3, 32_000)
    model.eval()
    with torch.no_grad():
        a, b = model(wave), model(wave, generator=torch.Generator().manual_seed(5))
    assert a.shape == (3, 10) and torch.equal(a, b)
    model.train()
    with torch.no_grad():
        t1 = model(wave, generator=torch.Generator().manual_seed(1))
        t2 = model(wave, generator=torch.Generator().manual_seed(1))
        t3 = model(wave, generator=torch.Generator().manual_seed(2))
    assert torch.equal(t1, t2) and not torch.equal(t1, t3)


def test_structured_patchout_drops_rows_and_columns_in_training_only():
    model = create_model("passt_tiny", mixstyle_p=0.0)  # 12 x 9 grid, s_patchout_f 2, s_patchout_t 1
    lengths = []
    model.blocks[0].register_forward_hook(lambda m, args, out: lengths.append(args[0].shape[1]))
    wave = torch.randn(2, 32_000)
    model.train()
    model(wave, generator=torch.Generator().manual_seed(0))
    model.eval()
    model(wave)
    assert lengths == [2 + (12 - 2) * (9 - 1), 2 + 12 * 9]
    with pytest.raises(ConfigError, match="s_patchout_f 12 would drop all 12"):
        create_model("passt_tiny", s_patchout_f=12)


def test_ten_second_positions_are_cropped_for_a_one_second_clip():
    torch.manual_seed(0)
    long = create_model("passt_tiny", input_tdim=998).eval()  # 99 time positions
    short = create_model("passt_tiny").eval()  # 9 time positions
    sd = long.state_dict()
    sd["time_new_pos_embed"] = sd["time_new_pos_embed"][..., :9]
    short.load_state_dict(sd)
    wave = torch.randn(2, 32_000)
    with torch.no_grad():
        torch.testing.assert_close(long(wave), short(wave))
    with pytest.raises(ValueError, match="more than the 9"):
        short(torch.randn(1, 64_000))
    with pytest.raises(ValueError, match="takes waveforms"):
        short(torch.randn(1, 1, 256, 65))


def test_every_trainable_parameter_gets_a_gradient():
    """DistributedDataParallel fails on trainable parameters without gradients; head_dist is frozen."""
    model = create_model("passt_tiny").train()
    model(torch.randn(4, 32_000), generator=torch.Generator().manual_seed(0)).sum().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters()} - {"head_dist.weight", "head_dist.bias"}
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trainable)


def test_a_tiny_passt_learns_tones():
    torch.manual_seed(0)
    model = create_model("passt_tiny", mixstyle_p=0.0, freq_mask_bins=0, time_mask_frames=0, s_patchout_f=0,
                         s_patchout_t=0)
    g = torch.Generator().manual_seed(0)
    y = torch.arange(8) % 4
    t = torch.arange(32_000) / 32_000
    wave = torch.sin(2 * math.pi * (500.0 * (y + 1)).unsqueeze(1) * t) + 0.1 * torch.randn(8, 32_000, generator=g)
    # lr 1e-2 made the trajectory chaotic (its last loss changed with the thread count); at 3e-3 it is smooth,
    # and the judged loss is the trained model's in eval mode, not one noisy training step.
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(wave, generator=g), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        trained = torch.nn.functional.cross_entropy(model.eval()(wave), y).item()
    assert trained < 0.6 * first


def test_config_round_trip_rebuilds_the_same_model():
    torch.manual_seed(0)
    model = create_model("passt_tiny", n_classes=7).eval()
    assert model.model_config["kwargs"]["n_classes"] == 7 and "checkpoint_path" not in model.model_config["kwargs"]
    rebuilt = model_from_config(model.model_config).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    wave = torch.randn(2, 32_000)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(wave), model(wave))
    with pytest.raises(ConfigError, match="did you mean 'embed_dim'"):
        create_model("passt_tiny", embed_dims=64)
    with pytest.raises(ConfigError, match="not divisible"):
        create_model("passt_tiny", num_heads=3)


# --- official checkpoints ----------------------------------------------------------------------------
def write_official(path, wrap: str = "raw", **overrides) -> dict[str, torch.Tensor]:
    """A checkpoint in the release's format: the AudioSet model (527 classes, 10-s positions), official keys.

    `passt_tiny` sizes keep the file small; the key names, nesting and loader path are those of the
    released `passt-s-f128-p16-s10-ap.476-swa.pt` (a raw state_dict) and of CP-JKU's Lightning checkpoints.
    """
    torch.manual_seed(123)
    source = create_model("passt_tiny", **{"n_classes": 527, "input_tdim": 998, **overrides})
    sd = {k: v.clone() for k, v in source.state_dict().items()}
    if wrap == "raw":
        obj = sd
    elif wrap == "lightning":
        obj = {"epoch": 24, "global_step": 1000,
               "state_dict": {**{f"model.{k}": v for k, v in sd.items()}, "mel.fb": torch.zeros(3)}}
    elif wrap == "deit":
        obj = {"model": sd}
    else:
        raise ValueError(wrap)
    torch.save(obj, path)
    return sd


@pytest.mark.parametrize("wrap,prefix", [("raw", ""), ("lightning", "model."), ("deit", "")])
def test_official_checkpoint_loads_strictly_with_a_fresh_ten_class_head(tmp_path, wrap, prefix):
    path = tmp_path / "passt-s-f128-p16-s10-ap.476-swa.pt"
    sd = write_official(path, wrap)
    torch.manual_seed(7)
    model = create_model("passt_tiny")
    fresh_head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("head.1", "head_dist"))}
    report = load_passt_checkpoint(model, path)
    assert (report.prefix, report.head_replaced, report.source_classes) == (prefix, True, 527)
    assert report.time_positions == (99, 9)
    assert report.left_out == (("mel.fb",) if wrap == "lightning" else ())
    loaded = model.state_dict()
    for key, value in loaded.items():
        if key in fresh_head:
            assert torch.equal(value, fresh_head[key]), key
        elif key == "time_new_pos_embed":
            assert torch.equal(value, sd[key][..., :9])
        else:
            assert torch.equal(value, sd[key]), key
    assert torch.equal(loaded["head.0.weight"], sd["head.0.weight"])  # the head's LayerNorm is kept


def test_create_model_with_checkpoint_path_and_a_matching_head(tmp_path):
    path = tmp_path / "official.pt"
    sd = write_official(path, n_classes=10)  # e.g. a TAU fine-tuned PaSST: its 10-class head is kept
    model = create_model("passt_tiny", checkpoint_path=str(path))
    assert "checkpoint_path" not in model.model_config["kwargs"]
    assert torch.equal(model.state_dict()["head.1.weight"], sd["head.1.weight"])
    assert torch.equal(model.state_dict()["blocks.1.mlp.fc2.weight"], sd["blocks.1.mlp.fc2.weight"])


def test_shorter_time_positions_are_interpolated(tmp_path):
    path = tmp_path / "short.pt"
    sd = write_official(path, input_tdim=50)  # 4 time positions
    model = create_model("passt_tiny")
    report = load_passt_checkpoint(model, path)
    assert report.time_positions == (4, 9)
    pos = model.state_dict()["time_new_pos_embed"]
    assert pos.shape == (1, 32, 1, 9)
    lo, hi = sd["time_new_pos_embed"].amin(dim=-1), sd["time_new_pos_embed"].amax(dim=-1)
    assert torch.all(pos >= lo.unsqueeze(-1) - 1e-6) and torch.all(pos <= hi.unsqueeze(-1) + 1e-6)


def test_wrong_or_truncated_checkpoints_raise_clear_errors(tmp_path):
    model = create_model("passt_tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="not found"):
        load_passt_checkpoint(model, tmp_path / "missing.pt")

    good = tmp_path / "official.pt"
    write_official(good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_passt_checkpoint(model, truncated)

    cnn = tmp_path / "cnn.pt"
    save_checkpoint(cnn, create_model("test_cpmobile"), stage="train")
    with pytest.raises(CheckpointError, match="no PaSST weights found"):
        load_passt_checkpoint(model, cnn)

    deeper = tmp_path / "deeper.pt"
    write_official(deeper, depth=3)
    with pytest.raises(CheckpointError, match=r"12 unexpected \(first: blocks\.2\..*\); check depth"):
        load_passt_checkpoint(model, deeper)

    wider = tmp_path / "wider.pt"
    write_official(wider, embed_dim=64)
    with pytest.raises(CheckpointError, match=r"37 weights have other shapes than this PaSST: cls_token \(1, 1, 64\) vs \(1, 1, 32\)"):
        load_passt_checkpoint(model, wider)

    stray = tmp_path / "stray.pt"
    sd = write_official(stray)
    torch.save({**sd, "teacher.extra": torch.zeros(2)}, stray)
    with pytest.raises(CheckpointError, match="unexpected"):
        load_passt_checkpoint(model, stray)

    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # failed loads left it intact


def test_passt_is_a_waveform_model():
    model = create_model("passt_tiny")
    assert isinstance(model, PaSST) and model.input_kind == "waveform"
    assert model.example_input_size == (1, 32_000) and model.sample_rate_hz == 32_000


# --- through the training loop -----------------------------------------------------------------------
def test_edgeasc_train_trains_a_passt_reproducibly(tiny_data, tmp_path, fast_overrides):
    from edgeasc.checkpoint import read_checkpoint
    from edgeasc.config import resolve_train_config
    from edgeasc.evaluate import evaluate_checkpoint
    from edgeasc.train.loop import train

    over = fast_overrides + ("model.name=passt_tiny",)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "teacher_passt_small.toml"
    cfg = resolve_train_config(recipe, over)
    r1 = train(cfg, tiny_data, tmp_path / "r1", progress=False)
    r2 = train(cfg, tiny_data, tmp_path / "r2", progress=False)
    s1, s2 = read_checkpoint(r1.model_path)["state_dict"], read_checkpoint(r2.model_path)["state_dict"]
    assert all(torch.equal(s1[k], s2[k]) for k in s1)  # patchout, masks and MixStyle drew from the seeded generator
    report = evaluate_checkpoint(r1.model_path, tiny_data, cache_dir=cfg.data.cache_dir, out_dir=tmp_path)
    assert report["macro_accuracy"] == pytest.approx(r1.final_metrics["macro_accuracy"])
