"""Reference (unfused) models."""

from .inception import ConvReLU, Inception

__all__ = ["ConvReLU", "Inception"]
