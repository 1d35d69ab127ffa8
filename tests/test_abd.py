"""ABD (on BCP) pinned against its released ACDC code (chy-upc/ABD, code/train_ACDC_BCP.py and
code/utils/displacement.py): the patch layout, both displacement rules, the strong view, the Dice
loss as ABD ships it and the loss assembly."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from sslbench.method import StepInfo
from sslbench.methods.abd import ABDConfig, cutout_gray, displace, from_patches, hard_dice, to_patches
from sslbench.methods.bcp import mix_loss
from sslbench.testing import build

CFG = ABDConfig()


def test_patch_layout_is_row_major() -> None:
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).view(2, 8, 8)
    p = to_patches(x, 4)                                    # 16 patches of 2 x 2
    assert p.shape == (2, 16, 4)
    assert p[0, 5].tolist() == [18.0, 19.0, 26.0, 27.0]    # patch row 1, column 1: pixels (2..3, 2..3)
    assert torch.equal(from_patches(p, 4, 8, 8), x)


def _views() -> tuple[torch.Tensor, ...]:
    """Two 1-image views, 4 x 4 patches of 1 pixel; view 1's patch values 0..15, view 2's 100..115."""
    img1 = torch.arange(16, dtype=torch.float32).view(1, 4, 4)
    img2 = img1 + 100
    conf1 = torch.full((1, 4, 4), 0.5)
    conf2 = torch.full((1, 4, 4), 0.5)
    conf1[0, 0, 3], conf1[0, 2, 2] = 0.1, 0.9   # view 1: least confident patch 3, most confident 10
    conf2[0, 1, 0], conf2[0, 3, 3] = 0.2, 0.95  # view 2: least confident patch 4, most confident 15
    return conf1, conf2, img1, img2


def test_most_confident_patch_replaces_the_least_confident_one() -> None:
    conf1, conf2, img1, img2 = _views()
    logits = torch.zeros(1, 2, 4, 4)
    out = displace(conf1, conf2, logits, logits, img1, img2, torch.Generator().manual_seed(0),
                   dataclasses.replace(CFG, grid=4, kl_rule_p=0.0))
    new1, new2 = to_patches(out[:1], 4)[0, :, 0], to_patches(out[1:], 4)[0, :, 0]
    assert new1[3] == 115 and (new1[torch.arange(16) != 3] == img1.flatten()[torch.arange(16) != 3]).all()
    assert new2[4] == 10 and (new2[torch.arange(16) != 4] == img2.flatten()[torch.arange(16) != 4]).all()


def test_the_kl_rule_picks_the_confident_patch_closest_to_the_replaced_one() -> None:
    conf1, conf2, img1, img2 = _views()
    conf1[0, 0, 0], conf1[0, 0, 1], conf1[0, 0, 2] = 0.8, 0.85, 0.7    # view 1's top 4: 10, 1, 0, 2
    conf2[0, 3, 2], conf2[0, 3, 1], conf2[0, 3, 0] = 0.9, 0.85, 0.8   # view 2's top 4: 15, 14, 13, 12
    logits1, logits2 = torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4)
    logits2[0, 2, 1, 0] = 4.0      # view 2's least confident patch (4) predicts class 2 ...
    logits1[0, 2, 0, 0] = 4.0      # ... and of view 1's candidates, patch 0 does too: it goes to view 2
    logits1[0, 1, 0, 3] = 4.0      # view 1's least confident patch (3) predicts class 1 ...
    logits2[0, 1, 3, 1] = 4.0      # ... so view 2's candidate 13 goes to view 1
    out = displace(conf1, conf2, logits1, logits2, img1, img2, torch.Generator().manual_seed(0),
                   dataclasses.replace(CFG, grid=4, kl_rule_p=1.0))
    new1, new2 = to_patches(out[:1], 4)[0, :, 0], to_patches(out[1:], 4)[0, :, 0]
    assert new1[3] == 113 and new2[4] == 0


def test_abds_dice_runs_the_background_over_every_pixel() -> None:
    """One image of 1 x 2 pixels (mask 1, 0), two classes; ABD's Dice maps class 0 to an all-ones mask."""
    p1 = torch.tensor([0.8, 0.3])
    logits = torch.log(torch.stack([1 - p1, p1])).view(1, 2, 1, 2)
    outer, inner, mask = torch.tensor([[[1, 0]]]), torch.tensor([[[0, 0]]]), torch.tensor([[1.0, 0.0]])
    dice, _ = mix_loss(logits, outer, inner, mask, 1.0, 1.0, background_unmasked=True)
    # outer: class 0 over both pixels (targets 0, 1 -> class-0 one-hot 0, 1): p0 = 0.2, 0.7
    #   1 - 2 * 0.7 / (0.04 + 0.49 + 1); class 1 over pixel 1: 1 - 1.6 / 1.64
    # inner: class 0 over both pixels (targets 0, 0): 1 - 2 * 0.9 / (0.53 + 2); class 1 over pixel 2: 1 - 0
    want = ((1 - 1.4 / 1.53) + (1 - 1.6 / 1.64)) / 2 + ((1 - 1.8 / 2.53) + 1.0) / 2
    assert math.isclose(float(dice), want, rel_tol=1e-6)


