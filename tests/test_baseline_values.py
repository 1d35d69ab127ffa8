"""Loss values of every SSL4MIS baseline's ``training_step`` on fixed tensors, against the reference
scripts' definitions (``code/train_*_2D.py``, ``utils/losses.py``) written out here with plain torch.

The networks are used as black boxes (their outputs are recomputed here); what is pinned is what the
method does with them: which network sees which slices, which term is detached, the masks, the
signs, the ramp. Dropout modules are set to p = 0 so that forwards in train mode (batch-norm batch
statistics, as the reference) are reproducible; random draws of the methods (noise, rotation) are
reproduced from the same seed in the reference's order. The step sits mid-ramp, so a missing or
wrong ramp changes the values: ``w = 0.1 sigmoid_rampup(15000 // 150, 200) = 0.1 e^{-1.25}``.
"""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sslbench.method import METHODS, Batch, SSLMethod, StepInfo

from .conftest import tiny_method

C = 3
STEP = StepInfo("train", 15000, 30000)
W = 0.1 * math.exp(-5 * (1 - 100 / 200) ** 2)


def ref_dice(logits: Tensor, y: Tensor) -> Tensor:
    """SSL4MIS ``DiceLoss(C)(softmax(logits), y)``: per class (background too) 1 - (2 Σ p g + 1e-5) /
    (Σ p² + Σ g² + 1e-5) over the whole batch, averaged over classes."""
    p = torch.softmax(logits, dim=1)
    total = torch.zeros(())
    for c in range(p.shape[1]):
        g = (y == c).float()
        s = p[:, c]
        total = total + 1 - (2 * (s * g).sum() + 1e-5) / ((s * s).sum() + (g * g).sum() + 1e-5)
    return total / p.shape[1]


def ref_sup(logits: Tensor, y: Tensor) -> Tensor:
    return 0.5 * (F.cross_entropy(logits, y) + ref_dice(logits, y))


def make(name: str, **cfg: Any) -> tuple[SSLMethod, Batch]:
    """A tiny method in train mode without dropout, a teacher that differs from its student, a batch
    of 2 labeled and 4 unlabeled 32 x 32 slices."""
    method = tiny_method(name, C, **cfg)
    cls = type(method)
    teacher = getattr(method, "teacher", None)
    if teacher is not None:
        with torch.no_grad():
            for p in teacher.module.parameters():
                p.add_(0.1 * torch.randn_like(p))
    method.train()
    g = torch.Generator().manual_seed(1)
    x_l = torch.rand(2, 1, 32, 32, generator=g)
    y_l = torch.randint(0, C, (2, 32, 32), generator=g)
    x_u = torch.rand(4, 1, 32, 32, generator=g)
    return method, Batch(x_l, y_l, x_u if cls.uses_unlabeled else None)


def close(got: Tensor | float, expected: Tensor | float) -> None:
    torch.testing.assert_close(torch.as_tensor(got, dtype=torch.float32).detach(),
                               torch.as_tensor(expected, dtype=torch.float32).detach(), rtol=2e-5, atol=1e-7)


def probs(logits: Tensor) -> Tensor:
    return torch.softmax(logits, dim=1)


@pytest.mark.parametrize("name", ["unet-l", "unet-f"])
def test_supervised_only(name: str) -> None:
    method, batch = make(name)
    out = method.training_step(batch, STEP)
    assert [k for k in out if "loss" in k] == ["loss_sup"]
    close(out["loss_sup"], ref_sup(method.student(batch.x_l), batch.y_l))


def test_em() -> None:
    method, batch = make("em")
    out = method.training_step(batch, STEP)
    logits = method.student(batch.joint())
    p = probs(logits)
    entropy = (-(p * torch.log(p + 1e-6)).sum(dim=1) / math.log(C)).mean()   # whole batch, as SSL4MIS
    close(out["loss_sup"], ref_sup(logits[:2], batch.y_l))
    close(out["loss_entropy"], W * entropy)
    method, batch = make("em", whole_batch=False)
    out = method.training_step(batch, STEP)
    p = probs(method.student(batch.joint()))[2:]
    close(out["loss_entropy"], W * (-(p * torch.log(p + 1e-6)).sum(dim=1) / math.log(C)).mean())


