"""Shared core pieces: UNet, losses, ramps, EMA teacher, sampler."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslbench.nn.ema import EMATeacher
from sslbench.nn.losses import ce_dice_loss, dice_loss
from sslbench.method import StepInfo
from sslbench.nn.ramps import sigmoid_rampup, ssl4mis_consistency_weight
from sslbench.train.sampler import CyclicSampler
from sslbench.nn.unet import UNet, UNetOutput


def test_unet_shapes_widths_and_features() -> None:
    net = UNet(in_channels=1, num_classes=4)
    assert net.widths == (16, 32, 64, 128, 256)
    dropouts = [m.p for m in net.encoder.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.05, 0.1, 0.2, 0.3, 0.5]
    assert not [m for m in net.decoder.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0]
    x = torch.rand(2, 1, 64, 64)
    assert net(x).shape == (2, 4, 64, 64)
    out = net(x, features=True)
    assert isinstance(out, UNetOutput)
    assert out.bottleneck.shape == (2, 256, 4, 4)
    assert [tuple(d.shape[1:]) for d in out.decoder] == [(128, 8, 8), (64, 16, 16), (32, 32, 32), (16, 64, 64)]


def test_dice_loss_hand_case() -> None:
    # two classes, confident logits: prediction = target except one pixel of four
    target = torch.tensor([[[0, 0], [1, 1]]])
    logits = torch.full((1, 2, 2, 2), -50.0)
    pred = torch.tensor([[[0, 1], [1, 1]]])
    logits.scatter_(1, pred[:, None], 50.0)
    # class 0: inter 1, sum p^2 1, sum g^2 2 -> 1 - 2/3; class 1: inter 2, p 3, g 2 -> 1 - 4/5
    expected = ((1 - (2 * 1 + 1e-5) / (3 + 1e-5)) + (1 - (2 * 2 + 1e-5) / (5 + 1e-5))) / 2
    assert float(dice_loss(logits, target)) == pytest.approx(expected, rel=1e-5)
    assert float(ce_dice_loss(logits, target)) == pytest.approx(
        0.5 * (float(F.cross_entropy(logits, target)) + expected), rel=1e-5)


def test_ramps_match_ssl4mis() -> None:
    assert sigmoid_rampup(0, 200) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(200, 200) == 1.0 and sigmoid_rampup(500, 200) == 1.0
    assert ssl4mis_consistency_weight(0.1, 15000, 30000) == pytest.approx(0.1 * math.exp(-1.25))
    assert ssl4mis_consistency_weight(0.1, 149, 30000) == ssl4mis_consistency_weight(0.1, 0, 30000)
    info = StepInfo("train", 10, 300)
    assert info.consistency_weight(0.1, start_fraction=0.1) == 0.0      # MT's zero period
    assert StepInfo("train", 10, 300, force_ramps=True).consistency_weight(0.1, 0.1) == 0.1


def test_ema_teacher() -> None:
    student = torch.nn.Linear(3, 2)
    teacher = EMATeacher(student, momentum=0.99)
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in teacher.parameters()]
    teacher.update(student, step=0)        # alpha = min(1 - 1/1, 0.99) = 0: copy the student
    assert all(torch.equal(t, s) for t, s in zip(teacher.parameters(), student.parameters()))
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    teacher.update(student, step=1000)     # alpha = 0.99
    for t, s, b in zip(teacher.parameters(), student.parameters(), before):
        assert torch.allclose(t, 0.99 * (b + 1) + 0.01 * s)


def test_cyclic_sampler_covers_every_index_each_epoch() -> None:
    g = torch.Generator().manual_seed(0)
    pool = torch.arange(10, 20)
    s = CyclicSampler(pool, g)
    first = torch.cat([s.next(4), s.next(4), s.next(2)])
    assert sorted(first.tolist()) == list(range(10, 20))
    state, g_state = s.state_dict(), g.get_state()     # the trainer checkpoints both
    a = s.next(7)
    s.load_state_dict(state)
    g.set_state(g_state)
    assert torch.equal(s.next(7), a)


def test_teacher_mode_switch() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    assert EMATeacher(net).train().module.training                      # SSL4MIS: train mode
    frozen = EMATeacher(net, train_mode=False).train()
    assert not frozen.training and not frozen.module[1].training
