"""BCP pinned against its released ACDC code (DeepMed-Lab-ECNU/BCP, code/ACDC_BCP_train.py): the box,
``mix_loss``, the bidirectional mixing with its label / pseudo-label weights, the teacher's cleaned
pseudo-labels, its EMA of parameters and BN statistics and its start from the pre-trained network."""
from __future__ import annotations

import math

import pytest
import torch

from sslbench.method import Batch, StepInfo
from sslbench.methods.bcp import box_mask, mix_loss
from sslbench.nn.ema import EMATeacher
from sslbench.testing import build


def test_box_mask_is_one_two_thirds_box() -> None:
    g = torch.Generator().manual_seed(0)
    corners = set()
    for _ in range(200):
        m = box_mask(30, 24, g, torch.device("cpu"))
        inside = (m == 0).nonzero()
        assert len(inside) == 20 * 16                                        # int(30 * 2/3) x int(24 * 2/3)
        y0, x0 = inside.min(0).values.tolist()
        assert 0 <= y0 < 10 and 0 <= x0 < 8                                   # randint(0, h - bh), (0, w - bw)
        corners.add((y0, x0))
    assert len(corners) > 30


def test_mix_loss_by_hand() -> None:
    """One image of 1 x 2 pixels, two classes; pixel 1 outside the box (mask 1), pixel 2 inside."""
    p1 = torch.tensor([0.8, 0.3])                                             # p(class 1) per pixel
    logits = torch.log(torch.stack([1 - p1, p1])).view(1, 2, 1, 2)
    outer = torch.tensor([[[1, 0]]])                                          # pixel 1's label: 1
    inner = torch.tensor([[[0, 0]]])                                          # pixel 2's label: 0
    mask = torch.tensor([[1.0, 0.0]])
    dice, ce = mix_loss(logits, outer, inner, mask, outer_weight=0.5, inner_weight=1.0)
    # outer Dice over pixel 1 (p1 = 0.8, label 1): class 0 1 - 0 / 0.04 = 1, class 1 1 - 1.6 / 1.64
    # inner Dice over pixel 2 (p1 = 0.3, label 0): class 0 1 - 1.4 / 1.49, class 1 1 - 0 / 0.09 = 1
    d_out = (1.0 + (1 - 1.6 / 1.64)) / 2
    d_in = ((1 - 1.4 / 1.49) + 1.0) / 2
    assert math.isclose(float(dice), 0.5 * d_out + 1.0 * d_in, rel_tol=1e-6)
    assert math.isclose(float(ce), 0.5 * -math.log(0.8) + 1.0 * -math.log(0.7), rel_tol=1e-6)


def test_the_student_sees_both_directions_with_their_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.methods.bcp as bcp

    t = build("bcp")
    m = t.method
    calls, inputs, results = [], [], []
    real = bcp.mix_loss
    monkeypatch.setattr(bcp, "mix_loss", lambda *a: calls.append(a) or results.append(real(*a)) or results[-1])
    made = []  # the first call labels ua (all 1), the second ub (all 2)
    monkeypatch.setattr(m, "teacher_labels", lambda x: made.append(1) or torch.full(x.shape[:1] + x.shape[2:], len(made)))
    forward = m.student.forward
    monkeypatch.setattr(m.student, "forward", lambda x: inputs.append(x) or forward(x))
    g = torch.Generator().manual_seed(0)
    x_l, x_u = torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g) + 10
    y_l = torch.randint(0, 3, (4, 32, 32), generator=g)
    out = m.training_step(Batch(x_l, y_l, x_u), StepInfo("train", 0, 10, generator=torch.Generator().manual_seed(1)))
    (d1, c1), (d2, c2) = results
    assert math.isclose(float(out["loss_mix"].detach()), float(d1 + d2 + c1 + c2) / 2, rel_tol=1e-6)
    mask = box_mask(32, 32, torch.Generator().manual_seed(1), torch.device("cpu"))
    unl_in, l_in = inputs
    # unlabeled outside the box / labeled inside, and the other way round
    assert torch.equal(unl_in, x_u[:2] * mask + x_l[:2] * (1 - mask))
    assert torch.equal(l_in, x_l[2:] * mask + x_u[2:] * (1 - mask))
    (_, outer1, inner1, _, w_out1, w_in1), (_, outer2, inner2, _, w_out2, w_in2) = calls
    assert (outer1 == 1).all() and torch.equal(inner1, y_l[:2]) and (w_out1, w_in1) == (0.5, 1.0)
    assert torch.equal(outer2, y_l[2:]) and (inner2 == 2).all() and (w_out2, w_in2) == (1.0, 0.5)


