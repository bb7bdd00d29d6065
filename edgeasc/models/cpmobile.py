"""CP-Mobile: the DCASE 2024/2025 Task 1 baseline network (CPJKU/dcase2024_task1_baseline, models/baseline.py).

A two-conv stem (`in_c`) with stride 4 overall, three stages of inverted-bottleneck blocks
(1x1 expand -> 3x3 depthwise -> 1x1 project, residual when widths match) and a 1x1-conv + BatchNorm +
global-pool head (`feed_forward`). Module names follow the baseline, so its Lightning checkpoints load
after stripping the `model.` prefix (see `edgeasc.models.import_ckpt`).

Widths come either from the baseline's rule (`base_channels`, `channels_multiplier`, `expansion_rate`,
rounded by `make_divisible(v, 8)`) or explicitly per layer (`stem_channels`, `block_channels`), which is how
pruned models are described. `model_config` always stores the explicit widths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor, nn

from edgeasc.errors import ConfigError
from edgeasc.models.layers import ClassifierHead, ConvNormAct, Size2, init_weights, make_divisible, make_shortcut, pair
from edgeasc.models.registry import check_kwargs, register_model

BASELINE_STRIDES: dict[str, Size2] = {"b2": (1, 1), "b3": (1, 2), "b4": (2, 1)}
"""Per-block (frequency, time) strides of the baseline; blocks not listed use (1, 1)."""

WIDTH_RULE_KEYS = ("base_channels", "channels_multiplier", "expansion_rate")
EXPLICIT_WIDTH_KEYS = ("stem_channels", "block_channels")
SHARED_KEYS = ("n_blocks", "strides", "n_classes", "in_channels", "shortcuts")


def resolve_widths(
    base_channels: float, channels_multiplier: float, expansion_rate: float, n_blocks: tuple[int, ...]
) -> tuple[tuple[int, int], tuple[tuple[int, int], ...]]:
    """Explicit widths from the baseline's width rule.

    Stage k (0-based) outputs `make_divisible(base * multiplier**k, 8)` channels; each block expands its input
    to `make_divisible(in * expansion_rate, 8)`; the stem is `(base // 4, base)`.

    Returns:
        (stem_channels, block_channels) with block_channels one `(expand, out)` pair per block.
    """
    base = make_divisible(base_channels, 8)
    stage_out = [make_divisible(base * channels_multiplier**k, 8) for k in range(len(n_blocks))]
    blocks = []
    c_in = base
    for k, count in enumerate(n_blocks):
        for _ in range(count):
            blocks.append((make_divisible(c_in * expansion_rate, 8), stage_out[k]))
            c_in = stage_out[k]
    return (base // 4, base), tuple(blocks)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class CPMobileSpec:
    """Resolved architecture of a CP-Mobile-style network: everything needed to rebuild it.

    Attributes:
        stem_channels: `(mid, out)`: widths of the two stem convs.
        block_channels: one `(expand, out)` pair per block, in order b1, b2, ...
        n_blocks: blocks per stage; stage k holds the next `n_blocks[k]` blocks (names s1.b1, ..., s3.b6).
        strides: `{"bJ": (freq, time)}` for strided blocks; others use (1, 1). Stored without (1, 1) entries.
        n_classes: output logits.
        in_channels: input channels (1 for a log-mel spectrogram).
        shortcuts: one flag per block: whether it adds a residual shortcut. None (the default) applies the
            baseline's rule, a shortcut exactly where a block's input and output widths match. Pruning can make
            the widths of a block without a shortcut equal, so pruned models state the flags explicitly;
            a shortcut needs equal widths. Stored in `to_kwargs()` only where it departs from the rule.
    """

    stem_channels: tuple[int, ...]
    block_channels: tuple[tuple[int, int], ...]
    n_blocks: tuple[int, ...] = (3, 2, 1)
    strides: dict[str, Size2] = field(default_factory=lambda: dict(BASELINE_STRIDES))
    n_classes: int = 10
    in_channels: int = 1
    shortcuts: tuple[bool, ...] | None = None

    stem_lengths: ClassVar[tuple[int, ...]] = (2,)

    def __post_init__(self) -> None:
        stem = tuple(self.stem_channels)
        if len(stem) not in self.stem_lengths:
            raise ValueError(f"stem_channels needs {' or '.join(map(str, self.stem_lengths))} widths, got {stem!r}")
        for c in stem:
            _positive_int(c, "each of stem_channels")
        blocks = []
        for j, pair_ in enumerate(self.block_channels, 1):
            if len(pair_) != 2:
                raise ValueError(f"block_channels[{j - 1}] must be (expand, out), got {pair_!r}")
            blocks.append((_positive_int(pair_[0], f"b{j} expand width"), _positive_int(pair_[1], f"b{j} out width")))
        n_blocks = tuple(_positive_int(n, "each of n_blocks") for n in self.n_blocks)
        if sum(n_blocks) != len(blocks):
            raise ValueError(
                f"n_blocks {n_blocks} holds {sum(n_blocks)} blocks but block_channels gives {len(blocks)}"
            )
        strides: dict[str, Size2] = {}
        names = {f"b{j}": j for j in range(1, len(blocks) + 1)}
        for key, value in dict(self.strides).items():
            if key not in names:
                raise ValueError(f"strides names block {key!r}, but the model has blocks b1..b{len(blocks)}")
            try:
                s = pair(value)
            except (TypeError, ValueError):
                raise ValueError(f"stride of {key} must be an int or a (freq, time) pair, got {value!r}") from None
            if min(s) < 1:
                raise ValueError(f"stride of {key} must be positive, got {value!r}")
            if s != (1, 1):
                strides[key] = s
        strides = dict(sorted(strides.items(), key=lambda kv: names[kv[0]]))
        rule = self._shortcut_rule(stem, blocks)
        if self.shortcuts is None:
            shortcuts = rule
        else:
            shortcuts = tuple(self.shortcuts)
            if len(shortcuts) != len(blocks) or any(not isinstance(f, bool) for f in shortcuts):
                raise ValueError(f"shortcuts must be {len(blocks)} booleans (one per block), got {self.shortcuts!r}")
            for j, (flag, ok) in enumerate(zip(shortcuts, rule), 1):
                if flag and not ok:
                    c_in = stem[1] if j == 1 else blocks[j - 2][1]
                    raise ValueError(f"b{j} has a shortcut but its input and output widths differ "
                                     f"({c_in} -> {blocks[j - 1][1]})")
        object.__setattr__(self, "shortcuts", shortcuts)
        object.__setattr__(self, "stem_channels", self._normalise_stem(stem))
        object.__setattr__(self, "block_channels", tuple(blocks))
        object.__setattr__(self, "n_blocks", n_blocks)
        object.__setattr__(self, "strides", strides)
        object.__setattr__(self, "n_classes", _positive_int(self.n_classes, "n_classes"))
        object.__setattr__(self, "in_channels", _positive_int(self.in_channels, "in_channels"))

    @staticmethod
    def _normalise_stem(stem: tuple[int, ...]) -> tuple[int, ...]:
        return stem

    @staticmethod
    def _shortcut_rule(stem: tuple[int, ...], blocks: list[tuple[int, int]] | tuple[tuple[int, int], ...]
                       ) -> tuple[bool, ...]:
        """The baseline's rule: a shortcut exactly where a block's input and output widths are equal."""
        ins = [stem[1]] + [out for _, out in blocks[:-1]]
        return tuple(c_in == out for c_in, (_, out) in zip(ins, blocks))

    def stride_of(self, block_index: int) -> Size2:
        """Stride of block `b{block_index}` (1-based)."""
        return self.strides.get(f"b{block_index}", (1, 1))

    def to_kwargs(self) -> dict[str, Any]:
        """The constructor kwargs that rebuild this spec (fresh containers, safe to mutate)."""
        kwargs: dict[str, Any] = {
            "stem_channels": tuple(self.stem_channels),
            "block_channels": tuple(tuple(b) for b in self.block_channels),
            "n_blocks": tuple(self.n_blocks),
            "strides": dict(self.strides),
            "n_classes": self.n_classes,
            "in_channels": self.in_channels,
        }
        if self.shortcuts != self._shortcut_rule(self.stem_channels, self.block_channels):
            kwargs["shortcuts"] = tuple(self.shortcuts)
        return kwargs


def use_shortcut(in_channels: int, out_channels: int, shortcut: bool | None) -> bool:
    """Whether a block adds its residual: the width rule when `shortcut` is None, else `shortcut`.

    Raises:
        ValueError: a shortcut was asked for between different widths.
    """
    if shortcut is None:
        return in_channels == out_channels
    if shortcut and in_channels != out_channels:
        raise ValueError(f"a shortcut needs equal input and output widths, got {in_channels} -> {out_channels}")
    return bool(shortcut)


class CPMobileBlock(nn.Module):
    """Inverted bottleneck: `block` = 1x1 expand + BN + ReLU, 3x3 depthwise + BN + ReLU, 1x1 project + BN.

    A residual is added when input and output widths match (AvgPool2d shortcut when strided), then ReLU;
    `shortcut` overrides that rule (see `CPMobileSpec.shortcuts`).
    """

    def __init__(self, in_channels: int, exp_channels: int, out_channels: int, stride: Size2 = (1, 1),
                 shortcut: bool | None = None) -> None:
        super().__init__()
        self.block = nn.Sequential(
            ConvNormAct(in_channels, exp_channels, kernel_size=1),
            ConvNormAct(exp_channels, exp_channels, kernel_size=3, stride=stride, padding=1, groups=exp_channels),
            ConvNormAct(exp_channels, out_channels, kernel_size=1, act=False),
        )
        self.shortcut = make_shortcut(stride) if use_shortcut(in_channels, out_channels, shortcut) else None
        self.after_block_activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.after_block_activation(y)


class CPMobile(nn.Module):
    """CP-Mobile network with explicit per-layer widths.

    Input x: (B, in_channels, n_mels, frames) log-mel; output logits (B, n_classes).
    Subclasses change the stem and the block (see `SSCPMobile`), not the skeleton.
    """

    spec_cls: ClassVar[type[CPMobileSpec]] = CPMobileSpec

    def __init__(self, spec: CPMobileSpec) -> None:
        super().__init__()
        self.spec = spec
        self._build_stem(spec)
        self.stages = nn.Sequential()
        c_in = spec.stem_channels[1]
        j = 0
        for k, count in enumerate(spec.n_blocks, 1):
            stage = nn.Sequential()
            for _ in range(count):
                j += 1
                exp, out = spec.block_channels[j - 1]
                stage.add_module(f"b{j}", self._make_block(c_in, exp, out, spec.stride_of(j), spec.shortcuts[j - 1]))
                c_in = out
            self.stages.add_module(f"s{k}", stage)
        self.feed_forward = ClassifierHead(c_in, spec.n_classes)
        self.apply(init_weights)

    def _build_stem(self, spec: CPMobileSpec) -> None:
        mid, out = spec.stem_channels
        self.in_c = nn.Sequential(
            ConvNormAct(spec.in_channels, mid, kernel_size=3, stride=2),
            ConvNormAct(mid, out, kernel_size=3, stride=2),
        )

    def _make_block(self, in_channels: int, exp_channels: int, out_channels: int, stride: Size2,
                    shortcut: bool) -> nn.Module:
        return CPMobileBlock(in_channels, exp_channels, out_channels, stride, shortcut)

    def forward_stem(self, x: Tensor) -> Tensor:
        """x: (B, C, F, T) -> (B, stem_out, F/4, T/4)."""
        return self.in_c(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """x: (B, C, F, T) -> the last stage's feature map."""
        return self.stages(self.forward_stem(x))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, n_mels, frames) -> logits (B, n_classes)."""
        return self.feed_forward(self.forward_features(x))

    def config_kwargs(self) -> dict[str, Any]:
        """Resolved kwargs (explicit widths) that rebuild this model through `create_model`."""
        return self.spec.to_kwargs()


def build_family(
    model_cls: type[CPMobile],
    family: str,
    rule_defaults: Mapping[str, Any],
    variant_defaults: Mapping[str, Any],
    overrides: Mapping[str, Any],
) -> CPMobile:
    """Merge defaults and user overrides, resolve widths and build.

    Explicit widths (`stem_channels` + `block_channels`, always together) take precedence over the width rule.
    Passing both kinds in one call is ambiguous and rejected; a variant whose defaults are explicit widths
    switches to the rule when the user passes a rule key.

    Raises:
        ConfigError: unknown or conflicting arguments, or invalid widths.
    """
    check_kwargs(overrides, WIDTH_RULE_KEYS + EXPLICIT_WIDTH_KEYS + SHARED_KEYS, f"{family} models")
    given_explicit = [k for k in EXPLICIT_WIDTH_KEYS if k in overrides]
    given_rule = [k for k in WIDTH_RULE_KEYS if k in overrides]
    if given_explicit and len(given_explicit) != len(EXPLICIT_WIDTH_KEYS):
        raise ConfigError(f"{family}: give stem_channels and block_channels together (got only {given_explicit[0]})")
    if given_explicit and given_rule:
        raise ConfigError(
            f"{family}: give either explicit widths (stem_channels, block_channels) or the width rule "
            f"({', '.join(WIDTH_RULE_KEYS)}), not both (got {', '.join(given_rule)})"
        )
    merged = {**variant_defaults, **overrides}
    n_blocks = tuple(merged.get("n_blocks", (3, 2, 1)))
    if given_explicit or (not given_rule and "block_channels" in variant_defaults):
        stem, blocks = merged["stem_channels"], merged["block_channels"]
    else:
        rule = {**rule_defaults, **{k: v for k, v in merged.items() if k in WIDTH_RULE_KEYS}}
        try:
            if any(not isinstance(rule[k], (int, float)) or rule[k] <= 0 for k in WIDTH_RULE_KEYS):
                raise ValueError(f"width rule values must be positive numbers, got {rule}")
            stem, blocks = resolve_widths(
                rule["base_channels"], rule["channels_multiplier"], rule["expansion_rate"], n_blocks
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{family}: {exc}") from None
    try:
        spec = model_cls.spec_cls(
            stem_channels=tuple(stem),
            block_channels=tuple(tuple(b) for b in blocks),
            n_blocks=n_blocks,
            strides=dict(merged.get("strides", BASELINE_STRIDES)),
            n_classes=merged.get("n_classes", 10),
            in_channels=merged.get("in_channels", 1),
            shortcuts=None if merged.get("shortcuts") is None else tuple(merged["shortcuts"]),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{family}: {exc}") from None
    return model_cls(spec)


_RULE = {"base_channels": 32, "channels_multiplier": 1.8, "expansion_rate": 2.1}
"""The baseline's width rule (CPJKU/dcase2025_task1_baseline, base 32, multiplier 1.8, expansion 2.1)."""

