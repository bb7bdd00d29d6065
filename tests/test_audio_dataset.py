"""Audio reading and the TAU22-layout loader, on files written here in every awkward format."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from edgeasc.data.audio import fit_length, load_clip, read_audio, split_windows
from edgeasc.data.dataset import TAUDataset, load_waveforms
from edgeasc.errors import DataError


def tone(rate, seconds, freq=440.0, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def test_read_audio_handles_rates_channels_and_depths(tmp_path):
    sf.write(tmp_path / "a.wav", tone(44100, 1.0), 44100, subtype="PCM_16")
    sf.write(tmp_path / "b.wav", tone(48000, 1.0, channels=2), 48000, subtype="PCM_24")
    sf.write(tmp_path / "c.wav", tone(16000, 0.5), 16000, subtype="FLOAT")
    a = read_audio(tmp_path / "a.wav", 32000)
    b = read_audio(tmp_path / "b.wav", 32000)
    c = load_clip(tmp_path / "c.wav", 32000, 32000)
    assert a.shape == (32000,) and b.shape == (32000,) and c.shape == (32000,)
    assert a.dtype == np.float32
    np.testing.assert_allclose(np.abs(b[1000:-1000]).max(), 0.5, atol=0.01)  # stereo mixed down, not summed
    assert np.all(c[16000:] == 0)  # short clip zero-padded
    spectrum = np.abs(np.fft.rfft(a))
    assert abs(int(spectrum.argmax()) - 440) <= 1  # 1-s clip: bin = Hz


def test_resampling_is_torchaudios():
    """edgeasc.data.audio.resample against torchaudio 2.9.1's `Resample` (defaults), the official baseline's resampler:
    values printed by torchaudio in a separate virtualenv (torchaudio does not install beside edgeasc's torch)
    for a 1 kHz + 15.5 kHz + 18 kHz mix. 18 kHz is above the new Nyquist rate and must go; 15.5 kHz sits where
    scipy's polyphase filter, used before, rolled off differently."""
    from edgeasc.data.audio import resample

    n = np.arange(44100)
    x = (np.sin(2 * np.pi * 1000 * n / 44100) + 0.5 * np.sin(2 * np.pi * 15500 * n / 44100)
         + 0.25 * np.sin(2 * np.pi * 18000 * n / 44100)).astype(np.float32)
    y = resample(x, 44100, 32000)
    assert y.shape == (32000,) and y.dtype == np.float32
    torchaudio_values = [0.2632853, 0.1083551, 0.3962202, 0.8509653, 1.1996776, 0.8009765, 0.0, -0.5889792,
                         -0.3962282, -0.1083527]
    np.testing.assert_allclose(y[[0, 1, 2, 100, 1000, 5000, 16000, 31997, 31998, 31999]], torchaudio_values,
                               atol=2e-5)
    assert float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) == pytest.approx(0.7352542, abs=1e-6)
    y48 = resample(x[:16000], 48000, 32000)  # another ratio (2/3): the length is ceil(n * up / down)
    assert y48.shape == (10667,)
    np.testing.assert_allclose(y48[[0, 7, 5000, 10665, 10666]], [0.2542645, 0.8569599, 0.4713609, -1.2436601,
                                                                  -0.5230017], atol=2e-5)
    batch = resample(np.stack([x, -x]), 44100, 32000)  # leading dimensions are kept, each row on its own
    assert batch.shape == (2, 32000) and np.array_equal(batch[0], y) and np.array_equal(batch[1], -y)


