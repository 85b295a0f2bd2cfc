"""The channel configurations of GoogLeNet's nine Inception blocks (Szegedy et al. 2014, Table 1).

The one place these numbers live: models, tests, the demo and the benchmarks all read them from here.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class InceptionConfig:
    """One Inception block: its constructor arguments plus the spatial size it runs at in GoogLeNet."""

    name: str
    in_channels: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    spatial: int  # H = W at a 224x224 network input

    @property
    def out_channels(self) -> int:
        return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj

    @property
    def block_args(self) -> tuple:
        """Positional arguments of Inception / FusedInception."""
        return (self.in_channels, self.ch1x1, self.ch3x3red, self.ch3x3, self.ch5x5red, self.ch5x5, self.pool_proj)

    def macs_per_pixel(self, kernel_sizes=(3, 5)) -> int:
        k3, k5 = kernel_sizes
        return (
            self.in_channels * (self.ch1x1 + self.ch3x3red + self.ch5x5red + self.pool_proj)
            + self.ch3x3red * self.ch3x3 * k3 * k3
            + self.ch5x5red * self.ch5x5 * k5 * k5
        )

    def flops(self, batch: int = 1, spatial: int | None = None, kernel_sizes=(3, 5)) -> int:
        """Multiply-adds counted as two FLOPs, convolutions only (pooling, bias and ReLU are not counted)."""
        side = self.spatial if spatial is None else spatial
        return 2 * self.macs_per_pixel(kernel_sizes) * side * side * batch

    def weight_count(self, kernel_sizes=(3, 5)) -> int:
        """Weights plus biases of the block's six convolutions."""
        k3, k5 = kernel_sizes
        weights = (self.in_channels * (self.ch1x1 + self.ch3x3red + self.ch5x5red + self.pool_proj)
                   + self.ch3x3red * self.ch3x3 * k3 * k3 + self.ch5x5red * self.ch5x5 * k5 * k5)
        biases = self.ch1x1 + self.ch3x3red + self.ch3x3 + self.ch5x5red + self.ch5x5 + self.pool_proj
        return weights + biases

    def min_bytes(self, batch: int, element_size: int, spatial: int | None = None, kernel_sizes=(3, 5)) -> int:
        """Minimum device-memory bytes of one forward = (input + output + weights once) * element size.

        input = batch * Cin * H * W, output = batch * Cout * H * W; the reduced activations, the pooled tensor
        and the per-branch outputs need never leave the chip in a fused kernel, so they are not counted.
        """
        side = self.spatial if spatial is None else spatial
        pixels = batch * side * side
        return (pixels * (self.in_channels + self.out_channels) + self.weight_count(kernel_sizes)) * element_size


GOOGLENET_BLOCKS = (
    InceptionConfig("3a", 192, 64, 96, 128, 16, 32, 32, spatial=28),
    InceptionConfig("3b", 256, 128, 128, 192, 32, 96, 64, spatial=28),
    InceptionConfig("4a", 480, 192, 96, 208, 16, 48, 64, spatial=14),
    InceptionConfig("4b", 512, 160, 112, 224, 24, 64, 64, spatial=14),
    InceptionConfig("4c", 512, 128, 128, 256, 24, 64, 64, spatial=14),
    InceptionConfig("4d", 512, 112, 144, 288, 32, 64, 64, spatial=14),
    InceptionConfig("4e", 528, 256, 160, 320, 32, 128, 128, spatial=14),
    InceptionConfig("5a", 832, 256, 160, 320, 32, 128, 128, spatial=7),
    InceptionConfig("5b", 832, 384, 192, 384, 48, 128, 128, spatial=7),
)

BLOCKS_BY_NAME = {config.name: config for config in GOOGLENET_BLOCKS}