def test_cutout_writes_binary_noise_and_background_labels() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.full((200, 1, 16, 16), 0.5), torch.ones(200, 16, 16, dtype=torch.long)
    xc, yc = cutout_gray(x, y, g, CFG)
    box = xc[:, 0] != 0.5
    assert torch.equal(box, yc == 0)                                     # the label is background in the box
    assert set(xc[:, 0][box].unique().tolist()) <= {0.0, 1.0}
    assert 0.4 < float(box.flatten(1).any(1).float().mean()) < 0.6     # p = 0.5 (a box of all-0.5 noise is rare)


def test_each_student_learns_from_the_others_argmax_only() -> None:
    a = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(2, 3, 4, 4, requires_grad=True)
    hard_dice(a, b).backward()
    assert b.grad is None and a.grad is not None


def test_loss_assembly_and_both_students_start_pretrained() -> None:
    t = build("abd")
    m = t.method
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(0.5)
    m.start_stage("train")
    for net in (m.model_2, m.teacher.module):
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), m.student.state_dict().values()))
    t.stage_index = 1
    t.optimizer, t.extra = t.make_optimizers()
    out = t.train_step()
    for k in ("loss_model1", "loss_model2"):
        assert math.isfinite(float(out[k]))
    total = float(out["bcp_1"] + out["bcp_2"] + out["cps"] + out["displaced_cps"])
    assert math.isclose(float(out["loss"]), total, rel_tol=1e-5)


def test_who_learns_from_whom(monkeypatch) -> None:  # noqa: ANN001
    """model_1 on the weak mixes and model_2 on the strong ones, ABD's Dice in both copy-paste
    losses, and each student's softmax against the other's argmax on the mixes and displaced images."""
    import sslbench.methods.abd as abd
    from sslbench.method import Batch

    t = build("abd")
    m = t.method
    pairs, flags, branches = [], [], []
    real_dice, real_mix, real_branch = abd.hard_dice, abd.mix_loss, type(m).branch
    monkeypatch.setattr(abd, "hard_dice", lambda a, b: pairs.append((a, b)) or real_dice(a, b))
    monkeypatch.setattr(abd, "mix_loss", lambda *a, **k: flags.append(k.get("background_unmasked")) or real_mix(*a, **k))
    monkeypatch.setattr(type(m), "branch", lambda self, net, a, *r: branches.append((net, a)) or real_branch(self, net, a, *r))
    g = torch.Generator().manual_seed(0)
    x_l, x_u = torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g)
    y_l = torch.randint(0, 3, (4, 32, 32), generator=g)
    m.training_step(Batch(x_l, y_l, x_u), StepInfo("train", 0, 10, generator=torch.Generator().manual_seed(3)))
    (net1, a1), (net2, a2) = branches
    assert net1 is m.student and net2 is m.model_2
    assert torch.equal(a1, x_l[:2]) and not torch.equal(a2, x_l[:2])      # model_2 sees the strong views
    assert flags == [True] * 4
    (o1, o2), (o2b, o1b), (d1, d2), (d2b, d1b) = pairs
    assert o1 is o1b and o2 is o2b and d1 is d1b and d2 is d2b and o1 is not o2 and d1 is not d2


