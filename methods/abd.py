"""ABD: Adaptive Bidirectional Displacement (Chi et al., CVPR 2024) on the BCP baseline, as its
released ACDC code runs it (chy-upc/ABD, ``code/train_ACDC_BCP.py``, ``code/utils/displacement.py``).

BCP's two stages (see ``sslbench.methods.bcp``) with two students: ``model_1`` trains on BCP's
copy-paste mixes of the weak views, ``model_2`` on the same mixes of strong views (a cutout of
random 0/1 pixels whose label becomes background, p = 0.5, then ColorJitter(0.8, 0.8) always); the
mean teacher (EMA of ``model_1``) labels the unlabeled weak and strong views. On top of each
student's BCP loss:

* cross pseudo-supervision: each student's softmax against the other's argmax (Dice) on the mixes;
* ABD-R: per mixed image, the image is cut into a 4 x 4 grid of patches; with probability 1/2 the
  least confident patch of each view (mean max-softmax) is replaced by the other view's most
  confident one, otherwise by the one of the other view's 4 most confident patches whose mean
  prediction is closest (KL) to the replaced patch's; both students predict the displaced images of
  both views and supervise each other again (Dice against the other's argmax).

Loss per student ``(Dice + CE) / 2 + CPS + CPS on the displaced images``, summed. The evaluated
network is ``model_1`` (``eval_net = "model2"`` for the other). Kept as released: the background
class's Dice term in the copy-paste losses, the pre-training's included, runs over every pixel (ABD's
Dice loss maps class 0 to an all-ones mask); BCP's constant learning rate (``configs/methods/abd.toml``).
Deviations: BCP's (module ``bcp``); the random choice between the two displacement rules and the
patch choices are drawn on the device, per image (the release draws on the host).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from sslbench.method import Batch, ConfigError, Losses, MethodContext, Range, StepInfo, register_method
from sslbench.methods.bcp import BCP, BCPConfig, box_mask, halves, mix_loss
from sslbench.nn import color_jitter, masked_dice_loss, random_boxes


@dataclass
class ABDConfig(BCPConfig):
    grid: int = 4                 # patches per side (h_size = w_size = 4: 64-pixel patches at 256)
    top_num: int = 4              # confident candidates of the KL rule
    kl_rule_p: float = 0.5        # probability of the KL rule (else most-confident replaces least)
    cutout_p: float = 0.5         # probability of the strong view's cutout box
    cutout_area: tuple[float, float] = (0.02, 0.4)   # its area, fraction of the image, U (redrawn with the aspect)
    cutout_ratio: tuple[float, float] = (0.3, 1 / 0.3)   # its aspect (height / width), U
    jitter: float = 0.8           # ColorJitter(0.8, 0.8): factors U(0.2, 1.8), always applied
    eval_net: Literal["model1", "model2"] = "model1"      # "model1" (weak-view student) or "model2"

    ranges: ClassVar[dict[str, Range]] = {"cutout_area": Range(0.0, 1.0, open_lo=True),
                                          "cutout_ratio": Range(0.0, 100.0, open_lo=True)}


def cutout_gray(x: Tensor, y: Tensor, g: torch.Generator, cfg: ABDConfig) -> tuple[Tensor, Tensor]:
    """The release's ``cutout_gray``: with probability ``cutout_p`` a box of random 0/1 pixels, its
    label set to background; the area is redrawn with the aspect until the box fits (``sslbench.nn.boxes``)."""
    n, _, h, w = x.shape
    boxes = random_boxes(n, h, w, g, x.device, cfg.cutout_p, cfg.cutout_area, cfg.cutout_ratio, redraw_area=True)
    noise = torch.randint(0, 2, x.shape, generator=g, device=x.device).to(x.dtype)
    return torch.where(boxes[:, None], noise, x), torch.where(boxes, torch.zeros_like(y), y)


def strong_view(x: Tensor, y: Tensor, g: torch.Generator, cfg: ABDConfig) -> tuple[Tensor, Tensor]:
    x, y = cutout_gray(x, y, g, cfg)
    return color_jitter(x, g, p=1.0, strength=cfg.jitter), y


def to_patches(x: Tensor, grid: int) -> Tensor:
    """(B, H, W) -> (B, grid * grid, H/grid * W/grid), row-major patches (einops 'b (h p1) (w p2)
    -> b (h w) (p1 p2)')."""
    b, h, w = x.shape
    p, q = h // grid, w // grid
    return x.view(b, grid, p, grid, q).permute(0, 1, 3, 2, 4).reshape(b, grid * grid, p * q)


def from_patches(x: Tensor, grid: int, h: int, w: int) -> Tensor:
    b = x.shape[0]
    p, q = h // grid, w // grid
    return x.view(b, grid, grid, p, q).permute(0, 1, 3, 2, 4).reshape(b, h, w)


def displace(conf1: Tensor, conf2: Tensor, logits1: Tensor, logits2: Tensor, img1: Tensor, img2: Tensor,
             g: torch.Generator, cfg: ABDConfig) -> Tensor:
    """ABD-R on a batch of view pairs: ``conf*`` (B, H, W) max-softmax maps, ``logits*`` (B, C, H, W),
    ``img*`` (B, H, W). Returns the displaced images of view 1 then view 2, (2B, H, W)."""
    b, h, w = img1.shape
    k = cfg.grid
    c1, c2 = to_patches(conf1, k).mean(2), to_patches(conf2, k).mean(2)                     # (B, k*k)

    def patch_means(logits: Tensor) -> Tensor:  # (B, k*k, C): each patch's mean logits
        return to_patches(logits.flatten(0, 1), k).mean(2).view(b, -1, k * k).transpose(1, 2)

    m1, m2 = patch_means(logits1), patch_means(logits2)
    p1, p2 = to_patches(img1, k), to_patches(img2, k)
    rows = torch.arange(b, device=img1.device)
    low1, low2 = c1.argmin(1), c2.argmin(1)
    # rule 1: the most confident patch of the other view
    high1, high2 = c1.argmax(1), c2.argmax(1)
    # rule 2: of the other view's top_num most confident patches, the one whose mean prediction is
    # closest in KL to the replaced patch's (KL(target = the low patch of the other view ‖ candidate))
    top1, top2 = c1.topk(cfg.top_num, dim=1).indices, c2.topk(cfg.top_num, dim=1).indices
    target2 = torch.softmax(m2[rows, low2], -1)[:, None]                                  # (B, 1, C)
    target1 = torch.softmax(m1[rows, low1], -1)[:, None]
    kl1 = (target2 * (target2.log() - torch.log_softmax(m1.gather(1, top1[..., None].expand(-1, -1, m1.shape[2])), -1))).sum(-1)
    kl2 = (target1 * (target1.log() - torch.log_softmax(m2.gather(1, top2[..., None].expand(-1, -1, m2.shape[2])), -1))).sum(-1)
    pick1 = top1.gather(1, kl1.argmin(1, keepdim=True))[:, 0]    # view 1's patch that goes into view 2
    pick2 = top2.gather(1, kl2.argmin(1, keepdim=True))[:, 0]    # view 2's patch that goes into view 1
    kl_rule = torch.rand(b, generator=g, device=img1.device) < cfg.kl_rule_p
    give1 = torch.where(kl_rule, pick1, high1)   # view 1 -> view 2
    give2 = torch.where(kl_rule, pick2, high2)   # view 2 -> view 1
    new1 = p1.clone()
    new1[rows, low1] = p2[rows, give2]
    new2 = p2.clone()
    new2[rows, low2] = new1[rows, give1]         # read after view 1's replacement, as the release
    return torch.cat([from_patches(new1, k, h, w), from_patches(new2, k, h, w)])


def hard_dice(logits: Tensor, other: Tensor) -> Tensor:
    """``DiceLoss(softmax(logits), argmax(other))`` over every pixel (eps 1e-5), the target detached."""
    target = other.detach().argmax(dim=1)
    return masked_dice_loss(torch.softmax(logits.float(), dim=1), target, torch.ones_like(target, dtype=torch.bool))


@register_method("abd")
class ABD(BCP):
    """ABD on BCP: two students on weak / strong copy-paste mixes, cross pseudo-supervision and
    confidence-guided bidirectional patch displacement (module docstring: recipe, deviations)."""

    paper_name = "ABD"
    Config = ABDConfig
    cfg: ABDConfig
    background_unmasked = True  # its release's mix_loss, in the pre-training as in stage 2
    eval_nets = {"model1": "student", "model2": "model_2"}
    stage_nets = {"pretrain": "student"}  # pre-training trains the one network both students start from
    dims = (2,)  # its release is ACDC's slices only: BCP's LA track is not inherited

    def __init__(self, cfg: ABDConfig, ctx: MethodContext) -> None:
        super().__init__(cfg, ctx)
        if ctx.image_size % cfg.grid:
            raise ConfigError(f"ABD cuts images into method.grid = {cfg.grid} patches per side; train.image_size "
                              f"{ctx.image_size} is not a multiple of it")
        self.model_2 = ctx.build_unet()

    def branch(self, net: torch.nn.Module, a: Tensor, b: Tensor, ua: Tensor, ub: Tensor,
               m: Tensor) -> tuple[Tensor, Tensor]:
        """One student's two copy-paste mixes of its view: (their logits, their inputs)."""
        x_unl, x_l = ua * m + a * (1 - m), b * m + ub * (1 - m)
        return torch.cat([net(x_unl), net(x_l)]), torch.cat([x_unl, x_l])

    def branch_loss(self, out: Tensor, plab_a: Tensor, plab_b: Tensor, ya: Tensor, yb: Tensor,
                    mask: Tensor) -> Tensor:
        """One student's BCP term, (Dice + CE) / 2, on the logits of its two mixes (``branch``)."""
        cfg, bg = self.cfg, self.background_unmasked
        out_unl, out_l = out.chunk(2)
        unl_dice, unl_ce = mix_loss(out_unl, plab_a, ya, mask, cfg.u_weight, 1.0, background_unmasked=bg)
        l_dice, l_ce = mix_loss(out_l, yb, plab_b, mask, 1.0, cfg.u_weight, background_unmasked=bg)
        return (unl_dice + l_dice + unl_ce + l_ce) / 2

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        if step.stage == "pretrain":
            return super().training_step(batch, step)
        assert batch.x_u is not None
        cfg = self.cfg
        g = step.rng(batch.x_l.device)
        h, w = batch.x_l.shape[-2:]
        k = min(batch.x_l.shape[0], batch.x_u.shape[0]) // 2
        x_l, y_l, x_u = batch.x_l[:2 * k], batch.y_l[:2 * k], batch.x_u[:2 * k]
        xs_l, ys_l = strong_view(x_l, y_l, g, cfg)
        xs_u, _ = strong_view(x_u, torch.zeros(x_u.shape[0], h, w, dtype=torch.long, device=x_u.device), g, cfg)
        mask = box_mask(h, w, g, x_l.device, cfg.box_fraction)
        m = mask.view(1, 1, h, w)
        (ua_1, ub_1), (ua_2, ub_2) = halves(x_u, k), halves(xs_u, k)
        # the release's order: the teacher labels both views' unlabeled halves first (its BN statistics
        # and dropout draws are those of each half), then model_1 runs its mixes, then model_2
        plab_1a, plab_1b, plab_2a, plab_2b = self.pseudo_labels(ua_1, ub_1, ua_2, ub_2)
        out_1, in_1 = self.branch(self.student, *halves(x_l, k), ua_1, ub_1, m)
        out_2, in_2 = self.branch(self.model_2, *halves(xs_l, k), ua_2, ub_2, m)
        bcp_1 = self.branch_loss(out_1, plab_1a, plab_1b, *halves(y_l, k), mask)
        bcp_2 = self.branch_loss(out_2, plab_2a, plab_2b, *halves(ys_l, k), mask)
        cps_1, cps_2 = hard_dice(out_1, out_2), hard_dice(out_2, out_1)
        with torch.no_grad():
            conf_1 = torch.softmax(out_1.detach().float(), 1).amax(1)
            conf_2 = torch.softmax(out_2.detach().float(), 1).amax(1)
            displaced = displace(conf_1, conf_2, out_1.detach().float(), out_2.detach().float(), in_1[:, 0], in_2[:, 0],
                                 g, cfg)[:, None]
        d_1, d_2 = self.student(displaced), self.model_2(displaced)
        dis_1, dis_2 = hard_dice(d_1, d_2), hard_dice(d_2, d_1)
        return {"loss_model1": bcp_1 + cps_1 + dis_1, "loss_model2": bcp_2 + cps_2 + dis_2,
                "bcp_1": bcp_1.detach(), "bcp_2": bcp_2.detach(), "cps": (cps_1 + cps_2).detach(),
                "displaced_cps": (dis_1 + dis_2).detach()}

    def start_stage(self, stage: str) -> None:
        self.model_2.load_state_dict(self.student.state_dict())  # both students start pre-trained
        super().start_stage(stage)
