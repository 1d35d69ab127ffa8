"""UniMatch (Yang et al., CVPR 2023), as its released medical code runs it on ACDC
(LiheYoung/UniMatch, ``more-scenarios/medical/unimatch.py``).

Weak-to-strong consistency with two strong views and a feature-perturbed view, one network:

* labeled: ``(CE + Dice) / 2``;
* the weak unlabeled view (train mode, the same forward as the labeled slices) gives pseudo-labels
  and confidences; each of two strong views (colour jitter p = 0.8, blur p = 0.5, a CutMix box p = 0.5)
  learns them with a Dice loss over the pixels whose confidence is >= ``conf_thresh`` (0.95); inside
  a view's box the target is the box source's pseudo-label, predicted in eval mode;
* the decoder also runs on the encoder features after channel dropout (``Dropout2d(0.5)`` on every
  stage, labeled rows included: they share the decoder's batch statistics) and the perturbed
  unlabeled prediction learns the weak pseudo-labels the same way;
* total ``(L_x + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2``.

Deviations, each because the suite's trainer hands a method one batch: the CutMix source of unlabeled
slice i is slice i + 1 of the same batch (the release draws a second unlabeled batch), with its own
independent strong views and an eval-mode prediction of its weak view, as the release's mix batch;
images are not quantised to 8 bits before the strong views (the release converts to uint8 for PIL);
ColorJitter's saturation and hue are left out (they are the identity on grayscale images).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from sslbench.method import Batch, Losses, MethodConfig, MethodContext, Range, SSLMethod, StepInfo, register_method
from sslbench.nn import ce_dice_loss, color_jitter, gaussian_blur, masked_dice_loss, random_boxes, uniform


@dataclass
class UniMatchConfig(MethodConfig):
    conf_thresh: float = 0.95     # weak-view confidence a pixel needs to count in the unlabeled losses
    w_strong: float = 0.25       # each of the two strong views
    w_fp: float = 0.5            # the feature-perturbed view
    scale: float = 0.5           # the release divides the summed loss by 2
    fp_dropout: float = 0.5      # Dropout2d on every encoder stage for the perturbed view
    jitter_p: float = 0.8        # probability of the colour jitter on each strong view
    jitter: float = 0.5          # brightness and contrast factors U(1 - jitter, 1 + jitter)
    blur_p: float = 0.5          # probability of the Gaussian blur on each strong view
    blur_sigma: tuple[float, float] = (0.1, 2.0)   # the blur's sigma range, U
    box_p: float = 0.5           # probability of a CutMix box on each strong view
    box_area: tuple[float, float] = (0.02, 0.4)   # CutMix box area, fraction of the image, U
    box_ratio: tuple[float, float] = (0.3, 1 / 0.3)   # CutMix box aspect (height / width), U

    ranges: ClassVar[dict[str, Range]] = {"box_area": Range(0.0, 1.0, open_lo=True),
                                          "box_ratio": Range(0.0, 100.0, open_lo=True), "blur_sigma": Range(0.0, 100.0)}


def strong_view(x: Tensor, g: torch.Generator, cfg: UniMatchConfig) -> Tensor:
    """Colour jitter, then a Gaussian blur with probability ``blur_p`` (sigma U(0.1, 2.0))."""
    n = x.shape[0]
    x = color_jitter(x, g, cfg.jitter_p, cfg.jitter)
    on = (torch.rand(n, generator=g, device=x.device) < cfg.blur_p).view(n, 1, 1, 1)
    sigma = uniform(n, *cfg.blur_sigma, g, x.device).to(x.dtype)
    return torch.where(on, gaussian_blur(x, sigma, radius=6), x)


def cutmix_boxes(n: int, h: int, w: int, g: torch.Generator, device: torch.device, cfg: UniMatchConfig) -> Tensor:
    """The release's ``obtain_cutmix_box`` (the area drawn once; ``sslbench.nn.boxes``) with this
    config's p, area and ratio."""
    return random_boxes(n, h, w, g, device, cfg.box_p, cfg.box_area, cfg.box_ratio)


