"""Augmentations: each does what it says, and is reproducible from its generator."""

import torch

from edgeasc.data.augment import dir_augment, freq_mixstyle, mask_along, roll_waveform


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_roll_is_circular_shift_within_bounds():
    x = torch.arange(100, dtype=torch.float32).repeat(4, 1)
    y = roll_waveform(x, 10, gen())
    for row in y:
        shift = int((row[0] - 0) % 100)  # row[0] = x[-shift]
        shift = (100 - shift) % 100
        assert min(shift, 100 - shift) <= 10
        assert torch.equal(torch.roll(torch.arange(100, dtype=torch.float32), -shift), row) or torch.equal(
            torch.roll(torch.arange(100, dtype=torch.float32), shift), row)
    assert torch.equal(roll_waveform(x, 0, gen()), x)
    assert torch.equal(roll_waveform(x, 10, gen(3)), roll_waveform(x, 10, gen(3)))


def test_frequency_and_time_masks():
    x = torch.ones(8, 256, 65)
    f = mask_along(x, 1, 48, 1, gen(1))
    masked_bins = (f[:, :, 0] == 0).sum(dim=1)
    assert masked_bins.max() <= 47 and masked_bins.sum() > 0
    assert torch.all((f == 0).all(dim=2) | (f == 1).all(dim=2))  # whole bands, all frames
    t = mask_along(x, 2, 10, 2, gen(2))
    assert torch.all((t == 0).all(dim=1) | (t == 1).all(dim=1))  # whole frames, all bins
    assert (t == 0).any()
    assert torch.equal(mask_along(x, 1, 0, 1, gen()), x)


def test_freq_mixstyle_mixes_per_frequency_statistics():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 32, 20) * torch.linspace(0.5, 3, 16).view(16, 1, 1, 1) + torch.arange(16.0).view(16, 1, 1, 1)
    assert torch.equal(freq_mixstyle(x, 0.0, 0.3, gen()), x)
    y = freq_mixstyle(x, 1.0, 0.3, gen(5))
    assert y.shape == x.shape and not torch.allclose(y, x)
    # per (example, frequency) the normalised pattern over time is kept: correlation stays 1
    a = x[3, 0, 7] - x[3, 0, 7].mean()
    b = y[3, 0, 7] - y[3, 0, 7].mean()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.999
    # the mixed means lie between the batch's extremes
    mu = y.mean(dim=(1, 3))
    assert mu.min() >= x.mean(dim=(1, 3)).min() - 1e-4 and mu.max() <= x.mean(dim=(1, 3)).max() + 1e-4
    assert torch.allclose(freq_mixstyle(x, 1.0, 0.3, gen(5)), y)


def test_dir_augment_only_touches_eligible_clips_and_keeps_length():
    torch.manual_seed(0)
    wave = torch.randn(6, 32000)
    irs = [torch.tensor([1.0, 0.5, 0.25]), torch.tensor([0.0, 1.0])]
    apply = torch.tensor([True, True, True, False, False, False])
    out = dir_augment(wave, apply, irs, 1.0, gen())
    assert out.shape == wave.shape
    assert torch.equal(out[3:], wave[3:])
    assert not torch.allclose(out[:3], wave[:3])
    rms = lambda v: v.square().mean().sqrt()
    for i in range(3):
        assert torch.isclose(rms(out[i]), rms(wave[i]), rtol=1e-4)
    assert torch.equal(dir_augment(wave, apply, irs, 0.0, gen()), wave)