@pytest.mark.parametrize("content,match", [(b"", "cannot read"), (b"RIFF\x00\x00garbage", "cannot read")])
def test_corrupt_files_name_the_file(tmp_path, content, match):
    p = tmp_path / "broken.wav"
    p.write_bytes(content)
    with pytest.raises(DataError, match=match) as err:
        read_audio(p, 32000)
    assert "broken.wav" in str(err.value)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_truncated_wav_is_an_error_not_a_shorter_clip(tmp_path, subtype):
    sf.write(tmp_path / "full.wav", tone(32000, 0.5, channels=2), 32000, subtype=subtype)
    data = (tmp_path / "full.wav").read_bytes()
    assert read_audio(tmp_path / "full.wav", 32000).shape == (16000,)
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])  # an interrupted copy
    with pytest.raises(DataError, match=r"cut\.wav is truncated: its WAV header declares \d+ more bytes"):
        read_audio(tmp_path / "cut.wav", 32000)
    # trailing chunks after the data (e.g. LIST metadata) and odd-sized chunks before it are not truncation
    (tmp_path / "tail.wav").write_bytes(data + b"LIST" + (4).to_bytes(4, "little") + b"INFO")
    assert read_audio(tmp_path / "tail.wav", 32000).shape == (16000,)
    i = data.index(b"data")
    odd = data[:i] + b"junk" + (3).to_bytes(4, "little") + b"abc\x00" + data[i:]  # 3 bytes + 1 pad byte
    (tmp_path / "odd.wav").write_bytes(odd)
    assert read_audio(tmp_path / "odd.wav", 32000).shape == (16000,)
    (tmp_path / "odd_cut.wav").write_bytes(odd[:-100])
    with pytest.raises(DataError, match="declares 100 more bytes"):
        read_audio(tmp_path / "odd_cut.wav", 32000)


def test_float_audio_far_over_full_scale_is_refused_not_a_nan_log_mel(tmp_path):
    from edgeasc.config import FrontendConfig
    from edgeasc.features import LogMel

    loud = np.full(32000, 1e30, dtype=np.float32)
    sf.write(tmp_path / "loud.wav", loud, 32000, subtype="FLOAT")
    with pytest.raises(DataError, match=r"loud.wav peaks at 1e\+30, over 1e\+06 times full scale"):
        read_audio(tmp_path / "loud.wav", 32000)
    assert not np.isfinite(LogMel(FrontendConfig())(torch.from_numpy(loud[None])).numpy()).all()  # what it would have given
    # a float file written at integer scale is still read (its log-mel is finite)
    sf.write(tmp_path / "int_scale.wav", np.full(32000, 30000.0, dtype=np.float32), 32000, subtype="FLOAT")
    assert read_audio(tmp_path / "int_scale.wav", 32000).max() == pytest.approx(30000.0)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_audio(tmp_path / "nope.wav", 32000)
    sf.write(tmp_path / "empty.wav", np.zeros(0), 44100)
    with pytest.raises(DataError, match="no samples"):
        read_audio(tmp_path / "empty.wav", 32000)


def test_fit_and_windows():
    x = np.arange(10, dtype=np.float32)
    assert fit_length(x, 4).tolist() == [0, 1, 2, 3]
    assert fit_length(x, 12).tolist()[-2:] == [0, 0]
    w = split_windows(x, 4)
    assert w.shape == (3, 4) and w[2].tolist() == [8, 9, 0, 0]


def make_layout(root, files):
    """A minimal TAU22-layout folder: files = [(name, scene, device, array, rate, subtype)]."""
    (root / "audio").mkdir(parents=True)
    (root / "evaluation_setup").mkdir()
    (root / "split_setup").mkdir()
    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    rows = ["filename\tscene_label"]
    for name, scene, device, arr, rate, subtype in files:
        sf.write(root / "audio" / name, arr, rate, subtype=subtype)
        city, loc = name.split("-")[1:3]
        meta.append(f"audio/{name}\t{scene}\t{city}-{loc}\t{device}")
        rows.append(f"audio/{name}\t{scene}")
    (root / "meta.csv").write_text("\n".join(meta) + "\n")
    for rel in ("evaluation_setup/fold1_train.csv", "evaluation_setup/fold1_evaluate.csv", "split_setup/split25.csv"):
        (root / rel).write_text("\n".join(rows) + "\n")