def channel_dropout(x: Tensor, p: float, g: torch.Generator) -> Tensor:
    """``nn.Dropout2d(p)`` in train mode: whole channels zeroed with probability ``p``, the rest scaled
    by 1 / (1 - p), the mask drawn from ``g``."""
    keep = torch.rand(x.shape[:2], generator=g, device=x.device) >= p
    return x * keep[..., None, None].to(x.dtype) / (1.0 - p)


def unimatch_losses(logits_x: Tensor, y_x: Tensor, logits_w: Tensor, logits_fp: Tensor, strong: list[Tensor],
                    boxes: list[Tensor], label_mix: Tensor, conf_mix: Tensor, cfg: UniMatchConfig) -> Losses:
    """The release's loss from the network's outputs: ``logits_w`` the weak unlabeled view (its
    detached argmax and confidence are the targets), ``strong`` the two strong views' logits, each
    with its CutMix ``box`` inside which ``label_mix`` / ``conf_mix`` (the box source's eval-mode
    prediction) replace them, ``logits_fp`` the feature-perturbed unlabeled view."""
    with torch.no_grad():
        conf_u, label_u = torch.softmax(logits_w.detach().float(), dim=1).max(dim=1)
    terms = []
    for pred, box in zip(strong, boxes):
        target = torch.where(box, label_mix, label_u)
        conf = torch.where(box, conf_mix, conf_u)
        terms.append(masked_dice_loss(torch.softmax(pred.float(), dim=1), target, conf >= cfg.conf_thresh))
    fp = masked_dice_loss(torch.softmax(logits_fp.float(), dim=1), label_u, conf_u >= cfg.conf_thresh)
    return {
        "loss_sup": cfg.scale * ce_dice_loss(logits_x, y_x, 0.5),
        "loss_strong": cfg.scale * cfg.w_strong * (terms[0] + terms[1]),
        "loss_fp": cfg.scale * cfg.w_fp * fp,
        "mask_ratio": (conf_u >= cfg.conf_thresh).float().mean(),
    }


@register_method("unimatch")
class UniMatch(SSLMethod[UniMatchConfig]):
    """UniMatch: weak-to-strong consistency with two strong views and feature perturbation (see the
    module docstring for the release's recipe and the deviations)."""

    paper_name = "UniMatch"
    # the kit checks every term at full strength: no confidence threshold hides one at initialisation
    conformance_config = {"conf_thresh": 0.0}

    def __init__(self, cfg: UniMatchConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)

    def weak_and_perturbed(self, x: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        """Logits of ``x`` and of the decoder run on channel-dropped features, in one decoder pass
        over both (the release's ``model(x, need_fp=True)``)."""
        feats = self.student.encoder(x)
        doubled = [torch.cat([f, channel_dropout(f, self.cfg.fp_dropout, g)]) for f in feats]
        logits, _ = self.student.decoder(doubled)
        return logits.chunk(2)

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        assert batch.x_u is not None
        cfg, x_u, n_l = self.cfg, batch.x_u, batch.n_l
        g = step.rng(x_u.device)
        n, _, h, w = x_u.shape
        source = torch.roll(torch.arange(n, device=x_u.device), -1)  # CutMix source of each slice
        with torch.no_grad():  # the box source's pseudo-labels, in eval mode as the release's mix batch
            was_training = self.student.training
            self.student.eval()
            probs_mix = torch.softmax(self.student(x_u[source]).float(), dim=1)
            self.student.train(was_training)
            conf_mix, label_mix = probs_mix.max(dim=1)
        views, boxes = [], []
        for _ in range(2):
            own, other = strong_view(x_u, g, cfg), strong_view(x_u[source], g, cfg)
            box = cutmix_boxes(n, h, w, g, x_u.device, cfg)
            views.append(torch.where(box[:, None], other, own))
            boxes.append(box)
        logits, logits_fp = self.weak_and_perturbed(torch.cat([batch.x_l, x_u]), g)
        s1, s2 = self.student(torch.cat(views)).chunk(2)
        return unimatch_losses(logits[:n_l], batch.y_l, logits[n_l:], logits_fp[n_l:], [s1, s2], boxes,
                               label_mix, conf_mix, cfg)
