"""The microphone IR bank: every file has one role, unseen devices never leak into augmentation, loading."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from edgeasc.data import ir_bank
from edgeasc.errors import DataError
from edgeasc.labels import DEVICE_GROUPS, DEVICES


def test_bank_has_66_files():
    assert len(ir_bank.available_irs()) == 66


def test_every_simulated_device_has_packaged_irs():
    assert set(ir_bank.DEVICE_IRS) == set(DEVICES) - {"a"}
    available = set(ir_bank.available_irs())
    for device, names in ir_bank.DEVICE_IRS.items():
        assert names and set(names) <= available, device


def test_roles_are_disjoint_and_cover_the_bank():
    device_sets = {d: set(names) for d, names in ir_bank.DEVICE_IRS.items()}
    augment = set(ir_bank.DIR_AUGMENT_IRS)
    unseen = set(ir_bank.UNSEEN_DEVICE_IRS)
    assert unseen == set().union(*(device_sets[d] for d in DEVICE_GROUPS["unseen"]))
    # Augmentation never sees an unseen device's microphone (nor any simulated device's).
    assert augment.isdisjoint(unseen)
    assert augment.isdisjoint(set().union(*device_sets.values()))
    # No two devices share a file, so s4-s6 use files that nothing else uses.
    used = [name for names in ir_bank.DEVICE_IRS.values() for name in names]
    assert len(used) == len(set(used))
    assert augment | set(used) == set(ir_bank.available_irs())
    assert len(augment) == 66 - len(used)


@pytest.mark.parametrize("rate", [44_100, 32_000])
def test_load_resamples_and_normalises(rate):
    name_48k = "Reslo_VMC2"  # one of the five files stored at 48 kHz
    info = sf.info(ir_bank.IR_DIR / f"{name_48k}.wav")
    assert info.samplerate == 48_000
    ir = ir_bank.load_ir(name_48k, sample_rate_hz=rate)
    assert ir.dtype == np.float32
    assert abs(len(ir) - info.frames * rate / 48_000) <= 1
    assert np.sum(ir.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5)
    peak = ir_bank.load_ir(name_48k, sample_rate_hz=rate, normalize="peak")
    assert np.max(np.abs(peak)) == pytest.approx(1.0)
    irs = ir_bank.load_irs(ir_bank.DIR_AUGMENT_IRS[:3], sample_rate_hz=rate)
    assert len(irs) == 3 and all(x.ndim == 1 and np.isfinite(x).all() for x in irs)


def test_native_rate_file_is_unchanged_up_to_scale():
    raw, rate = sf.read(ir_bank.IR_DIR / "Altec_639.wav")
    assert rate == 44_100
    ir = ir_bank.load_ir("Altec_639", normalize="none")
    assert np.allclose(ir, raw, atol=1e-6)


def test_device_ir_is_unit_energy():
    for device in ir_bank.DEVICE_IRS:
        ir = ir_bank.device_ir(device)
        assert np.sum(ir**2) == pytest.approx(1.0)


def test_errors():
    with pytest.raises(DataError, match="no impulse response named"):
        ir_bank.load_ir("not_a_mic")
    with pytest.raises(ValueError, match="normalize"):
        ir_bank.load_ir("Altec_639", normalize="loud")
    with pytest.raises(ValueError, match="no impulse response"):
        ir_bank.device_ir("a")
