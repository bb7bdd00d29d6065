"""SSCP-Mobile: CP-Mobile with every 3x3 conv split into parallel 3x1 and 1x3 branches that are summed.

The seed's student (THU-SJTU, DCASE 2025 Task 1; EOPhoeny/dcase2025_task1_inference,
models/baseline.py `Network2`/`Block2`). Module names follow that code so its checkpoints load:
`in_c` and `in_c2` (stem branches), `stages.sK.bJ.{exp_conv, depth_conv, depth_conv2, proj_conv}` (each a
Conv-BN(-ReLU) Sequential indexed 0, 1, 2), `feed_forward` head. Every branch has its own BatchNorm and ReLU
before the sum, as in the seed's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from edgeasc.models.cpmobile import CPMobile, CPMobileSpec, build_family, use_shortcut
from edgeasc.models.layers import ConvNormAct, Size2, make_shortcut
from edgeasc.models.registry import register_model


@dataclass(frozen=True)
class SSCPMobileSpec(CPMobileSpec):
    """As `CPMobileSpec`; `stem_channels` may be `(mid, out)` or `(mid, out, mid2)` where `mid2` is the
    middle width of `in_c2` when pruning left it different from `in_c`'s (stored as 2 widths when equal)."""

    stem_lengths: ClassVar[tuple[int, ...]] = (2, 3)

    @staticmethod
    def _normalise_stem(stem: tuple[int, ...]) -> tuple[int, ...]:
        if len(stem) == 3 and stem[2] == stem[0]:
            return stem[:2]
        return stem


class SSCPBlock(nn.Module):
    """Inverted bottleneck whose depthwise 3x3 is a depthwise 3x1 plus a depthwise 1x3, both strided.

    exp_conv (1x1 + BN + ReLU) -> depth_conv (3x1) + depth_conv2 (1x3), each + BN + ReLU, summed ->
    proj_conv (1x1 + BN); residual when widths match (AvgPool2d when strided), then ReLU; `shortcut`
    overrides that rule (see `CPMobileSpec.shortcuts`).
    """

    def __init__(self, in_channels: int, exp_channels: int, out_channels: int, stride: Size2 = (1, 1),
                 shortcut: bool | None = None) -> None:
        super().__init__()
        self.exp_conv = ConvNormAct(in_channels, exp_channels, kernel_size=1)
        self.depth_conv = ConvNormAct(
            exp_channels, exp_channels, kernel_size=(3, 1), stride=stride, padding=(1, 0), groups=exp_channels
        )
        self.depth_conv2 = ConvNormAct(
            exp_channels, exp_channels, kernel_size=(1, 3), stride=stride, padding=(0, 1), groups=exp_channels
        )
        self.proj_conv = ConvNormAct(exp_channels, out_channels, kernel_size=1, act=False)
        self.shortcut = make_shortcut(stride) if use_shortcut(in_channels, out_channels, shortcut) else None
        self.after_block_activation = nn.ReLU()

    def block(self, x: Tensor) -> Tensor:
        """The residual branch (without shortcut and final ReLU)."""
        x = self.exp_conv(x)
        x = self.depth_conv(x) + self.depth_conv2(x)
        return self.proj_conv(x)

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.after_block_activation(y)


class SSCPMobile(CPMobile):
    """SSCP-Mobile network with explicit per-layer widths.

    Input x: (B, in_channels, n_mels, frames) log-mel; output logits (B, n_classes).
    """

    spec_cls: ClassVar[type[CPMobileSpec]] = SSCPMobileSpec

    def _build_stem(self, spec: CPMobileSpec) -> None:
        mid, out = spec.stem_channels[:2]
        mid2 = spec.stem_channels[2] if len(spec.stem_channels) == 3 else mid
        # Stride 2 in both dimensions per conv; padding (k - 1) // 2 keeps both branches' shapes equal.
        self.in_c = nn.Sequential(
            ConvNormAct(spec.in_channels, mid, kernel_size=(3, 1), stride=2),
            ConvNormAct(mid, out, kernel_size=(1, 3), stride=2),
        )
        self.in_c2 = nn.Sequential(
            ConvNormAct(spec.in_channels, mid2, kernel_size=(1, 3), stride=2),
            ConvNormAct(mid2, out, kernel_size=(3, 1), stride=2),
        )

    def _make_block(self, in_channels: int, exp_channels: int, out_channels: int, stride: Size2,
                    shortcut: bool) -> nn.Module:
        return SSCPBlock(in_channels, exp_channels, out_channels, stride, shortcut)

    def forward_stem(self, x: Tensor) -> Tensor:
        """x: (B, C, F, T) -> (B, stem_out, ceil(F/4), ceil(T/4)), the sum of both stem branches."""
        return self.in_c(x) + self.in_c2(x)


