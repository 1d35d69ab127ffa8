"""UniMatch pinned against its released medical code (LiheYoung/UniMatch, more-scenarios/medical):
the masked Dice (``DiceLoss(..., ignore=...)``), the loss assembly, the strong view, the CutMix boxes
and the feature-perturbed pass, on small fixed tensors with numbers worked out here."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from sslbench.methods.unimatch import UniMatchConfig, channel_dropout, color_jitter, cutmix_boxes, unimatch_losses
from sslbench.nn.losses import masked_dice_loss
from sslbench.testing import build

CFG = UniMatchConfig()


def release_dice(probs: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor, smooth: float = 1e-5) -> float:
    """The release's DiceLoss, class by class over the non-ignored pixels of the batch."""
    total = 0.0
    for c in range(probs.shape[1]):
        keep = ignore != 1
        score, t = probs[:, c][keep], (target == c).float()[keep]
        total += 1 - (2 * (score * t).sum() + smooth) / ((t * t).sum() + (score * score).sum() + smooth)
    return float(total) / probs.shape[1]


def test_masked_dice_by_hand() -> None:
    # one image 1 x 3: probabilities of class 1 = 0.9, 0.2, 0.6; target 1, 0, 1; the last pixel ignored
    p1 = torch.tensor([0.9, 0.2, 0.6])
    probs = torch.stack([1 - p1, p1]).view(1, 2, 1, 3)
    target = torch.tensor([[[1, 0, 1]]])
    mask = torch.tensor([[[True, True, False]]])
    # class 0 over pixels 1-2: inter 0.8, |p|^2 0.01 + 0.64, |t|^2 1 -> 1 - 1.6 / 1.65
    # class 1: inter 0.9, |p|^2 0.81 + 0.04, |t|^2 1 -> 1 - 1.8 / 1.85
    want = ((1 - 1.6 / 1.65) + (1 - 1.8 / 1.85)) / 2
    got = masked_dice_loss(probs, target, mask, eps=0.0)
    assert math.isclose(float(got), want, rel_tol=1e-6)
    assert math.isclose(float(got), release_dice(probs, target, ~mask, 0.0), rel_tol=1e-6)


def test_masked_dice_matches_the_release_on_random_tensors() -> None:
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(3, 4, 6, 5, generator=g), 1)
    target = torch.randint(0, 4, (3, 6, 5), generator=g)
    conf = torch.rand(3, 6, 5, generator=g)
    got = masked_dice_loss(probs, target, conf >= 0.5)
    assert math.isclose(float(got), release_dice(probs, target, (conf < 0.5).float()), rel_tol=1e-5)


def test_loss_assembly_by_hand() -> None:
    """Two classes, one unlabeled image of 1 x 2 pixels; strong view 1 has a box over pixel 2, view 2
    none; threshold 0.95. Weak logits make pixel 1 class 0 at confidence 0.98 and pixel 2 class 1 at
    0.6 (ignored), the box source is class 1 at 0.99 (kept)."""
    cfg = dataclasses.replace(CFG)
    logit = lambda p1: torch.log(torch.tensor([1 - p1, p1]))  # noqa: E731  (two-class logits with softmax p1)
    weak = torch.stack([logit(0.02), logit(0.6)], dim=1).view(1, 2, 1, 2)
    s1 = torch.stack([logit(0.3), logit(0.8)], dim=1).view(1, 2, 1, 2)
    s2 = torch.stack([logit(0.1), logit(0.7)], dim=1).view(1, 2, 1, 2)
    fp = torch.stack([logit(0.25), logit(0.5)], dim=1).view(1, 2, 1, 2)
    box1 = torch.tensor([[[False, True]]])
    box2 = torch.zeros(1, 1, 2, dtype=torch.bool)
    label_mix, conf_mix = torch.ones(1, 1, 2, dtype=torch.long), torch.full((1, 1, 2), 0.99)
    x_logits = torch.zeros(1, 2, 1, 2)
    out = unimatch_losses(x_logits, torch.zeros(1, 1, 2, dtype=torch.long), weak, fp, [s1, s2], [box1, box2],
                          label_mix, conf_mix, cfg)

    def dice(pairs: list[tuple[float, int]]) -> float:  # (p of class 1, target) over kept pixels, eps 1e-5
        total = 0.0
        for c in (0, 1):
            ps = [p if c == 1 else 1 - p for p, _ in pairs]
            ts = [1.0 if t == c else 0.0 for _, t in pairs]
            inter = sum(p * t for p, t in zip(ps, ts))
            total += 1 - (2 * inter + 1e-5) / (sum(p * p for p in ps) + sum(ts) + 1e-5)
        return total / 2

    l_s1 = dice([(0.3, 0), (0.8, 1)])        # pixel 1: weak target 0 (0.98 kept); pixel 2: box source, class 1
    l_s2 = dice([(0.1, 0)])                  # pixel 2 ignored (weak confidence 0.6)
    l_fp = dice([(0.25, 0)])
    # uniform probabilities against class 0 on both pixels: CE ln 2; Dice class 0 1 - 2 / 2.5, class 1 1 - 0
    sup = 0.5 * (math.log(2) + ((1 - 2 / 2.5) + 1.0) / 2)
    assert math.isclose(float(out["loss_sup"]), 0.5 * sup, rel_tol=1e-5)
    assert math.isclose(float(out["loss_strong"]), 0.5 * 0.25 * (l_s1 + l_s2), rel_tol=1e-5)
    assert math.isclose(float(out["loss_fp"]), 0.5 * 0.5 * l_fp, rel_tol=1e-5)
    assert float(out["mask_ratio"]) == 0.5