def test_pretraining_mixes_the_labeled_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    import sslbench.methods.bcp as bcp

    t = build("bcp")
    calls = []
    real = bcp.mix_loss
    monkeypatch.setattr(bcp, "mix_loss", lambda *a, **k: calls.append(a) or real(*a, **k))
    g = torch.Generator().manual_seed(0)
    x_l, y_l = torch.rand(4, 1, 32, 32, generator=g), torch.randint(0, 3, (4, 32, 32), generator=g)
    out = t.method.training_step(Batch(x_l, y_l, torch.rand(4, 1, 32, 32)), StepInfo("pretrain", 0, 10, generator=g))
    (_, outer, inner, _, w_out, w_in), = calls
    assert torch.equal(outer, y_l[:2]) and torch.equal(inner, y_l[2:]) and (w_out, w_in) == (1.0, 1.0)
    assert math.isclose(float(out["loss_mix"].detach()), float(out["mix_dice"] + out["mix_ce"]) / 2, rel_tol=1e-6)


def test_pseudo_labels_keep_each_classs_largest_component(monkeypatch: pytest.MonkeyPatch) -> None:
    t = build("bcp")
    m = t.method
    logits = torch.zeros(1, 4, 8, 8)
    logits[0, 0] = 1.0
    logits[0, 2, 1:4, 1:4] = 5.0                    # class 2: a 3 x 3 blob ...
    logits[0, 2, 6, 6] = 5.0                        # ... and a stray pixel, dropped
    monkeypatch.setattr(m.teacher, "forward", lambda x: logits)
    labels, = m.pseudo_labels(torch.zeros(1, 1, 8, 8))
    assert labels.sum() == 2 * 9 and labels[0, 6, 6] == 0


@pytest.mark.parametrize("name, maps", [("bcp", 2), ("abd", 4)])
def test_a_steps_pseudo_labels_are_cleaned_in_one_pass(name: str, maps: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """BCP's two and ABD's four teacher label maps of a self-training step go through the component
    cleaning together: on a GPU each pass's convergence reads are host syncs (the H200 check counted
    ABD's 24 reads in three steps: two convergence reads for each of its four maps a step). Batching
    changes no pixel: per map alone, in its order, gives the same labels."""
    import sslbench.methods.bcp as bcp

    m = build(name).method
    passes, maps_seen = [], []
    real = bcp.keep_largest_per_class
    monkeypatch.setattr(bcp, "keep_largest_per_class", lambda lab, *a: passes.append(len(lab)) or real(lab, *a))
    teacher_labels = m.teacher_labels
    monkeypatch.setattr(m, "teacher_labels", lambda x: maps_seen.append(teacher_labels(x)) or maps_seen[-1])
    g = torch.Generator().manual_seed(0)
    x_l, x_u = torch.rand(4, 1, 32, 32, generator=g), torch.rand(4, 1, 32, 32, generator=g)
    m.training_step(Batch(x_l, torch.randint(0, 3, (4, 32, 32), generator=g), x_u),
                    StepInfo("train", 0, 10, generator=torch.Generator().manual_seed(1)))
    assert passes == [2 * maps] and len(maps_seen) == maps      # one pass over every map (2 slices each)
    noisy = [torch.randint(0, 3, (2, 12, 12), generator=g) for _ in range(3)]
    together = m.clean(*noisy)
    assert len(together) == 3 and any(not torch.equal(a, b) for a, b in zip(together, noisy))
    for alone, lab in zip(together, noisy):
        assert torch.equal(alone, m.clean(lab)[0])


def test_teacher_starts_from_the_pretrained_student_then_follows_every_state_entry() -> None:
    t = build("bcp")
    m = t.method
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(1.0)
    m.after_step(StepInfo("pretrain", 3, 4), {})                               # the last pre-training step
    assert not any(torch.equal(a, b) for a, b in zip(m.teacher.module.parameters(), m.student.parameters()))
    m.start_stage("train")                                                   # stage 2 begins
    assert all(torch.equal(a, b) for a, b in zip(m.teacher.module.state_dict().values(),
                                                 m.student.state_dict().values()))
    before = {k: v.clone() for k, v in m.teacher.module.state_dict().items()}
    m.student.train()
    m.student(torch.rand(4, 1, 32, 32))                                      # moves the student's BN statistics
    m.after_step(StepInfo("train", 0, 10), {})
    for k, v in m.teacher.module.state_dict().items():
        s = m.student.state_dict()[k]
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.99 * before[k] + 0.01 * s)
    bn = next(k for k in before if k.endswith("running_mean"))
    assert not torch.equal(before[bn], m.teacher.module.state_dict()[bn])  # BN statistics follow too


def test_ema_state_by_hand() -> None:
    s = torch.nn.BatchNorm1d(2)
    teacher = EMATeacher(s, 0.9, warmup=False, buffers=True)
    t = teacher.module
    with torch.no_grad():
        t.weight.fill_(1.0), s.weight.fill_(3.0)
        t.running_mean.fill_(0.0), s.running_mean.fill_(10.0)
    teacher.update(s, 0)
    assert torch.allclose(t.weight, torch.full((2,), 1.2)) and torch.allclose(t.running_mean, torch.full((2,), 1.0))