def test_loader_reads_layout_and_caches(tmp_path):
    root = tmp_path / "tau"
    make_layout(root, [
        ("airport-lisbon-1000-40000-0-a.wav", "airport", "a", tone(44100, 1.0), 44100, "PCM_16"),
        ("bus-lyon-1001-40001-3-s4.wav", "bus", "s4", tone(48000, 1.5, channels=2), 48000, "PCM_24"),
        ("tram-paris-1002-40002-9-b.wav", "tram", "b", tone(44100, 0.3), 44100, "PCM_16"),
    ])
    ds = TAUDataset(root)
    clips = ds.clips("split25")
    assert [c.device for c in clips] == ["a", "s4", "b"]
    assert clips[0].clip_id == "airport-lisbon-1000-40000-0-a"
    assert clips[0].recording_id == "airport-lisbon-1000-40000"
    assert clips[2].label == 9
    cache = tmp_path / "cache"
    w = load_waveforms(root, clips, 32000, 32000, cache)
    assert w.shape == (3, 32000) and w.dtype == np.float32
    assert len(list(cache.glob("wave_*.f32"))) == 1
    w2 = load_waveforms(root, clips, 32000, 32000, cache)
    np.testing.assert_array_equal(w, w2)
    assert len(list(cache.glob("wave_*.f32"))) == 1  # reused
    load_waveforms(root, clips[:2], 32000, 32000, cache)
    assert len(list(cache.glob("wave_*.f32"))) == 2  # a changed list has its own cache
    # a changed file changes the key
    p = root / "audio" / "tram-paris-1002-40002-9-b.wav"
    sf.write(p, tone(44100, 1.0, freq=1000), 44100, subtype="PCM_16")
    os.utime(p, ns=(1, 1))
    load_waveforms(root, clips, 32000, 32000, cache)
    assert len(list(cache.glob("wave_*.f32"))) == 3


def test_loader_errors(tmp_path):
    with pytest.raises(DataError, match="no meta.csv"):
        TAUDataset(tmp_path)
    root = tmp_path / "tau"
    make_layout(root, [("park-milan-1-2-0-a.wav", "park", "a", tone(44100, 1.0), 44100, "PCM_16")])
    ds = TAUDataset(root)
    with pytest.raises(DataError, match="unknown split"):
        ds.clips("split33")
    with pytest.raises(DataError, match="missing dataset file"):
        ds.clips("split5")
    (root / "audio" / "park-milan-1-2-0-a.wav").unlink()
    with pytest.raises(DataError, match="park-milan-1-2-0-a.wav"):
        load_waveforms(root, ds.clips("train"), 32000, 32000, tmp_path / "c")
    (root / "audio" / "park-milan-1-2-0-a.wav").write_bytes(b"not audio")
    with pytest.raises(DataError, match="cannot read audio"):
        load_waveforms(root, ds.clips("train"), 32000, 32000, tmp_path / "c")
    assert not list((tmp_path / "c").glob("wave_*.f32"))  # no half-written cache left behind


def test_meta_csv_with_a_byte_order_mark_and_upper_case_device_ids(tmp_path):
    """A meta.csv saved by a spreadsheet program (UTF-8 BOM) reads like any other, and a device id "A" is
    device a (as `edgeasc.devices.dcase` routes it), not a device of its own; a non-UTF-8 file is one clear error."""
    root = tmp_path / "tau"
    make_layout(root, [("park-milan-1-2-0-a.wav", "park", "A", tone(44100, 1.0), 44100, "PCM_16"),
                       ("bus-lyon-1-3-0-s1.wav", "bus", " s1", tone(44100, 1.0), 44100, "PCM_16")])
    meta = root / "meta.csv"
    meta.write_bytes(b"\xef\xbb\xbf" + meta.read_bytes())
    clips = TAUDataset(root).clips("train")
    assert [c.device for c in clips] == ["a", "s1"]
    meta.write_bytes(meta.read_bytes().replace(b"park", b"p\xe4rk", 1))
    with pytest.raises(DataError, match="not UTF-8 text"):
        TAUDataset(root)
