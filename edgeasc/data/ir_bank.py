"""The packaged bank of 66 measured microphone impulse responses and the fixed roles of its files.

The responses come from the MicIRP library (see `resources/mic_irs/README.md`), as redistributed with
the CP-JKU DCASE 2023 system (fschmid56/cpjku_dcase23, `datasets/dirs`), which used them for device impulse
response (DIR) augmentation. edgeasc uses them twice, so each file has exactly one role:

- `DEVICE_IRS`: the response of each simulated device of the synthetic dataset (`edgeasc.synth`). b, c and
  s1-s3 are the devices seen in training; s4-s6 must stay unseen, so their files are used by nothing else.
- `DIR_AUGMENT_IRS`: every other file, for training-time DIR augmentation.

The sets are disjoint by construction (checked at import), so augmentation never shows a model the
microphone of an evaluation device.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from edgeasc.errors import DataError
from edgeasc.labels import DEVICE_GROUPS

logger = logging.getLogger(__name__)

IR_DIR = Path(__file__).resolve().parents[1] / "resources" / "mic_irs"
"""Folder of the packaged `.wav` responses (mono, 24-bit; 44.1 kHz except five at 48 kHz)."""

DEVICE_IRS: dict[str, tuple[str, ...]] = {
    # Seen devices (in the training fold). Phone-like b and c: weak lows, forward mids/highs.
    "b": ("IR_Astatic77",),
    "c": ("Reslo_VMC2",),
    "s1": ("Beyer_M360",),
    "s2": ("IR_OktavaMD57",),
    "s3": ("EMI_ribbon",),
    # Unseen devices (test fold only): responses used by nothing else, coloured about as much as s1-s3.
    "s4": ("Toshiba_TypeK_HPF",),
    "s5": ("GEC_bigdynamic",),
    "s6": ("IR_STC4035",),
}
"""IR file stems (without `.wav`) that make each simulated device; several stems are applied in cascade."""

UNSEEN_DEVICE_IRS: tuple[str, ...] = tuple(
    name for device in DEVICE_GROUPS["unseen"] for name in DEVICE_IRS[device]
)
"""The files of s4-s6: never used for augmentation or for any other device."""


def available_irs() -> tuple[str, ...]:
    """Stems of every packaged response file, sorted."""
    return tuple(sorted(p.stem for p in IR_DIR.glob("*.wav")))


_DEVICE_IR_SET = {name for names in DEVICE_IRS.values() for name in names}

DIR_AUGMENT_IRS: tuple[str, ...] = tuple(name for name in available_irs() if name not in _DEVICE_IR_SET)
"""Responses for DIR augmentation: all files that simulate no device (58 of the 66)."""


def _check_roles() -> None:
    """Fail at import if the role table is inconsistent with the packaged files (a broken install)."""
    available = set(available_irs())
    used: list[str] = [name for names in DEVICE_IRS.values() for name in names]
    if len(used) != len(set(used)):
        raise DataError(f"an IR file simulates more than one device: {sorted(used)}")
    missing = sorted(set(used) - available)
    if missing:
        raise DataError(f"device IR files missing from {IR_DIR}: {missing}; reinstall edgeasc")
    if set(DIR_AUGMENT_IRS) & set(used):
        raise DataError("DIR augmentation set overlaps the device IRs")


_check_roles()


@lru_cache(maxsize=None)
def _load_native(name: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    path = IR_DIR / f"{name}.wav"
    if not path.is_file():
        raise DataError(f"no impulse response named {name!r} in {IR_DIR}; known: {len(available_irs())} files")
    ir, sample_rate_hz = sf.read(path, dtype="float64", always_2d=True)
    ir = ir[:, 0]
    ir.setflags(write=False)
    return ir, int(sample_rate_hz)


def load_ir(
    name: str,
    sample_rate_hz: int = 44_100,
    normalize: Literal["energy", "peak", "none"] = "energy",
) -> np.ndarray:
    """One impulse response at `sample_rate_hz` (polyphase resampling from the file's own rate).

    Args:
        name: file stem, e.g. "IR_Shure510C".
        sample_rate_hz: target rate.
        normalize: "energy" scales to unit L2 norm (white noise keeps its level), "peak" to a maximum
            absolute value of 1, "none" keeps the file's scale.

    Returns:
        float32 array (n_taps,).
    """
    from scipy.signal import resample_poly

    ir, native_hz = _load_native(name)
    if native_hz != sample_rate_hz:
        ratio = Fraction(sample_rate_hz, native_hz)
        ir = resample_poly(ir, ratio.numerator, ratio.denominator)
    if normalize not in ("energy", "peak", "none"):
        raise ValueError(f"normalize must be 'energy', 'peak' or 'none', got {normalize!r}")
    ir = np.array(ir, dtype=np.float64)
    if normalize == "energy":
        ir /= np.sqrt(np.sum(ir**2))
    elif normalize == "peak":
        ir /= np.max(np.abs(ir))
    return ir.astype(np.float32)


def load_irs(
    names: tuple[str, ...] | list[str] = DIR_AUGMENT_IRS,
    sample_rate_hz: int = 44_100,
    normalize: Literal["energy", "peak", "none"] = "energy",
) -> list[np.ndarray]:
    """Several impulse responses (default: the DIR augmentation set), each as in `load_ir`."""
    return [load_ir(name, sample_rate_hz, normalize) for name in names]


def device_ir(device: str, sample_rate_hz: int = 44_100) -> np.ndarray:
    """The unit-energy response (float64) of a simulated device: its `DEVICE_IRS` files in cascade."""
    if device not in DEVICE_IRS:
        raise ValueError(f"device {device!r} has no impulse response; known: {sorted(DEVICE_IRS)}")
    ir = np.ones(1)
    for name in DEVICE_IRS[device]:
        ir = np.convolve(ir, load_ir(name, sample_rate_hz, "energy").astype(np.float64))
    return ir / np.sqrt(np.sum(ir**2))