_RULE = {"base_channels": 64, "channels_multiplier": 1.8, "expansion_rate": 2.2}
"""The seed's unpruned student: base 64, multiplier 1.8, expansion 2.2, blocks (3, 2, 1), baseline strides."""

S1_WIDTHS = {
    "stem_channels": (8, 32),
    "block_channels": ((72, 32), (72, 32), (72, 32), (72, 56), (124, 56), (124, 104)),
}
"""The seed's shipped S1 model: base-64 SSCP-Mobile with 50% of every conv's channels pruned."""

S3_WIDTHS = {
    "stem_channels": (8, 32),
    "block_channels": ((68, 32), (68, 32), (68, 32), (68, 58), (125, 58), (125, 101)),
}
"""The seed's S3 model: base 96 pruned progressively 96 -> 64 -> 32."""

_TEST_ARCH = {"base_channels": 8, "n_blocks": (2, 1, 1), "strides": {"b2": (1, 2), "b3": (2, 1)}}


def _sscp(variant: dict[str, Any], overrides: dict[str, Any]) -> SSCPMobile:
    return build_family(SSCPMobile, "sscp_mobile", _RULE, variant, overrides)  # type: ignore[return-value]


@register_model
def sscp_mobile(**kwargs: Any) -> SSCPMobile:
    """SSCP-Mobile with any widths; defaults to the seed's unpruned base-64 student (expansion 2.2)."""
    return _sscp({}, kwargs)


@register_model
def sscp_mobile_b32(**kwargs: Any) -> SSCPMobile:
    """SSCP-Mobile, base 32 (multiplier 1.8, expansion 2.2)."""
    return _sscp({"base_channels": 32}, kwargs)


@register_model
def sscp_mobile_b48(**kwargs: Any) -> SSCPMobile:
    """SSCP-Mobile, base 48."""
    return _sscp({"base_channels": 48}, kwargs)


@register_model
def sscp_mobile_b64(**kwargs: Any) -> SSCPMobile:
    """SSCP-Mobile, base 64: the seed's unpruned student before AGP pruning."""
    return _sscp({"base_channels": 64}, kwargs)


@register_model
def sscp_mobile_b80(**kwargs: Any) -> SSCPMobile:
    """SSCP-Mobile, base 80."""
    return _sscp({"base_channels": 80}, kwargs)


@register_model
def sscp_mobile_b96(**kwargs: Any) -> SSCPMobile:
    """SSCP-Mobile, base 96: where the seed's S3 starts before pruning 96 -> 64 -> 32."""
    return _sscp({"base_channels": 96}, kwargs)


@register_model
def sscp_mobile_s1(**kwargs: Any) -> SSCPMobile:
    """The seed's S1 widths: 63,748 parameters, 29,982,132 MACs."""
    return _sscp(dict(S1_WIDTHS), kwargs)


@register_model
def sscp_mobile_s3(**kwargs: Any) -> SSCPMobile:
    """The seed's S3 widths: 63,215 parameters, 29,221,122 MACs."""
    return _sscp(dict(S3_WIDTHS), kwargs)


@register_model
def test_sscp_mobile(**kwargs: Any) -> SSCPMobile:
    """Tiny SSCP-Mobile (base 8, blocks (2, 1, 1)) for fast tests; not a useful classifier."""
    return _sscp(dict(_TEST_ARCH), kwargs)