def test_targets_are_detached_and_every_term_trains_its_view() -> None:
    g = torch.Generator().manual_seed(1)
    weak = torch.randn(2, 3, 4, 4, generator=g, requires_grad=True)
    views = [torch.randn(2, 3, 4, 4, generator=g, requires_grad=True) for _ in range(3)]
    boxes = [torch.zeros(2, 4, 4, dtype=torch.bool)] * 2
    cfg = dataclasses.replace(CFG, conf_thresh=0.0)
    out = unimatch_losses(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long), weak, views[2],
                          views[:2], boxes, torch.zeros(2, 4, 4, dtype=torch.long), torch.ones(2, 4, 4), cfg)
    (out["loss_strong"] + out["loss_fp"]).backward()
    assert weak.grad is None                                 # the weak view only gives targets
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in views)


def test_cutmix_boxes_follow_the_release() -> None:
    g = torch.Generator().manual_seed(0)
    boxes = cutmix_boxes(4000, 64, 48, g, torch.device("cpu"), CFG)
    area = boxes.flatten(1).float().mean(1)
    present = area > 0
    assert 0.46 < present.float().mean() < 0.54                              # p = 0.5
    assert float(area[present].min()) >= 0.015 and float(area[present].max()) <= 0.4
    assert 0.17 < float(area[present].mean()) < 0.23                         # ~ U(0.02, 0.4) after floors and fits
    rows, cols = boxes.any(2), boxes.any(1)
    # every box is one axis-aligned rectangle inside the image
    assert torch.equal(boxes, rows[:, :, None] & cols[:, None, :])


def test_color_jitter_ranges_and_order() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2000, 1, 8, 8) * 0.5 + 0.25
    y = color_jitter(x, g, p=1.0, strength=0.5)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    ratio = (y.mean((1, 2, 3)) / x.mean((1, 2, 3)))
    assert 0.45 < float(ratio.min()) and float(ratio.max()) < 1.55            # brightness U(0.5, 1.5) moves the mean
    same = color_jitter(x, torch.Generator().manual_seed(0), p=0.0, strength=0.5)
    assert torch.equal(same, x)                                               # p = 0: untouched


def test_channel_dropout_zeroes_whole_channels() -> None:
    x = torch.ones(64, 32, 3, 3)
    y = channel_dropout(x, 0.5, torch.Generator().manual_seed(0))
    per_channel = y.flatten(2)
    assert torch.all((per_channel == 0).all(2) | (per_channel == 2).all(2))   # dropped or scaled by 2
    assert 0.45 < float((per_channel[:, :, 0] == 0).float().mean()) < 0.55


def test_the_perturbed_pass_shares_one_decoder_batch() -> None:
    """``model(x, need_fp=True)``: the decoder sees the clean and the dropped features in one batch."""
    t = build("unimatch")
    m = t.method
    x = torch.randn(4, 1, 32, 32)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    m.train()
    torch.manual_seed(0)
    clean, perturbed = m.weak_and_perturbed(x, g1)
    torch.manual_seed(0)
    feats = m.student.encoder(x)
    doubled = [torch.cat([f, channel_dropout(f, 0.5, g2)]) for f in feats]
    want, _ = m.student.decoder(doubled)
    torch.testing.assert_close(torch.cat([clean, perturbed]), want)
    assert not torch.allclose(clean, perturbed)


@pytest.mark.parametrize("key", ["loss_sup", "loss_strong", "loss_fp"])
def test_every_term_is_present_and_finite(key: str) -> None:
    out = build("unimatch").train_step()
    assert key in out and math.isfinite(float(out[key])) and float(out[key]) > 0


def test_box_sources_are_the_next_slice_predicted_in_eval_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.methods.unimatch as um
    from sslbench.method import Batch, StepInfo

    t = build("unimatch")
    m = t.method
    seen = {}
    real = um.unimatch_losses
    monkeypatch.setattr(um, "unimatch_losses", lambda *a: seen.update(label=a[6], conf=a[7]) or real(*a))
    g = torch.Generator().manual_seed(0)
    x_u = torch.rand(4, 1, 32, 32, generator=g)
    batch = Batch(torch.rand(2, 1, 32, 32, generator=g), torch.zeros(2, 32, 32, dtype=torch.long), x_u)
    import copy

    before = copy.deepcopy(m.student).eval()  # the step's train-mode passes move the BN statistics
    m.train()
    m.training_step(batch, StepInfo("train", 0, 10, generator=torch.Generator().manual_seed(1)))
    assert m.student.training                                      # back in train mode afterwards
    with torch.no_grad():
        conf, label = torch.softmax(before(torch.roll(x_u, -1, 0)), 1).max(1)
    assert torch.equal(seen["label"], label) and torch.allclose(seen["conf"], conf)
