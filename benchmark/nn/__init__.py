"""Building blocks for methods (public for plugin authors): the shared UNet and its multi-head
variants, losses, ramps, EMA teachers, projection heads, key queues, random boxes, connected
components, mask draws and every device-side augmentation.

    from sslbench.nn import UNet, build_unet, ce_dice_loss, sigmoid_rampup, EMATeacher

Import from here, not from the submodules (``sslbench.nn.losses`` and the others are private: their
layout may change); ``__all__`` is the list of what is public.
"""
from __future__ import annotations

from .augment import (
                      SpatialTransform,
                      color_jitter,
                      contrastive_views,
                      cutmix,
                      default_generator,
                      dropout,
                      feature_dropout,
                      feature_noise,
                      gaussian_blur,
                      gaussian_noise,
                      photometric,
                      random_deformation,
                      random_spatial,
                      ssl4mis_weak,
                      strong_view,
                      uniform,
)
from .banks import FeatureQueue
from .boxes import random_boxes
from .components import keep_largest_per_class
from .ema import EMATeacher
from .heads import GlobalHead, mlp
from .losses import (
                     ce_dice_loss,
                     confident_ce,
                     cosine_regression,
                     dice_loss,
                     entropy_map,
                     grouped_nt_xent,
                     info_nce,
                     knn_positive_loss,
                     mask_slots,
                     masked_dice_loss,
                     masked_kl,
                     moco_logits,
                     nearest_neighbour_loss,
                     nt_xent,
                     onehot,
                     prototype_contrast,
                     relational_kl,
                     softmax_mse,
                     softmax_mse_map,
                     supcon,
)
from .mask_sampling import pick_where, sample_where
from .multihead import MultiDecoderUNet, PyramidUNet
from .ramps import sigmoid_rampup, ssl4mis_consistency_weight
from .unet import UNet, build_unet

__all__ = [
    "EMATeacher", "FeatureQueue", "GlobalHead", "MultiDecoderUNet", "PyramidUNet", "SpatialTransform", "UNet",
    "build_unet", "ce_dice_loss", "color_jitter", "confident_ce", "contrastive_views", "cosine_regression", "cutmix",
    "default_generator", "dice_loss", "dropout", "entropy_map", "feature_dropout", "feature_noise", "gaussian_blur",
    "gaussian_noise", "grouped_nt_xent", "info_nce", "keep_largest_per_class", "knn_positive_loss", "mask_slots",
    "masked_dice_loss", "masked_kl", "mlp", "moco_logits", "nearest_neighbour_loss", "nt_xent", "onehot", "photometric",
    "pick_where", "prototype_contrast", "random_boxes", "random_deformation", "random_spatial", "relational_kl",
    "sample_where", "sigmoid_rampup", "softmax_mse", "softmax_mse_map", "ssl4mis_consistency_weight", "ssl4mis_weak",
    "strong_view", "supcon", "uniform",
]
