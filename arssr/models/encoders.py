"""3D convolutional encoders: LR volume ``(B, 1, D, H, W)`` -> feature map ``(B, feature_dim, D, H, W)``.

All convolutions are 3x3x3 (or 1x1x1) with zero padding, so the output keeps
the input's shape. ``receptive_radius`` is the number of stacked 3x3x3
convolutions: a feature depends on input voxels at most that far away, which
is the halo tiled encoding needs to reproduce whole-volume features exactly.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv3(in_channels: int, out_channels: int) -> nn.Conv3d:
    return nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class DenseLayer(nn.Module):
    """conv3x3x3 + ReLU whose output is concatenated to its input."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.conv = _conv3(in_channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.relu(self.conv(x))], dim=1)


class ResidualDenseBlock(nn.Module):
    """Dense layers, a 1x1x1 local fusion back to ``channels`` and a local residual."""

    def __init__(self, channels: int, growth: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[DenseLayer(channels + i * growth, growth) for i in range(num_layers)])
        self.lff = nn.Conv3d(channels + num_layers * growth, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lff(self.layers(x))


class RDN(nn.Module):
    """Residual dense network without its upscaling layer (the ArSSR encoder).

    Args:
        feature_dim: channels of the output feature map.
        num_features: channels of the shallow features and of each block's output.
        growth: channels each dense layer adds (the official release requires
            ``growth == num_features``; other values are allowed here).
        num_blocks: residual dense blocks.
        num_layers: dense layers per block.
    """

    def __init__(
        self,
        feature_dim: int = 128,
        num_features: int = 64,
        growth: int = 64,
        num_blocks: int = 8,
        num_layers: int = 3,
    ) -> None:
        super().__init__()
        _check_positive(
            feature_dim=feature_dim, num_features=num_features, growth=growth, num_blocks=num_blocks, num_layers=num_layers
        )
        self.sfe1 = _conv3(1, num_features)
        self.sfe2 = _conv3(num_features, num_features)
        self.rdbs = nn.ModuleList(
            [ResidualDenseBlock(num_features, growth, num_layers) for _ in range(num_blocks)]
        )
        self.gff = nn.Sequential(
            nn.Conv3d(num_blocks * num_features, num_features, kernel_size=1),
            _conv3(num_features, num_features),
        )
        self.output = _conv3(num_features, feature_dim)
        self.receptive_radius = 2 + num_blocks * num_layers + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shallow = self.sfe1(x)
        x = self.sfe2(shallow)
        block_outputs = []
        for block in self.rdbs:
            x = block(x)
            block_outputs.append(x)
        x = self.gff(torch.cat(block_outputs, dim=1)) + shallow
        return self.output(x)


class ResCNN(nn.Module):
    """Plain residual CNN (paper Table 5): conv+ReLU, residual blocks of conv+ReLU, output conv.

    Args:
        feature_dim: channels of the output feature map.
        num_features: channels inside the network.
        num_blocks: residual blocks.
        convs_per_block: conv3x3x3+ReLU layers in each block.
    """

    def __init__(
        self, feature_dim: int = 128, num_features: int = 64, num_blocks: int = 3, convs_per_block: int = 6
    ) -> None:
        super().__init__()
        _check_positive(
            feature_dim=feature_dim, num_features=num_features, num_blocks=num_blocks, convs_per_block=convs_per_block
        )
        self.head = _conv3(1, num_features)
        self.blocks = nn.ModuleList(
            [
                nn.Sequential(*[m for _ in range(convs_per_block) for m in (_conv3(num_features, num_features), nn.ReLU())])
                for _ in range(num_blocks)
            ]
        )
        self.output = _conv3(num_features, feature_dim)
        self.receptive_radius = 1 + num_blocks * convs_per_block + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.head(x))
        for block in self.blocks:
            x = x + block(x)
        return self.output(x)


class ResidualBlock(nn.Module):
    """conv-ReLU-conv with an identity skip."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3(channels, channels)
        self.conv2 = _conv3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class SRResNet(nn.Module):
    """SRResNet without upsampling (paper Table 5).

    Args:
        feature_dim: channels of the output feature map.
        num_features: channels inside the network.
        num_blocks: residual blocks.
    """

    def __init__(self, feature_dim: int = 128, num_features: int = 64, num_blocks: int = 18) -> None:
        super().__init__()
        _check_positive(feature_dim=feature_dim, num_features=num_features, num_blocks=num_blocks)
        self.head = _conv3(1, num_features)
        self.blocks = nn.Sequential(*[ResidualBlock(num_features) for _ in range(num_blocks)])
        self.fusion = _conv3(num_features, num_features)
        self.output = _conv3(num_features, feature_dim)
        self.receptive_radius = 1 + 2 * num_blocks + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        x = self.fusion(self.blocks(head)) + head
        return self.output(x)


ENCODERS: dict[str, type[nn.Module]] = {"rdn": RDN, "rescnn": ResCNN, "srresnet": SRResNet}


def build_encoder(name: str, feature_dim: int, **args) -> nn.Module:
    """Encoder by registry name; unknown names list the known ones."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name](feature_dim=feature_dim, **args)