def test_each_students_copy_paste_term_by_hand(monkeypatch) -> None:  # noqa: ANN001
    """train_ACDC_BCP.py's loss per student, rebuilt from its lines: the mixes ``uimg_a * M + img_a * (1 -
    M)`` and ``img_b * M + uimg_b * (1 - M)`` of its own view, ``mix_loss(out_unl, plab_a, lab_a, M,
    u_weight, unlab=True)`` and ``mix_loss(out_l, lab_b, plab_b, M, u_weight)``, (Dice + CE) / 2
    summed; model_2 on the strong views with their labels. Networks in eval mode (no dropout), the
    teacher's labels fixed, so both sides are functions of the batch."""
    import sslbench.methods.abd as abd
    from sslbench.method import Batch

    m = build("abd").method
    m.eval()
    g = torch.Generator().manual_seed(0)
    plabs = [torch.randint(0, 3, (2, 32, 32), generator=g) for _ in range(4)]
    calls = iter(plabs)
    monkeypatch.setattr(m, "teacher_labels", lambda x: next(calls))
    monkeypatch.setattr(m, "clean", lambda *labels: labels)
    masks, views = [], []
    real_mask, real_view = abd.box_mask, abd.strong_view
    monkeypatch.setattr(abd, "box_mask", lambda *a, **k: masks.append(real_mask(*a, **k)) or masks[-1])
    monkeypatch.setattr(abd, "strong_view", lambda *a, **k: views.append(real_view(*a, **k)) or views[-1])
    # unlabeled images far from the labeled ones: a mix taken the wrong way round changes the logits
    x_l, x_u = torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g) + 10
    y_l = torch.randint(0, 3, (4, 32, 32), generator=g)
    out = m.training_step(Batch(x_l, y_l, x_u), StepInfo("train", 0, 10, generator=torch.Generator().manual_seed(3)))
    mask = masks[0]
    mm = mask.view(1, 1, 32, 32)
    (xs_l, ys_l), (xs_u, _) = views

    def term(net: torch.nn.Module, xl: torch.Tensor, yl: torch.Tensor, xu: torch.Tensor,
             pa: torch.Tensor, pb: torch.Tensor) -> float:
        unl = net(xu[:2] * mm + xl[:2] * (1 - mm))
        lab = net(xl[2:] * mm + xu[2:] * (1 - mm))
        d1, c1 = mix_loss(unl, pa, yl[:2], mask, CFG.u_weight, 1.0, background_unmasked=True)
        d2, c2 = mix_loss(lab, yl[2:], pb, mask, 1.0, CFG.u_weight, background_unmasked=True)
        return float(d1 + d2 + c1 + c2) / 2

    with torch.no_grad():
        want_1 = term(m.student, x_l, y_l, x_u, plabs[0], plabs[1])
        want_2 = term(m.model_2, xs_l, ys_l, xs_u, plabs[2], plabs[3])
    assert math.isclose(float(out["bcp_1"]), want_1, rel_tol=1e-5)
    assert math.isclose(float(out["bcp_2"]), want_2, rel_tol=1e-5)
    assert not math.isclose(want_1, want_2, rel_tol=1e-3)                 # the two views differ


def test_the_passes_run_in_the_releases_order(monkeypatch) -> None:  # noqa: ANN001
    """train_ACDC_BCP.py: the teacher's four passes (weak halves a, b, then strong a, b) come first, then
    model_1's two mixes, model_2's two, and the displaced batch through model_1, then model_2. The
    networks run in train mode (dropout, BN batch statistics), so the order is part of the recipe."""
    from sslbench.method import Batch

    m = build("abd").method
    m.start_stage("train")
    order = []
    for key, net in (("T", m.teacher.module), ("1", m.student), ("2", m.model_2)):
        real = net.forward
        monkeypatch.setattr(net, "forward", lambda x, *a, _r=real, _k=key, **k: order.append(_k) or _r(x, *a, **k))
    g = torch.Generator().manual_seed(0)
    x_l, x_u = torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g)
    y_l = torch.randint(0, 3, (4, 32, 32), generator=g)
    m.training_step(Batch(x_l, y_l, x_u), StepInfo("train", 0, 10, generator=torch.Generator().manual_seed(3)))
    assert "".join(order) == "TTTT112212"