def test_mt() -> None:
    method, batch = make("mt")
    torch.manual_seed(5)
    out = method.training_step(batch, STEP)
    torch.manual_seed(5)
    student = method.student(batch.joint())
    noise = torch.clamp(torch.randn_like(batch.x_u) * 0.1, -0.2, 0.2)
    with torch.no_grad():
        target = probs(method.teacher.module(batch.x_u + noise))
    close(out["loss_sup"], ref_sup(student[:2], batch.y_l))
    close(out["loss_cons"], W * ((probs(student[2:]) - target) ** 2).mean())
    assert float(out["loss_cons"].detach()) > 1e-6
    # consistency forced to 0 for the first 1000 of 30000 iterations, then the plain ramp
    assert float(method.training_step(batch, StepInfo("train", 999, 30000))["loss_cons"].detach()) == 0.0
    torch.manual_seed(5)
    late = method.training_step(batch, StepInfo("train", 1000, 30000))
    close(late["cons_weight"], 0.1 * math.exp(-5 * (1 - 6 / 200) ** 2))


def test_uamt() -> None:
    method, batch = make("uamt")
    with torch.no_grad():  # confident networks, so that the ln 2 threshold keeps some pixels
        method.student.decoder.head.weight.mul_(30)
        method.teacher.module.decoder.head.weight.mul_(30)
    torch.manual_seed(5)
    out = method.training_step(batch, STEP)
    torch.manual_seed(5)
    student = method.student(batch.joint())
    noise = lambda x: x + torch.clamp(torch.randn_like(x) * 0.1, -0.2, 0.2)  # noqa: E731
    teacher = method.teacher.module
    with torch.no_grad():
        target = probs(teacher(noise(batch.x_u)))
        doubled = batch.x_u.repeat(2, 1, 1, 1)
        preds = torch.cat([probs(teacher(noise(doubled))) for _ in range(4)])   # T = 8 passes
        mean = preds.view(8, 4, C, 32, 32).mean(0)
    uncertainty = -(mean * torch.log(mean + 1e-6)).sum(dim=1, keepdim=True)
    threshold = (0.75 + 0.25 * math.exp(-5 * (1 - 0.5) ** 2)) * math.log(2)
    mask = (uncertainty < threshold).float()
    assert 0 < float(mask.mean()) < 1
    dist = (probs(student[2:]) - target) ** 2
    close(out["loss_cons"], W * (mask * dist).sum() / (2 * mask.sum() + 1e-16))
    close(out["certain_fraction"], mask.mean())
    close(out["loss_sup"], ref_sup(student[:2], batch.y_l))


