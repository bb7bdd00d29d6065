"""Small building blocks shared by the CP-Mobile and SSCP-Mobile families.

`ConvNormAct` reproduces the index layout of torchvision's `Conv2dNormActivation` (conv = 0, BatchNorm = 1,
ReLU = 2) so that state_dict keys match the CPJKU baseline and the seed's checkpoints, without importing
torchvision.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

Size2 = tuple[int, int]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `v` to the nearest multiple of `divisor` (CPJKU baseline, after MobileNet).

    The result is at least `min_value` (default: `divisor`); if rounding down lost more than 10% of `v`,
    one more `divisor` is added.

    Args:
        v: the unrounded channel count.
        divisor: the multiple to round to.
        min_value: the smallest result allowed.

    Returns:
        The rounded channel count.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def pair(v: int | Size2 | list[int]) -> Size2:
    """`3 -> (3, 3)`; a 2-sequence is returned as a tuple of ints."""
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> optional ReLU, indexed 0, 1, 2 like `Conv2dNormActivation`.

    Padding defaults to `(k - 1) // 2` per dimension, as torchvision does, so a `(3, 1)` kernel pads `(1, 0)`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Size2 = 3,
        stride: int | Size2 = 1,
        padding: int | Size2 | None = None,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        kernel_size = pair(kernel_size)
        if padding is None:
            padding = ((kernel_size[0] - 1) // 2, (kernel_size[1] - 1) // 2)
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size=kernel_size,
                stride=pair(stride),
                padding=pair(padding),
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if act:
            layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


def make_shortcut(stride: Size2) -> nn.Module:
    """The residual path of a block whose input and output widths match.

    Identity when unstrided; otherwise AvgPool2d(3, stride, padding=1), which has no parameters and keeps
    the shape of the strided main path.
    """
    if stride == (1, 1):
        return nn.Identity()
    return nn.AvgPool2d(kernel_size=3, stride=stride, padding=1)


def init_weights(m: nn.Module) -> None:
    """Kaiming-normal (fan_out) convs, unit/zero BatchNorm: the CPJKU baseline's initialisation."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0, 0.01)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class ClassifierHead(nn.Sequential):
    """1x1 conv to the classes (no bias) -> BatchNorm2d -> global average pool; named `feed_forward`.

    `AdaptiveAvgPool2d` rather than `x.mean` because it converts to a single TFLite MEAN/AVERAGE_POOL op.
    """

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, n_classes, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(n_classes),
            nn.AdaptiveAvgPool2d((1, 1)),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, F, T) -> logits (B, n_classes)."""
        return super().forward(x).flatten(1)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm2d seeded, trained-looking statistics and affine parameters; returns the model in
    eval mode. For untrained models in export, audit and firmware checks: folded biases then differ (exporters
    store equal constants once) and BatchNorm folding matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()