def test_each_student_learns_from_the_teachers_labels_of_its_own_view(monkeypatch) -> None:  # noqa: ANN001
    """The teacher labels the weak unlabeled halves for model_1's two mixes and the strong ones for
    model_2's (the four maps are cleaned together, then handed back each to its own mix)."""
    import sslbench.methods.abd as abd
    from sslbench.method import Batch

    m = build("abd").method
    seen, made, losses = [], [], []

    def teacher_labels(x: torch.Tensor) -> torch.Tensor:  # map i: one block of class 1, i * 3 columns wide
        seen.append(x)
        lab = torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.long)
        lab[..., : 3 * (len(seen))] = 1
        made.append(lab)
        return lab

    real_mix = abd.mix_loss
    monkeypatch.setattr(m, "teacher_labels", teacher_labels)
    monkeypatch.setattr(abd, "mix_loss", lambda *a, **k: losses.append(a) or real_mix(*a, **k))
    g = torch.Generator().manual_seed(0)
    x_l, x_u = torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g)
    y_l = torch.randint(0, 3, (4, 32, 32), generator=g)
    m.training_step(Batch(x_l, y_l, x_u), StepInfo("train", 0, 10, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(seen[0], x_u[:2]) and torch.equal(seen[1], x_u[2:])            # model_1: the weak halves
    assert not torch.equal(seen[2], x_u[:2]) and seen[2].shape == seen[0].shape        # model_2: the strong ones
    (_, p1a, *_), (_, _, p1b, *_), (_, p2a, *_), (_, _, p2b, *_) = losses
    for got, want in zip((p1a, p1b, p2a, p2b), made):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name, unmasked", [("bcp", False), ("abd", True)])
def test_the_pretraining_loss_uses_each_releases_dice(name: str, unmasked: bool) -> None:
    """ABD's pre-training runs its own mix_loss (background Dice over every pixel), BCP's its own:
    the stage's loss equals the by-hand mix of the pre-training's two labeled halves."""
    from sslbench.method import Batch
    from sslbench.methods.bcp import box_mask

    t = build(name)
    m = t.method
    g = torch.Generator().manual_seed(0)
    x_l, y_l = torch.rand(4, 1, 32, 32, generator=g), torch.randint(0, 3, (4, 32, 32), generator=g)
    batch = Batch(x_l, y_l, torch.rand(4, 1, 32, 32, generator=g))
    torch.manual_seed(11)                               # the UNet's dropout draws from the global generator
    out = m.training_step(batch,
                          StepInfo("pretrain", 0, 10, generator=torch.Generator().manual_seed(7)))
    mask = box_mask(32, 32, torch.Generator().manual_seed(7), torch.device("cpu"))
    mm = mask.view(1, 1, 32, 32)
    torch.manual_seed(11)
    logits = m.student(x_l[:2] * mm + x_l[2:] * (1 - mm))
    dice, ce = mix_loss(logits, y_l[:2], y_l[2:], mask, 1.0, 1.0, background_unmasked=unmasked)
    other, _ = mix_loss(logits, y_l[:2], y_l[2:], mask, 1.0, 1.0, background_unmasked=not unmasked)
    assert math.isclose(float(out["mix_dice"]), float(dice), rel_tol=1e-5)
    assert not math.isclose(float(out["mix_dice"]), float(other), rel_tol=1e-3)
    assert math.isclose(float(out["loss_mix"].detach()), float(dice + ce) / 2, rel_tol=1e-5)


def test_both_students_predict_the_displaced_images(monkeypatch) -> None:  # noqa: ANN001
    """Each student runs its two copy-paste mixes and then the same displaced batch (their outputs
    then supervise each other): three forwards each, the last one on identical inputs."""
    from sslbench.method import Batch

    t = build("abd")
    m = t.method
    seen: dict[str, list[torch.Tensor]] = {"model1": [], "model2": []}
    for key, net in (("model1", m.student), ("model2", m.model_2)):
        real = net.forward
        monkeypatch.setattr(net, "forward", lambda x, *a, _r=real, _k=key, **k: seen[_k].append(x) or _r(x, *a, **k))
    g = torch.Generator().manual_seed(0)
    x_l, x_u = torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g)
    y_l = torch.randint(0, 3, (4, 32, 32), generator=g)
    m.training_step(Batch(x_l, y_l, x_u), StepInfo("train", 0, 10, generator=torch.Generator().manual_seed(3)))
    assert [len(v) for v in seen.values()] == [3, 3]
    assert torch.equal(seen["model1"][2], seen["model2"][2]) and seen["model1"][2].shape[0] == 8  # both views
    assert not torch.equal(seen["model1"][0], seen["model2"][0])   # the mixes: weak vs strong views
