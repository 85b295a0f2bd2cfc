"""Reference models: the unfused Inception block and GoogLeNet (unfused or fused blocks)."""

from .googlenet import (AUX_CLASSIFIER_BLOCKS, AUX_LOSS_WEIGHT, AuxClassifier, GoogLeNet, GoogLeNetOutputs,
                        googlenet, googlenet_loss)
from .inception import ConvReLU, Inception

__all__ = ["AUX_CLASSIFIER_BLOCKS", "AUX_LOSS_WEIGHT", "AuxClassifier", "ConvReLU", "GoogLeNet", "GoogLeNetOutputs",
           "Inception", "googlenet", "googlenet_loss"]
