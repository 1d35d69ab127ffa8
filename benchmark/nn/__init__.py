"""Building blocks for methods (public for plugin authors): the shared UNet and its multi-head
variants, losses, ramps, EMA teachers, projection heads, key queues, mask draws and every device-side
augmentation.

    from sslbench.nn import UNet, build_unet, ce_dice_loss, sigmoid_rampup, EMATeacher
"""
from __future__ import annotations

from .augment import (
                      SpatialTransform,
                      contrastive_views,
                      cutmix,
                      default_generator,
                      dropout,
                      feature_dropout,
                      feature_noise,
                      gaussian_noise,
                      photometric,
                      random_deformation,
                      random_spatial,
                      ssl4mis_weak,
                      strong_view,
)
from .banks import FeatureQueue
from .boxes import random_boxes
from .ema import EMATeacher
from .heads import GlobalHead, mlp
from .losses import ce_dice_loss, dice_loss, entropy_map, softmax_mse
from .mask_sampling import pick_where, sample_where
from .multihead import MultiDecoderUNet, PyramidUNet
from .ramps import sigmoid_rampup
from .unet import UNet, build_unet

__all__ = [
    "EMATeacher", "FeatureQueue", "GlobalHead", "MultiDecoderUNet", "PyramidUNet", "SpatialTransform", "UNet",
    "build_unet", "ce_dice_loss", "contrastive_views", "cutmix", "default_generator", "dice_loss", "dropout",
    "entropy_map", "feature_dropout", "feature_noise", "gaussian_noise", "mlp", "photometric", "pick_where",
    "random_boxes", "random_deformation", "random_spatial", "sample_where", "sigmoid_rampup", "softmax_mse", "ssl4mis_weak",
    "strong_view",
]
