"""The log-mel frontend: filterbank formula pinned by golden values, shapes, and STFT settings."""

import math

import numpy as np
import pytest
import torch

from edgeasc.config import FrontendConfig
from edgeasc.features import LogMel, mel_filterbank


def test_filterbank_matches_hand_computed_htk_triangle():
    # sr 8 kHz, 5 bins at 0, 1, 2, 3, 4 kHz, one filter between 0 and 4 kHz: the peak sits at the mel
    # midpoint, computed here from the HTK formula by hand.
    mel = lambda f: 2595 * math.log10(1 + f / 700)
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    peak = hz(mel(4000) / 2)
    expected = [0.0, 1000 / peak, (4000 - 2000) / (4000 - peak), (4000 - 3000) / (4000 - peak), 0.0]
    fb = mel_filterbank(5, 0.0, 4000.0, 1, 8000)
    assert fb.shape == (5, 1)
    np.testing.assert_allclose(fb[:, 0].numpy(), expected, rtol=1e-6, atol=1e-7)


# SHA-256 of torchaudio 2.9.1's `melscale_fbanks(2049, 0.0, sr // 2, 256, sr, norm=None, mel_scale="htk")` (and of
# `MelSpectrogram(sr, n_fft=4096, win_length=3072, hop_length=500, n_mels=256).mel_scale.fb`, the same bytes),
# float32 little-endian, computed in a separate virtualenv with torch 2.9.1 + torchaudio 2.9.1 (torchaudio does
# not install beside edgeasc's torch). A checkpoint's stored filterbank is these bytes.
TORCHAUDIO_FB_SHA256 = {
    32_000: "1fd2ff1cdd24b7851494c01c90de4319e122199977e6106a3ad42b97f146ece7",
    44_100: "aaf6a3820ec1dfb6252a96276fd75b4a1669c1d8bde685a63b951819ce3c7217",
}


@pytest.mark.parametrize("sample_rate_hz", sorted(TORCHAUDIO_FB_SHA256))
def test_filterbank_is_torchaudios_float32_bytes(sample_rate_hz):
    import hashlib

    fb = mel_filterbank(2049, 0.0, sample_rate_hz / 2, 256, sample_rate_hz)
    assert fb.dtype == torch.float32 and fb.shape == (2049, 256)
    assert hashlib.sha256(fb.numpy().astype("<f4").tobytes()).hexdigest() == TORCHAUDIO_FB_SHA256[sample_rate_hz]


def test_baseline_filterbank_golden_values():
    # Values of the (2049, 256) baseline filterbank (torchaudio melscale_fbanks, htk, norm=None); they were
    # cross-checked once against librosa.filters.mel(htk=True, norm=None) in float64 (the bytes are pinned
    # above; float32 and float64 formulas differ by up to 3e-5).
    fb = mel_filterbank(2049, 0.0, 16000.0, 256, 32000).numpy().astype(np.float64)
    assert fb.shape == (2049, 256)
    assert int((fb > 0).sum()) == 4067
    assert fb.sum() == pytest.approx(2034.284535171464, rel=1e-6)
    golden = {  # mel bin: (first nonzero, last nonzero, argmax, max, sum)
        0: (1, 2, 1, 0.8986644148826599, 1.1111164093017578),
        1: (2, 3, 2, 0.7875480651855469, 1.1206419467926025),
        10: (12, 14, 13, 0.9765658378601074, 1.3973888158798218),
        100: (219, 225, 222, 0.9794967174530029, 3.8593602180480957),
        255: (1996, 2047, 2022, 0.9915459156036377, 26.056293487548828),
    }
    for m, (first, last, arg, peak, total) in golden.items():
        nz = np.nonzero(fb[:, m])[0]
        assert (nz[0], nz[-1], int(fb[:, m].argmax())) == (first, last, arg)
        assert fb[:, m].max() == pytest.approx(peak, rel=1e-5)
        assert fb[:, m].sum() == pytest.approx(total, rel=1e-5)


def test_logmel_shape_is_baseline_input():
    cfg = FrontendConfig()
    assert (cfg.clip_samples, cfg.n_frames) == (32000, 65)
    x = torch.randn(3, cfg.clip_samples)
    out = LogMel(cfg)(x)
    assert out.shape == (3, 1, 256, 65)
    assert torch.isfinite(out).all()


def test_logmel_equals_manual_stft_power_mel():
    # periodic Hann of 3072 centred in a 4096 FFT, reflect padding, power 2, then log(x + 1e-5)
    cfg = FrontendConfig()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(cfg.clip_samples) * 0.1
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(3072) / 3072)
    win = np.pad(win, (512, 512))
    padded = np.pad(x, (2048, 2048), mode="reflect")
    frame = 17
    seg = padded[frame * 500 : frame * 500 + 4096] * win
    power = np.abs(np.fft.rfft(seg)) ** 2
    fb = mel_filterbank(2049, 0.0, 16000.0, 256, 32000).numpy().astype(np.float64)
    expected = np.log(power @ fb + 1e-5)
    got = LogMel(cfg)(torch.from_numpy(x).float()[None])[0, 0, :, frame].numpy()
    np.testing.assert_allclose(got, expected, atol=2e-4)


def test_mask_fn_is_applied_before_log():
    cfg = FrontendConfig()
    x = torch.randn(1, cfg.clip_samples)
    out = LogMel(cfg)(x, mask_fn=lambda m: torch.zeros_like(m))
    assert torch.allclose(out, torch.full_like(out, math.log(1e-5)))


def test_frontend_config_rejects_bad_values():
    with pytest.raises(ValueError):
        FrontendConfig(win_length=5000)
    with pytest.raises(ValueError):
        FrontendConfig(f_max_hz=20000.0)
