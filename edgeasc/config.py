"""Run configuration: frozen dataclasses are the single source of truth.

Recipe files (TOML) hold experiments; `--set section.key=value` overrides a few values. Unknown sections
or keys raise `ConfigError` with a close-match suggestion. Every run writes its fully resolved config and
every checkpoint carries it, so the frontend parameters travel with the model.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeasc.errors import ConfigError
from edgeasc.labels import DEVICES


def check_field_types(cfg: Any, section: str) -> None:
    """Check every scalar field of config dataclass `cfg` against its annotation (called first in each
    `__post_init__`): ints are ints, floats finite numbers (an int is stored as its float), bools true or
    false, strings strings, `tuple[str, ...]` lists of strings. Nested configs are checked by their own class.

    Raises:
        TypeError: one line naming the key (`section.field`) and the expected type.
    """
    for f in dataclasses.fields(cfg):
        value, kind = getattr(cfg, f.name), str(f.type)
        base = kind.removesuffix(" | None")
        if value is None and base != kind:
            continue
        if base == "bool":
            ok, want = isinstance(value, bool), "true or false"
        elif base == "int":
            ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif base == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            want = "a finite number"
            if ok and isinstance(value, int):
                object.__setattr__(cfg, f.name, float(value))
        elif base == "str":
            ok, want = isinstance(value, str), "a string"
        elif base == "tuple[str, ...]":
            ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
            want = "a list of strings"
        elif base.startswith("dict["):
            ok, want = isinstance(value, dict), "a table"
        else:
            continue
        if not ok:
            none = " or none" if base != kind else ""
            raise TypeError(f"{section + '.' if section else ''}{f.name} must be {want}{none}, got {value!r}")


CALIB_CLIPS = 300
"""Calibration clips of an int8 export by default: a seeded, class-balanced subset of the training split (the
export command, the pipeline's export stage, a bundle's export and prune's final export)."""


def valid_device(name: str) -> bool:
    """True for a torch device edgeasc accepts: auto, cpu, cuda or cuda:N."""
    return name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel frontend of the DCASE 2024/2025 baseline (torchaudio MelSpectrogram settings).

    32 kHz, n_fft 4096, periodic Hann window of 3072 samples (96 ms), hop 500 (~16 ms), 256 HTK mel bins
    without filter normalisation, centred STFT with reflect padding, power 2, then log(x + 1e-5).
    A 1-s clip gives a (1, 256, 65) input.
    """

    sample_rate_hz: int = 32_000
    clip_seconds: float = 1.0
    n_fft: int = 4096
    win_length: int = 3072
    hop_length: int = 500
    n_mels: int = 256
    f_min_hz: float = 0.0
    f_max_hz: float | None = None
    log_offset: float = 1e-5

    def __post_init__(self) -> None:
        check_field_types(self, "frontend")
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} exceeds n_fft {self.n_fft}")
        if self.sample_rate_hz <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError("sample_rate_hz, hop_length and n_mels must be positive")
        if self.f_max_hz is not None and self.f_max_hz > self.sample_rate_hz / 2:
            raise ValueError(f"f_max_hz {self.f_max_hz} is above Nyquist ({self.sample_rate_hz / 2})")

    @property
    def clip_samples(self) -> int:
        return int(round(self.sample_rate_hz * self.clip_seconds))

    @property
    def n_frames(self) -> int:
        return self.clip_samples // self.hop_length + 1


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (each switched off by a zero probability or size).

    Defaults follow the CP-JKU students (SPEC.md sections 4 and 5): waveform roll up to 4,000 samples,
    one 48-bin frequency mask on the power mel, Freq-MixStyle p 0.4 / alpha 0.3, DIR off.
    """

    roll_max_samples: int = 4000
    freq_mask_bins: int = 48
    n_freq_masks: int = 1
    time_mask_frames: int = 0
    n_time_masks: int = 0
    mixstyle_p: float = 0.4
    mixstyle_alpha: float = 0.3
    dir_p: float = 0.0
    dir_devices: tuple[str, ...] = ("a",)

    def __post_init__(self) -> None:
        check_field_types(self, "augment")
        for name in ("mixstyle_p", "dir_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.mixstyle_alpha <= 0:
            raise ValueError("augment.mixstyle_alpha must be positive")
        for name in ("roll_max_samples", "freq_mask_bins", "n_freq_masks", "time_mask_frames", "n_time_masks"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    """A registered model name plus constructor overrides (see `edgeasc.models.create_model`).

    `init_checkpoint`: an edgeasc checkpoint whose weights start the run (loaded strictly, so it must hold the
    architecture that `name` and `kwargs` describe; e.g. a pruned model's fine-tuning). None: fresh weights.
    """

    name: str = "sscp_mobile_b32"
    kwargs: dict[str, Any] = field(default_factory=dict)
    init_checkpoint: str | None = None

    def __post_init__(self) -> None:
        check_field_types(self, "model")


TRAIN_PRECISIONS = ("32", "bf16-mixed", "16-mixed")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up and cosine decay, as the DCASE 2025 baseline (per-step schedule).

    `debias_bn`: after the last epoch of a run that started from fresh weights, remove the start values
    (mean 0, variance 1) from every BatchNorm's moving averages (`edgeasc.train.debias_batchnorm`). It matters
    in short runs only: after 30 steps the start still holds 4% of them. False keeps them, as the official
    baseline code does.

    `precision`: "32" trains in float32; "bf16-mixed" and "16-mixed" run the forward pass and the loss under
    autocast (bfloat16, or float16 with a gradient scaler, CUDA only), as Lightning's precision settings of the
    same names. The log-mel frontend, the weights, the optimiser and validation stay float32.
    """

    epochs: int = 150
    batch_size: int = 256
    lr: float = 0.005
    weight_decay: float = 1e-4
    warmup_steps: int = 2000
    min_lr_ratio: float = 0.0
    debias_bn: bool = True  # after training: BatchNorm moving averages without their start values
    precision: str = "32"  # "32", "bf16-mixed" (CUDA or CPU) or "16-mixed" (CUDA: float16 with a gradient scaler)
    channels_last: bool = True  # log-mel CNNs get NHWC input: faster convolutions, equal up to float rounding

    def __post_init__(self) -> None:
        if isinstance(self.precision, int) and not isinstance(self.precision, bool):
            object.__setattr__(self, "precision", str(self.precision))  # `--set optim.precision=32` parses as 32
        check_field_types(self, "optim")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("optim.epochs and optim.batch_size must be >= 1")
        if self.lr <= 0:
            raise ValueError("optim.lr must be positive")
        if self.precision not in TRAIN_PRECISIONS:
            raise ValueError(f"optim.precision must be one of {', '.join(map(repr, TRAIN_PRECISIONS))} "
                             f"(as the official baseline's --precision), got {self.precision!r}")
        if self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError("optim.warmup_steps must be >= 0 and optim.min_lr_ratio in [0, 1]")


@dataclass(frozen=True)
class KDConfig:
    """Knowledge distillation from stored teacher logits (CP-JKU: T = 2, lambda = 0.02).

    loss = lambda * CE(student, y) + (1 - lambda) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
    """

    teacher_logits: str | None = None
    temperature: float = 2.0
    label_weight: float = 0.02
    allow_missing_teacher: bool = False

    def __post_init__(self) -> None:
        check_field_types(self, "kd")
        if self.temperature <= 0:
            raise ValueError("kd.temperature must be positive")
        if not 0.0 <= self.label_weight <= 1.0:
            raise ValueError("kd.label_weight must be in [0, 1]")


@dataclass(frozen=True)
class DataConfig:
    """Which clips train and which validate. DCASE 2025 allows training on the 25% split only.

    `devices`: keep only clips of these recording devices (ids as DCASE spells them: `a`, `s1`, ...) in BOTH
    the training and the validation split; empty keeps every device. Device-specific fine-tuning
    (edgeasc.devices.finetune) trains one run per device with `devices = ("a",)` etc. An id outside a, b, c, s1-s6
    is a config error; a device without clips in either split fails the run (DataError) before training.

    `holdout_fraction`: train without this share of the (device-filtered) training clips, held out as whole
    recording locations in a seeded order (`edgeasc.train.split_holdout`), so a caller can choose between
    models on locations no model trained on; `edgeasc finetune --select` does, per device.
    """

    train_split: str = "split25"
    val_split: str = "test"
    cache_dir: str | None = None
    devices: tuple[str, ...] = ()
    holdout_fraction: float = 0.0  # leave out whole locations, this share of the training clips (selection)

    def __post_init__(self) -> None:
        if isinstance(self.devices, str):
            raise ValueError(f"data.devices must be a list of device ids such as [\"a\", \"s1\"], got {self.devices!r}")
        check_field_types(self, "data")
        allowed = {"split5", "split10", "split25", "split50", "split100", "train", "test"}
        for name in ("train_split", "val_split"):
            if getattr(self, name) not in allowed:
                raise ValueError(f"data.{name} must be one of {sorted(allowed)}, got {getattr(self, name)!r}")
        if isinstance(self.devices, str) or not all(isinstance(d, str) for d in self.devices):
            raise ValueError(f"data.devices must be a list of device ids such as [\"a\", \"s1\"], got {self.devices!r}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"data.holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        unknown = [d for d in self.devices if d not in DEVICES]
        if unknown:
            raise ValueError(f"data.devices: unknown device id(s) {', '.join(map(repr, unknown))}; "
                             f"valid ids: {', '.join(DEVICES)}")


@dataclass(frozen=True)
class QuantConfig:
    """Quantisation-aware fine-tuning for the int8 export (edgeasc.train.qat).

    `weight_fake_quant`: train with every conv/linear weight fake-quantised to the symmetric per-channel
    int8 grid TFLite uses (straight-through gradients); the saved model's weights lie on that grid, so the
    int8 conversion represents them exactly. Meant for a short fine-tuning run (`model.init_checkpoint`).
    """

    weight_fake_quant: bool = False

    def __post_init__(self) -> None:
        check_field_types(self, "quant")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; written to RUN_DIR/config.json and into every checkpoint."""

    seed: int = 0
    device: str = "auto"
    eval_every: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    data: DataConfig = field(default_factory=DataConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)

    def __post_init__(self) -> None:
        check_field_types(self, "")
        if not valid_device(self.device):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        if self.eval_every < 0:
            raise ValueError("eval_every must be >= 0 (0 = only after the last epoch)")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    out = dataclasses.asdict(cfg)
    return _lists(out)


def _lists(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_lists(v) for v in obj]
    return obj


def from_dict(cls: type, data: dict[str, Any], *, where: str = "") -> Any:
    """Build config dataclass `cls` from a (nested) dict, rejecting unknown keys with a suggestion."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(_unknown(key, fields, where))
        ftype = fields[key].type
        sub = _dataclass_type(ftype)
        path = f"{where}.{key}" if where else key
        if sub is not None and not (cls is ModelConfig and key == "kwargs"):
            kwargs[key] = from_dict(sub, value, where=path)
        elif isinstance(value, list):
            kwargs[key] = _tuples(value)
        else:
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        named = not where or str(exc).startswith(f"{where}.")  # the message names the key already
        raise ConfigError(f"invalid config{'' if named else ' in ' + where}: {exc}") from None


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


_SECTIONS = {
    "model": ModelConfig,
    "frontend": FrontendConfig,
    "augment": AugmentConfig,
    "optim": OptimConfig,
    "kd": KDConfig,
    "data": DataConfig,
    "quant": QuantConfig,
}


def _dataclass_type(ftype: Any) -> type | None:
    name = ftype if isinstance(ftype, str) else getattr(ftype, "__name__", "")
    for cls in _SECTIONS.values():
        if name == cls.__name__:
            return cls
    return None


def _unknown(key: str, fields: dict[str, Any], where: str) -> str:
    close = difflib.get_close_matches(key, list(fields), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(fields))}"
    return f"unknown config key {(where + '.' if where else '') + key!r}{hint}"


def load_recipe(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read a TOML recipe into a plain dict (empty when `path` is None)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"recipe {path} is not a text file (not UTF-8); a recipe is TOML") from None


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply `section.key=value` overrides; values are parsed as TOML literals, else kept as strings."""
    out = _deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        dotted, raw = item.split("=", 1)
        keys = [k.strip() for k in dotted.strip().split(".") if k.strip()]
        if not keys:
            raise ConfigError(f"override {item!r} has an empty key")
        value = _parse_value(raw.strip())
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return out


def format_recipe(data: dict[str, Any]) -> str:
    """A (nested) config dict (`to_dict`) as a TOML recipe that `load_recipe` reads back to the same config.

    Keys whose value is None are left out (TOML has no null; they are None by default)."""

    def literal(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)  # JSON's escapes are TOML basic-string escapes
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(literal(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {literal(x)}" for k, x in v.items() if x is not None) + "}"
        raise ConfigError(f"cannot write {type(v).__name__} {v!r} as TOML")

    lines: list[str] = []

    def table(d: dict[str, Any], name: str) -> None:
        scalars = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, dict)]
        if name and (scalars or not any(isinstance(v, dict) for v in d.values())):
            lines.extend(["", f"[{name}]"])
        lines.extend(f"{k} = {literal(v)}" for k, v in scalars)
        for k, v in d.items():
            if isinstance(v, dict):
                table(v, f"{name}.{k}" if name else k)

    table(data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _deepcopy(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _deepcopy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_deepcopy(v) for v in obj]
    return obj


def resolve_train_config(recipe: str | os.PathLike | None = None, overrides: tuple[str, ...] = ()) -> TrainConfig:
    """Defaults <- recipe file <- `--set` overrides, validated into a `TrainConfig`."""
    data = apply_overrides(load_recipe(recipe), list(overrides))
    return from_dict(TrainConfig, data)