def test_ict(monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.methods import ict

    lam = torch.tensor([0.3, 0.8]).view(2, 1, 1, 1)
    monkeypatch.setattr(ict, "beta_lambdas", lambda n, alpha, like: lam[:n])
    method, batch = make("ict")
    out = method.training_step(batch, STEP)
    u0, u1 = batch.x_u[:2], batch.x_u[2:]
    student = method.student(torch.cat([batch.x_l, (1 - lam) * u0 + lam * u1]))
    with torch.no_grad():  # two teacher passes, one per half (train-mode batch norm sees each half alone)
        target = (1 - lam) * probs(method.teacher.module(u0)) + lam * probs(method.teacher.module(u1))
    close(out["loss_sup"], ref_sup(student[:2], batch.y_l))
    close(out["loss_cons"], W * ((probs(student[2:]) - target) ** 2).mean())


def test_cct() -> None:
    method, batch = make("cct")
    perturb = (lambda x, g=None: 0.5 * x, lambda x, g=None: 1.5 * x, lambda x, g=None: x + 0.2)
    method.student.perturbations = perturb
    out = method.training_step(batch, STEP)
    net = method.student
    feats = net.encoder(batch.joint())
    main = net.decoder(feats)[0]
    aux = [dec([f_k(f) for f in feats])[0] for dec, f_k in zip(net.aux_decoders, perturb)]
    sup = sum(F.cross_entropy(o[:2], batch.y_l) + ref_dice(o[:2], batch.y_l) for o in [main, *aux]) / 8
    cons = sum(((probs(main[2:]) - probs(a[2:])) ** 2).mean() for a in aux) / 3
    close(out["loss_sup"], sup)
    close(out["loss_cons"], W * cons)
    # SSL4MIS does not detach the main prediction: the consistency also trains the main decoder
    main_grads = torch.autograd.grad(out["loss_cons"], list(net.decoder.parameters()), allow_unused=True)
    assert sum(float(g.abs().sum()) for g in main_grads if g is not None) > 0


def test_urpc() -> None:
    method, batch = make("urpc")
    method.student.aux_perturbations = (lambda x, g=None: 0.5 * x, lambda x, g=None: 1.5 * x, lambda x, g=None: x + 0.2)
    out = method.training_step(batch, STEP)
    outs = method.student.forward_pyramid(batch.joint())
    sup = sum(F.cross_entropy(o[:2], batch.y_l) + ref_dice(o[:2], batch.y_l) for o in outs) / 8
    soft = [probs(o) for o in outs]
    preds = sum(soft) / 4
    terms = []
    for p in soft:  # nn.KLDivLoss(reduction='none')(log p_s, p̄) summed over classes
        variance = (preds[2:] * (torch.log(preds[2:]) - torch.log(p[2:]))).sum(dim=1, keepdim=True)
        e = torch.exp(-variance)
        terms.append(((preds[2:] - p[2:]) ** 2 * e).mean() / (e.mean() + 1e-8) + variance.mean())
    close(out["loss_sup"], sup)
    close(out["loss_cons"], W * sum(terms) / 4)


def test_dct() -> None:
    method, batch = make("dct")
    for seed in range(4):
        torch.manual_seed(seed)
        out = method.training_step(batch, STEP)
        torch.manual_seed(seed)
        k = int(torch.randint(0, 4, ()).item())
        logits = method.student(batch.joint())
        rot = probs(method.student(torch.rot90(batch.x_u, k, (2, 3))))
        target = torch.rot90(probs(logits[2:]), k, (2, 3))
        close(out["loss_sup"], ref_sup(logits[:2], batch.y_l))
        close(out["loss_cons"], W * ((rot - target) ** 2).mean())


def test_cps() -> None:
    method, batch = make("cps")
    out = method.training_step(batch, STEP)
    l1, l2 = method.student(batch.joint()), method.model2(batch.joint())
    assert not torch.allclose(l1, l2)                             # independent initialisations
    close(out["loss_sup1"], ref_sup(l1[:2], batch.y_l))
    close(out["loss_sup2"], ref_sup(l2[:2], batch.y_l))
    close(out["loss_cps1"], W * F.cross_entropy(l1[2:], l2[2:].argmax(1)))
    close(out["loss_cps2"], W * F.cross_entropy(l2[2:], l1[2:].argmax(1)))


def test_dan() -> None:
    method, batch = make("dan")
    out = method.training_step(batch, STEP)
    logits = method.student(batch.joint())
    method.disc.eval()
    d_u = method.disc(probs(logits[2:]), batch.x_u)
    close(out["loss_sup"], ref_sup(logits[:2], batch.y_l))
    close(out["loss_adv"], W * F.cross_entropy(d_u, torch.ones(4, dtype=torch.long)))   # "look labeled"
    torch.manual_seed(3)
    d_out = method.extra_step("disc", batch, STEP)
    assert not method.student.training and method.disc.training
    torch.manual_seed(3)
    with torch.no_grad():
        p_all = probs(method.student(batch.joint()))              # segmenter in eval mode
    d_all = method.disc(p_all, batch.joint())
    target = torch.tensor([1, 1, 0, 0, 0, 0])                     # labeled 1, unlabeled 0
    close(d_out["loss_disc"], F.cross_entropy(d_all, target))


# ------------------------------------------------------------------ stop-gradients, by hand


def test_dct_gradient_halves_go_both_ways() -> None:
    """``0.5 [mean((sg(a) - b)²) + mean((a - sg(b))²)]``: each side gets (x - other) / N, half of
    the gradient a plain MSE would send."""
    from sslbench.methods.dct import rotation_consistency

    torch.manual_seed(0)
    rot_logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    rotation_consistency(rot_logits, logits, 1).backward()
    a = probs(rot_logits.detach()).requires_grad_()
    b = torch.rot90(probs(logits.detach()), 1, (2, 3))
    n = a.numel()
    # gradient wrt the rotated view's probabilities: (a - b) / n; push it through the softmax
    expected = torch.autograd.grad(probs(rot_logits), rot_logits, (a.detach() - b) / n)[0]
    torch.testing.assert_close(rot_logits.grad, expected)
    expected_other = torch.autograd.grad(torch.rot90(probs(logits), 1, (2, 3)), logits, (b - a.detach()) / n)[0]
    torch.testing.assert_close(logits.grad, expected_other)


def test_urpc_mean_is_not_detached() -> None:
    """SSL4MIS builds p̄ from the live outputs: the gradient flows through the mean too."""
    from sslbench.methods.urpc import rectified_pyramid_consistency

    torch.manual_seed(0)
    logits = [torch.randn(2, 3, 4, 4, requires_grad=True) for _ in range(4)]
    rectified_pyramid_consistency(logits).backward()
    ref = [x.detach().clone().requires_grad_() for x in logits]
    soft = [probs(x) for x in ref]
    mean = sum(soft) / 4
    total = sum(((mean - p) ** 2 * torch.exp(-(mean * (mean.log() - p.log())).sum(1, keepdim=True))).mean()
                / (torch.exp(-(mean * (mean.log() - p.log())).sum(1, keepdim=True)).mean() + 1e-8)
                + (mean * (mean.log() - p.log())).sum(1, keepdim=True).mean() for p in soft) / 4
    total.backward()
    for ours, theirs in zip(logits, ref):
        torch.testing.assert_close(ours.grad, theirs.grad)


# ------------------------------------------------------------------ the evaluated network


def _eval_forward(net: nn.Module, x: Tensor) -> Tensor:
    net.eval()
    try:
        with torch.no_grad():
            return net(x)
    finally:
        net.train()


@pytest.mark.parametrize("name,cfg,which", [
    ("unet-l", {}, "student"), ("em", {}, "student"), ("dct", {}, "student"), ("ict", {}, "student"),
    ("uamt", {}, "student"), ("dan", {}, "student"), ("mt", {}, "student"), ("mt", {"eval_net": "teacher"}, "teacher"),
    ("cps", {}, "student"), ("cps", {"eval_net": "model2"}, "model2"), ("cct", {}, "main"), ("urpc", {}, "main"),
])
def test_the_evaluated_network(name: str, cfg: dict[str, Any], which: str) -> None:
    """SSL4MIS tests the student (MT, UAMT, ICT), model1 (CPS) and the main decoder / head (CCT, URPC)."""
    method, batch = make(name, **cfg)
    x = batch.x_l
    if which == "teacher":
        expected = _eval_forward(method.teacher.module, x)
    elif which == "model2":
        expected = _eval_forward(method.model2, x)
    elif which == "main":
        net = method.student
        net.eval()
        with torch.no_grad():
            expected = net.decoder(net.encoder(x))[0]
        net.train()
    else:
        expected = _eval_forward(method.student, x)
    torch.testing.assert_close(method.predict(x), expected)
    for other in ("teacher", "model2"):
        if other != which and hasattr(method, other):
            net = getattr(method, other)
            net = net.module if hasattr(net, "module") else net
            assert not torch.allclose(_eval_forward(net, x), expected)


def test_unet_f_uses_every_label_and_the_supervised_rows_no_unlabeled_slice() -> None:
    from sslbench.run.specs import expand

    specs = expand(["unet-f", "unet-l"], ["synthetic-cardiac"], [5.0], [0], "quick")
    assert {(s.method, s.ratio) for s in specs} == {("unet-f", 100.0), ("unet-l", 5.0)}
    assert not METHODS.get("unet-l").uses_unlabeled and not METHODS.get("unet-f").uses_unlabeled