_TEST_ARCH = {"base_channels": 8, "n_blocks": (2, 1, 1), "strides": {"b2": (1, 2), "b3": (2, 1)}}
"""Tiny test variant: exercises identity and AvgPool shortcuts, a non-residual block and every stride kind."""


def _cpmobile(variant: dict[str, Any], overrides: dict[str, Any]) -> CPMobile:
    return build_family(CPMobile, "cpmobile", _RULE, variant, overrides)


@register_model
def cpmobile(**kwargs: Any) -> CPMobile:
    """CP-Mobile with any widths; defaults to the baseline (base 32, multiplier 1.8, expansion 2.1)."""
    return _cpmobile({}, kwargs)


@register_model
def cpmobile_baseline(**kwargs: Any) -> CPMobile:
    """The DCASE 2025 Task 1 baseline: 61,148 parameters, 29,419,156 MACs on a 1-s clip."""
    return _cpmobile({}, kwargs)


@register_model
def cpmobile_b32(**kwargs: Any) -> CPMobile:
    """CP-Mobile, base 32 (same widths as the baseline)."""
    return _cpmobile({"base_channels": 32}, kwargs)


@register_model
def cpmobile_b48(**kwargs: Any) -> CPMobile:
    """CP-Mobile, base 48."""
    return _cpmobile({"base_channels": 48}, kwargs)


@register_model
def cpmobile_b64(**kwargs: Any) -> CPMobile:
    """CP-Mobile, base 64."""
    return _cpmobile({"base_channels": 64}, kwargs)


@register_model
def cpmobile_b80(**kwargs: Any) -> CPMobile:
    """CP-Mobile, base 80."""
    return _cpmobile({"base_channels": 80}, kwargs)


@register_model
def cpmobile_b96(**kwargs: Any) -> CPMobile:
    """CP-Mobile, base 96."""
    return _cpmobile({"base_channels": 96}, kwargs)


@register_model
def test_cpmobile(**kwargs: Any) -> CPMobile:
    """Tiny CP-Mobile (base 8, blocks (2, 1, 1)) for fast tests; not a useful classifier."""
    return _cpmobile(dict(_TEST_ARCH), kwargs)
