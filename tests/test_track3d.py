"""The 3-D track (UA-MT's LA protocol): crops and reflections as the release draws them, its losses and
ramps, sliding-window inference in our (D, H, W) axis order, the LA dataset plugin on a tiny fake
release folder, and a run end to end. Real LA (``SSLBENCH_LA_DATA`` = UA-MT's ``data`` folder) is
checked when present, skipped otherwise."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sslbench.base.config import resolve_config
from sslbench.base.errors import ConfigError, DataError
from sslbench.method import METHODS, MethodContext, StepInfo, build_method
from sslbench.nn.losses import ce_dice_loss, dice_loss
from sslbench.nn.ramps import sigmoid_rampup
from sslbench.report.evaluation import Window, predict_volume
from sslbench.train.volumes import REFLECTIONS, _starts, crop_batch, reflect_indices, release_padding, volume_data


# ------------------------------------------------------------------ crops and reflections
def test_release_padding_follows_random_crop() -> None:
    # any axis no longer than the patch: every axis gets max((p - s) // 2 + 3, 0) on both sides
    assert release_padding((70, 100, 116), (80, 112, 112)) == [(8, 8), (9, 9), (1, 1)]
    assert release_padding((70, 100, 120), (80, 112, 112))[2] == (0, 0)  # (112 - 120) // 2 + 3 < 0
    assert release_padding((80, 130, 130), (80, 112, 112)) == [(3, 3), (0, 0), (0, 0)]  # "<=": equal pads
    assert release_padding((81, 113, 113), (80, 112, 112)) == [(0, 0)] * 3


def test_crop_starts_use_numpys_exclusive_bound() -> None:
    g = torch.Generator().manual_seed(0)
    draws = _starts(torch.full((4000,), 3, dtype=torch.long), g)
    assert set(draws.tolist()) == {0, 1, 2}  # randint(0, 3): never 3
    counts = np.bincount(draws.numpy(), minlength=3) / draws.numel()
    assert np.allclose(counts, 1 / 3, atol=0.03), counts  # uniform


def _release_reflections(v: np.ndarray) -> list[np.ndarray]:
    """What UA-MT's RandomRotFlip makes of an in-plane array: rot90 by k, then a flip along axis 0 or 1."""
    return [np.flip(np.rot90(v, k), axis=a) for k in range(4) for a in range(2)]


def test_reflections_are_the_releases_four_and_never_the_identity() -> None:
    v = np.arange(5 * 7).reshape(5, 7)  # not square: the transposes swap its sizes
    release = {(r.shape, r.tobytes()) for r in _release_reflections(v)}
    assert len(release) == 4 and (v.shape, v.tobytes()) not in release
    ours = set()
    size = 4
    for kind in range(len(REFLECTIONS)):
        hw = torch.tensor([[5, 7]])
        reflected_shape = (7, 5) if kind >= 2 else (5, 7)
        for s0 in range(reflected_shape[0] - size + 1):
            for s1 in range(reflected_shape[1] - size + 1):
                hi, wi = reflect_indices(torch.tensor([kind]), hw, torch.tensor([[s0, s1]]), size)
                crop = v[hi[0].numpy(), wi[0].numpy()]
                # the crop at (s0, s1) of one of the release's reflected arrays
                match = [r for r in _release_reflections(v) if r.shape == reflected_shape
                         and np.array_equal(r[s0:s0 + size, s1:s1 + size], crop)]
                assert match, (REFLECTIONS[kind], s0, s1)
        full = v[:4, :4]
        hi, wi = reflect_indices(torch.tensor([kind]), torch.tensor([[4, 4]]), torch.tensor([[0, 0]]), 4)
        ours.add(full[hi[0].numpy(), wi[0].numpy()].tobytes())
    assert ours == {r.tobytes() for r in _release_reflections(full)}  # all four, each once


def test_crop_batch_keeps_image_and_label_together_and_inside_the_volume() -> None:
    rng = np.random.default_rng(0)
    vols = []
    for shape in ((20, 36, 40), (18, 40, 34)):
        image = rng.standard_normal(shape).astype(np.float32)
        vols.append((image, (image > 0).astype(np.uint8)))
    data = volume_data(vols, [0], [1], (16, 32, 32), torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    for augment in (False, True):
        for _ in range(20):
            idx = torch.tensor([0, 1, 1, 0])
            x, y = crop_batch(data, idx, g, augment)
            assert x.shape == (4, 1, 16, 32, 32) and y.shape == (4, 16, 32, 32)
            assert torch.equal((x[:, 0] > 0).long(), y)  # the same voxels
            for b in range(4):  # every voxel from its volume (the padding is zeros: none at this size)
                src = set(np.round(vols[int(idx[b])][0].astype(np.float16).ravel().astype(np.float64), 6).tolist())
                got = set(np.round(x[b, 0].numpy().astype(np.float64).ravel(), 6).tolist())
                assert got <= src
    # without augmentation the crop is a plain block of the volume
    x, _ = crop_batch(data, torch.tensor([0]), torch.Generator().manual_seed(2), False)
    v = torch.from_numpy(vols[0][0]).half().float()
    hits = [(d, h, w) for d in range(5) for h in range(5) for w in range(9)
            if torch.equal(v[d:d + 16, h:h + 32, w:w + 32], x[0, 0])]
    assert len(hits) == 1


# ------------------------------------------------------------------ losses, ramps, networks
def test_dice_loss_in_3d_is_ua_mts_foreground_dice() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 6, 6)
    target = torch.randint(0, 2, (2, 4, 6, 6))
    p1 = torch.softmax(logits, 1)[:, 1]
    t = (target == 1).float()
    release = 1 - (2 * (p1 * t).sum() + 1e-5) / ((p1 * p1).sum() + (t * t).sum() + 1e-5)
    assert dice_loss(logits, target).item() == pytest.approx(release.item(), abs=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert ce_dice_loss(logits, target).item() == pytest.approx(0.5 * (ce + release).item(), abs=1e-6)
    # 2-D stays SSL4MIS's: every class, background included
    l2, t2 = logits[:, :, 0], target[:, 0]
    probs = torch.softmax(l2, 1)
    per = [1 - (2 * (probs[:, c] * (t2 == c)).sum() + 1e-5) / ((probs[:, c] ** 2).sum() + (t2 == c).sum() + 1e-5)
           for c in range(2)]
    assert dice_loss(l2, t2).item() == pytest.approx(float(sum(per) / 2), abs=1e-6)


def test_ua_mt_la_consistency_ramp() -> None:
    step = StepInfo("train", 3000, 6000)
    assert step.consistency_weight(0.1, ramp_steps=40) == pytest.approx(0.1 * sigmoid_rampup(3000 // 150, 40))
    assert step.consistency_weight(0.1, ramp_steps=40) == pytest.approx(0.1 * math.exp(-5 * 0.25))
    assert StepInfo("train", 149, 6000).consistency_weight(0.1, ramp_steps=40) == pytest.approx(0.1 * math.exp(-5))


def _uamt_3d():  # noqa: ANN202
    cfg = resolve_config(METHODS.get("uamt").Config, "quick", "synthetic-la", "uamt",
                         ["train.base_width=4", "train.iterations=6000"])
    torch.manual_seed(0)
    return build_method(METHODS.get("uamt"), cfg.method, cfg.train, 2, torch.device("cpu"))


def test_uamt_in_3d_uses_the_la_ramp_and_vnet(monkeypatch: pytest.MonkeyPatch) -> None:
    from sslbench.method import Batch
    from sslbench.nn.vnet import VNet

    method = _uamt_3d()
    assert isinstance(method.student, VNet) and method.student.dropout  # UA-MT trains has_dropout=True
    x = torch.randn(4, 1, 16, 32, 32)
    batch = Batch(x[:2], torch.randint(0, 2, (2, 16, 32, 32)), x[2:])
    out = method.training_step(batch, StepInfo("train", 3100, 6000, generator=torch.Generator().manual_seed(0)))
    # iteration 3100: the release's 3100 // 150 = 20 of 40 quanta (t = 0.5), not 103 of 200 (t = 0.515)
    assert out["cons_weight"] == pytest.approx(0.1 * sigmoid_rampup(20, 40))
    assert out["loss_cons"].requires_grad and out["loss_sup"].requires_grad


def test_uamt_3d_step_matches_the_la_release_on_fixed_tensors() -> None:
    """The LA script's terms recomputed as it writes them: T = 8 noisy teacher passes on the unlabeled
    batch repeated twice, ``preds.reshape(T, B, 2, ...)`` averaged, entropy with 1e-6, the mask
    ``uncertainty < (0.75 + 0.25 * sigmoid_rampup(iter, max)) * ln 2``, the consistency
    ``sum(mask * d) / (2 sum(mask) + 1e-16)`` of the softmax MSE, weighted by ``0.1 * ramp(iter // 150, 40)``."""
    from sslbench.method import Batch

    method = _uamt_3d()
    with torch.no_grad():  # confident networks, so that the ln 2 threshold keeps some voxels and not all
        method.student.head.weight.mul_(20)
        method.teacher.module.head.weight.mul_(20)
    torch.manual_seed(3)
    x = torch.randn(4, 1, 16, 32, 32)
    y = torch.randint(0, 2, (2, 16, 32, 32))
    batch = Batch(x[:2], y, x[2:])
    it, total = 3100, 6000
    torch.manual_seed(5)
    out = method.training_step(batch, StepInfo("train", it, total))
    torch.manual_seed(5)  # the same draws in the same order: student dropout, teacher noise, T passes
    student = method.student(batch.joint())
    teacher = method.teacher.module
    noise = lambda v: v + torch.clamp(torch.randn_like(v) * 0.1, -0.2, 0.2)  # noqa: E731
    with torch.no_grad():
        ema_output = teacher(noise(batch.x_u))
        volume_batch_r = batch.x_u.repeat(2, 1, 1, 1, 1)
        stride = volume_batch_r.shape[0] // 2
        preds = torch.cat([teacher(noise(volume_batch_r)) for _ in range(8 // 2)])
        preds = torch.softmax(preds, dim=1).reshape(8, stride, 2, 16, 32, 32).mean(0)
        uncertainty = -1.0 * torch.sum(preds * torch.log(preds + 1e-6), dim=1, keepdim=True)
    threshold = (0.75 + 0.25 * sigmoid_rampup(it, total)) * math.log(2)
    mask = (uncertainty < threshold).float()
    assert 0.05 < float(mask.mean()) < 0.95, float(mask.mean())
    dist = (torch.softmax(student[2:], 1) - torch.softmax(ema_output, 1)) ** 2
    cons = torch.sum(mask * dist) / (2 * torch.sum(mask) + 1e-16)
    weight = 0.1 * sigmoid_rampup(it // 150, 40)
    assert out["loss_cons"].item() == pytest.approx((weight * cons).item(), rel=1e-5, abs=1e-9)
    assert out["certain_fraction"].item() == pytest.approx(float(mask.mean()), abs=1e-7)
    p1 = torch.softmax(student[:2], 1)[:, 1]
    t = (y == 1).float()
    dice = 1 - (2 * (p1 * t).sum() + 1e-5) / ((p1 * p1).sum() + (t * t).sum() + 1e-5)
    sup = 0.5 * (torch.nn.functional.cross_entropy(student[:2], y) + dice)
    assert out["loss_sup"].item() == pytest.approx(sup.item(), rel=1e-5)


def test_the_3d_track_holds_exactly_the_six_methods_of_its_docs_table() -> None:
    """docs/3d-track.md's table (UNet-L / UNet-F, MT, UA-MT, CPS, BCP): a method is in 3-D only where its release (or SSL4MIS's 3-D script)
    runs LA. ``dims`` is inherited, so a method built on a 3-D one must say so itself (ABD, on BCP,
    has no LA release: it was let through and failed mid-step on a 5-D batch)."""
    shipped = [name for name in METHODS.names() if METHODS.get(name).__module__.startswith("sslbench.methods.")]
    three = {name for name in shipped if 3 in METHODS.get(name).dims}  # other tests register plugins of their own
    assert three == {"unet-f", "unet-l", "mt", "uamt", "cps", "bcp"}
    cfg = resolve_config(METHODS.get("abd").Config, "quick", "synthetic-la", "abd")
    with pytest.raises(ConfigError, match="written for 2-D training, not 3-D"):
        build_method(METHODS.get("abd"), cfg.method, cfg.train, 2, torch.device("cpu"))


def test_a_2d_only_method_is_refused_in_3d_and_3d_keys_in_2d() -> None:
    cfg = resolve_config(METHODS.get("cct").Config, "quick", "synthetic-la", "cct")
    with pytest.raises(ConfigError, match="written for 2-D training, not 3-D"):
        build_method(METHODS.get("cct"), cfg.method, cfg.train, 2, torch.device("cpu"))
    with pytest.raises(ConfigError, match="applies to 3-D training only"):
        resolve_config(METHODS.get("mt").Config, "quick", "synthetic-cardiac", "mt", ["train.patch_size=[16,32,32]"])
    with pytest.raises(ConfigError, match="square in-plane patch"):
        resolve_config(METHODS.get("mt").Config, "quick", "synthetic-la", "mt", ["train.patch_size=[16,32,48]"])
    two = resolve_config(METHODS.get("mt").Config, "quick", "synthetic-cardiac", "mt").to_dict()["train"]
    assert "dims" not in two and "patch_size" not in two  # 2-D configurations keep their hash
    three = cfg.to_dict()["train"]
    assert three["dims"] == 3 and three["patch_size"] == [16, 32, 32]


def test_context_builds_vnet_in_3d() -> None:
    from sslbench.nn.vnet import VNet

    ctx = MethodContext(1, 2, 32, torch.device("cpu"), base_width=16, dims=3)
    net = ctx.build_unet()
    assert isinstance(net, VNet) and sum(p.numel() for p in net.parameters()) == 9_448_866


# ------------------------------------------------------------------ inference
class _Threshold:
    """A stand-in method whose logits say "foreground where the input is positive", any axis order
    error would show as a mismatch (the volume is anisotropic and not symmetric)."""

    class ctx:  # noqa: N801
        num_classes = 2

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[2:] == (8, 16, 24), x.shape  # (D, H, W) windows
        return torch.cat([-x, x], dim=1)


def test_sliding_window_predicts_in_our_axis_order() -> None:
    rng = np.random.default_rng(3)
    image = rng.standard_normal((13, 30, 41)).astype(np.float32)
    pred = predict_volume(_Threshold(), image, Window((8, 16, 24), 5, 3), torch.device("cpu"))  # type: ignore[arg-type]
    assert pred.shape == image.shape and np.array_equal(pred, (image > 0).astype(np.uint8))


# ------------------------------------------------------------------ the LA plugin
def _fake_la(root: Path, shapes: dict[str, tuple[int, int, int]], train: list[str], test: list[str]) -> Path:
    import h5py

    rng = np.random.default_rng(0)
    for case, shape in shapes.items():
        folder = root / "2018LA_Seg_Training Set" / case
        folder.mkdir(parents=True)
        image = rng.standard_normal(shape).astype(np.float32)
        label = (ndi_blob(shape)).astype(np.uint8)
        image[label == 1] += 2.0
        with h5py.File(folder / "mri_norm2.h5", "w") as fh:
            fh.create_dataset("image", data=image, compression="gzip")
            fh.create_dataset("label", data=label, compression="gzip")
    (root / "train.list").write_text("\n".join(train) + "\n")
    (root / "test.list").write_text("\n".join(test) + "\n")
    return root


def ndi_blob(shape: tuple[int, int, int]) -> np.ndarray:
    xx, yy, zz = np.ogrid[:shape[0], :shape[1], :shape[2]]
    c = [s / 2 for s in shape]
    return ((xx - c[0]) / (shape[0] / 4)) ** 2 + ((yy - c[1]) / (shape[1] / 4)) ** 2 + ((zz - c[2]) / (shape[2] / 4)) ** 2 <= 1


def test_la_plugin_prepares_the_releases_layout(tmp_path: Path) -> None:
    import h5py

    from sslbench.cache import prepare

    shapes = {f"CASE{i}": (40 + i, 36, 20) for i in range(5)}  # the release's (W, H, D)
    raw = _fake_la(tmp_path / "data", shapes, ["CASE3", "CASE0", "CASE1"], ["CASE2", "CASE4"])
    ds = prepare("la", raw=raw, cache_root=tmp_path / "cache")
    assert [c.id for c in ds.split_cases("train")] == ["CASE3", "CASE0", "CASE1"]  # list order: paper splits
    assert [c.id for c in ds.split_cases("test")] == ["CASE2", "CASE4"] and not ds.split_cases("val")
    image, label = ds.volume("CASE3")
    with h5py.File(raw / "2018LA_Seg_Training Set" / "CASE3" / "mri_norm2.h5") as fh:
        assert image.shape == (20, 36, 43)
        assert np.array_equal(label, fh["label"][()].transpose(2, 1, 0))
        assert np.allclose(image, fh["image"][()].transpose(2, 1, 0), atol=2e-3)  # float16 storage
    assert ds.cases[0].spacing is None  # no spacing in the h5: distances in voxels, as LA papers


def test_la_plugin_refuses_bad_releases(tmp_path: Path) -> None:
    import h5py

    from sslbench.cache import prepare

    raw = _fake_la(tmp_path / "a", {"A": (40, 36, 20), "B": (40, 36, 20)}, ["A", "B"], ["B"])
    with pytest.raises(DataError, match="case B is also in train.list"):
        prepare("la", raw=raw, cache_root=tmp_path / "c1")
    raw = _fake_la(tmp_path / "b", {"A": (40, 36, 20), "B": (40, 36, 20)}, ["A"], ["B"])
    with h5py.File(raw / "2018LA_Seg_Training Set" / "B" / "mri_norm2.h5", "r+") as fh:
        fh["label"][0, 0, 0] = 3
    with pytest.raises(DataError, match=r"mri_norm2.h5: label values \[0, 1, 3\] are not 0 / 1"):
        prepare("la", raw=raw, cache_root=tmp_path / "c2")
    (raw / "test.list").unlink()
    with pytest.raises(DataError, match="test.list: split list not found"):
        prepare("la", raw=raw, cache_root=tmp_path / "c3")
    assert not (tmp_path / "c3" / "la").exists()


@pytest.mark.slow
def test_a_3d_run_end_to_end_on_la_layout(tmp_path: Path) -> None:
    """UNet-L and UA-MT on a tiny LA-layout folder: no validation cases, the last weights evaluated
    by the sliding window, a record that states the crop."""
    from sslbench.cli import main

    shapes = {f"CASE{i}": (40, 36, 20) for i in range(6)}
    raw = _fake_la(tmp_path / "data", shapes, [f"CASE{i}" for i in range(4)], ["CASE4", "CASE5"])
    env = {"SSLBENCH_CACHE": str(tmp_path / "cache")}
    runner = CliRunner()
    res = runner.invoke(main, ["prepare", "la", "--raw", str(raw)], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["run", "--dataset", "la", "--methods", "unet-l,uamt", "--ratios", "50",
                               "--results", str(tmp_path / "r"), "--set", "train.iterations=3",
                               "--set", "train.base_width=4", "--set", "train.patch_size=[16,32,32]",
                               "--set", "train.stride_xy=16", "--set", "train.stride_z=8"], env=env)
    assert res.exit_code == 0, res.output
    records = {json.loads(p.read_text())["method"]: json.loads(p.read_text())
               for p in (tmp_path / "r").rglob("run.json")}
    assert set(records) == {"unet-l", "uamt"}
    for rec in records.values():
        assert rec["schedule"]["image_size"] == "16x32x32" and rec["selection"]["rule"] == "last"
        assert rec["labeled_cases"] == ["CASE0", "CASE1"] and rec["n_eval_volumes"] == 2
        assert rec["metric_policy"]["spacing"] == "voxels"
        assert 0.0 <= rec["summary"]["dice"] <= 1.0


LA_DATA = os.environ.get("SSLBENCH_LA_DATA", "")


@pytest.mark.skipif(not LA_DATA or not Path(LA_DATA, "train.list").is_file(),
                    reason="real LA data absent (set SSLBENCH_LA_DATA to UA-MT's data folder)")
def test_real_la_prepares_as_the_release_splits_it(tmp_path: Path) -> None:
    import h5py

    from sslbench.cache import prepare

    ds = prepare("la", raw=Path(LA_DATA), cache_root=tmp_path)
    train, test = ds.split_cases("train"), ds.split_cases("test")
    assert len(train) == 80 and len(test) == 20
    first = Path(LA_DATA, "train.list").read_text().split()[0]
    assert train[0].id == first
    image, label = ds.volume(first)
    with h5py.File(Path(LA_DATA, "2018LA_Seg_Training Set", first, "mri_norm2.h5")) as fh:
        assert np.array_equal(label, fh["label"][()].transpose(2, 1, 0))
        assert image.shape == fh["image"].shape[::-1]


def test_cps_in_3d_crosses_hard_pseudo_labels_of_two_vnets() -> None:
    from sslbench.method import Batch
    from sslbench.nn.vnet import VNet

    cfg = resolve_config(METHODS.get("cps").Config, "quick", "synthetic-la", "cps", ["train.base_width=4"])
    torch.manual_seed(0)
    method = build_method(METHODS.get("cps"), cfg.method, cfg.train, 2, torch.device("cpu"))
    assert isinstance(method.student, VNet) and isinstance(method.model2, VNet)
    method.eval()  # dropout off: the losses are functions of the weights and the batch
    x = torch.randn(4, 1, 16, 32, 32)
    y = torch.randint(0, 2, (2, 16, 32, 32))
    out = method.training_step(Batch(x[:2], y, x[2:]), StepInfo("train", 0, 10, force_ramps=True))
    l1, l2 = method.student(x), method.model2(x)
    ce = torch.nn.functional.cross_entropy
    assert out["loss_cps1"].item() == pytest.approx(0.1 * ce(l1[2:], l2[2:].argmax(1)).item(), rel=1e-5)
    assert out["loss_cps2"].item() == pytest.approx(0.1 * ce(l2[2:], l1[2:].argmax(1)).item(), rel=1e-5)
    assert out["loss_sup1"].item() == pytest.approx(ce_dice_loss(l1[:2], y).item(), rel=1e-5)


def test_reachable_crops_are_exactly_the_releases() -> None:
    """Every crop RandomRotFlip + RandomCrop can make of a volume, and no other: in-plane coordinates
    encoded in the voxel values, 3000 draws against the release's set (4 reflections x its starts)."""
    h, w, p = 6, 8, 4
    plane = (np.arange(h)[:, None] * 16 + np.arange(w)[None, :]).astype(np.float32)
    image = np.repeat(plane[None], 17, axis=0)  # depth 17 > 16: no padding, one depth start
    data = volume_data([(image, np.zeros(image.shape, np.uint8))], [0], [], (16, p, p), torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(100):
        x, _ = crop_batch(data, torch.zeros(30, dtype=torch.long), g, True)
        seen |= {x[b, 0, 0].numpy().tobytes() for b in range(30)}
    release = set()
    for r in _release_reflections(plane):
        for s0 in range(r.shape[0] - p):        # randint(0, size - patch): exclusive
            for s1 in range(r.shape[1] - p):
                release.add(np.ascontiguousarray(r[s0:s0 + p, s1:s1 + p]).tobytes())
    assert seen == release and len(release) == 32  # 4 reflections x 2 x 4 starts


def test_mt_in_3d_ramps_like_ua_mts_la_script() -> None:
    from sslbench.method import Batch

    cfg = resolve_config(METHODS.get("mt").Config, "quick", "synthetic-la", "mt", ["train.base_width=4"])
    torch.manual_seed(0)
    method = build_method(METHODS.get("mt"), cfg.method, cfg.train, 2, torch.device("cpu"))
    x = torch.randn(4, 1, 16, 32, 32)
    out = method.training_step(Batch(x[:2], torch.randint(0, 2, (2, 16, 32, 32)), x[2:]),
                               StepInfo("train", 3100, 6000, generator=torch.Generator().manual_seed(0)))
    assert out["cons_weight"] == pytest.approx(0.1 * sigmoid_rampup(3100 // 150, 40))


# ------------------------------------------------------------------ BCP on LA (code/LA_BCP_train.py)
def _bcp_3d():  # noqa: ANN202
    from torch import nn

    cfg = resolve_config(METHODS.get("bcp").Config, "quick", "synthetic-la", "bcp", ["train.base_width=4"])
    torch.manual_seed(0)
    method = build_method(METHODS.get("bcp"), cfg.method, cfg.train, 2, torch.device("cpu"))
    for m in method.modules():  # dropout off: the losses are functions of the weights and the batch
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = 0.0
    return method


def test_bcp_cuboid_is_two_thirds_per_axis_at_an_exclusive_random_corner() -> None:
    from sslbench.methods.bcp import cuboid_mask

    g = torch.Generator().manual_seed(0)
    corners = set()
    for _ in range(400):
        inside = cuboid_mask((16, 32, 20), g, torch.device("cpu")) == 0
        idx = inside.nonzero()
        lo, hi = idx.min(0).values, idx.max(0).values + 1
        assert (hi - lo).tolist() == [10, 21, 13] and int(inside.sum()) == 10 * 21 * 13  # int(2/3 * size)
        corners.add(tuple(lo.tolist()))
    assert {c[0] for c in corners} == set(range(16 - 10)) and {c[2] for c in corners} == set(range(20 - 13))


def _release_mask_dice(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> float:
    """BCP's LA mask_DiceLoss written out per sample and class."""
    probs = torch.softmax(logits, 1)
    values = []
    for n in range(logits.shape[0]):
        m = torch.ones_like(target[n], dtype=torch.float32) if mask is None else mask.expand(target.shape)[n].float()
        for c in range(logits.shape[1]):
            y = (target[n] == c).float()
            inter = (probs[n, c] * y * m).sum()
            union = ((probs[n, c] + y) * m).sum()
            values.append(float((2 * inter + 1e-5) / (union + 1e-5)))
    return 1 - sum(values) / len(values)


def test_bcp_sample_dice_is_the_la_mask_dice_loss() -> None:
    from sslbench.methods.bcp import sample_dice_loss

    torch.manual_seed(1)
    logits, target = torch.randn(2, 2, 4, 6, 6), torch.randint(0, 2, (2, 4, 6, 6))
    mask = (torch.rand(4, 6, 6) > 0.4).float()
    assert sample_dice_loss(logits, target).item() == pytest.approx(_release_mask_dice(logits, target, None), abs=1e-6)
    assert sample_dice_loss(logits, target, mask).item() == pytest.approx(
        _release_mask_dice(logits, target, mask), abs=1e-6)


def test_largest_component_in_3d_is_26_connected_like_skimage() -> None:
    from scipy import ndimage

    from sslbench.nn.components import keep_largest_per_class

    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = (rng.random((2, 7, 9, 8)) > 0.62).astype(np.int64)
        kept = keep_largest_per_class(torch.from_numpy(labels), 2).numpy()
        for n in range(2):
            comp, count = ndimage.label(labels[n], structure=np.ones((3, 3, 3)))  # skimage's default in 3-D
            if count:
                sizes = np.bincount(comp.ravel())[1:]
                assert np.array_equal(kept[n], (comp == np.argmax(sizes) + 1).astype(np.int64))


def test_bcp_3d_losses_are_the_la_scripts() -> None:
    from sslbench.method import Batch
    from sslbench.methods.bcp import cuboid_mask

    method = _bcp_3d()
    assert method.teacher.buffers_too is False  # LA's EMA averages the parameters only
    torch.manual_seed(2)
    x = torch.randn(4, 1, 16, 32, 32)
    y = torch.randint(0, 2, (2, 16, 32, 32))
    ce = torch.nn.functional.cross_entropy
    # pre-training: a outside, b inside the cuboid; (CE + Dice) / 2 of the mixed label over the crop
    g = torch.Generator().manual_seed(5)
    mask = cuboid_mask((16, 32, 32), torch.Generator().manual_seed(5), torch.device("cpu"))
    out = method.training_step(Batch(x[:2], y), StepInfo("pretrain", 0, 10, generator=g))
    mixed = (y[0] * mask + y[1] * (1 - mask)).long()[None]
    logits = method.student(x[:1] * mask + x[1:2] * (1 - mask))
    expected = (ce(logits, mixed) + _release_mask_dice(logits, mixed, None)) / 2
    assert out["loss_mix"].item() == pytest.approx(expected.item(), rel=1e-5)
    # self-training: the teacher's foreground >= 0.5, largest component, both directions weighted
    method.current_stage = "train"
    g = torch.Generator().manual_seed(6)
    mask = cuboid_mask((16, 32, 32), torch.Generator().manual_seed(6), torch.device("cpu"))
    xl, xu = x[:2], torch.randn(2, 1, 16, 32, 32)
    out = method.training_step(Batch(xl, y, xu), StepInfo("train", 0, 10, generator=g))
    pa, pb = method.pseudo_labels(xu[:1], xu[1:])

    def part(logits: torch.Tensor, outer: torch.Tensor, inner: torch.Tensor, wo: float, wi: float) -> torch.Tensor:
        m = mask.expand(outer.shape)
        dice = wo * _release_mask_dice(logits, outer, mask) + wi * _release_mask_dice(logits, inner, 1 - mask)
        c = (wo * (ce(logits, outer, reduction="none") * m).sum() / m.sum()
             + wi * (ce(logits, inner, reduction="none") * (1 - m)).sum() / (1 - m).sum())
        return (dice + c) / 2

    loss_l = part(method.student(xl[:1] * mask + xu[:1] * (1 - mask)), y[:1], pa, 1.0, 0.5)
    loss_u = part(method.student(xu[1:] * mask + xl[1:] * (1 - mask)), pb, y[1:], 0.5, 1.0)
    assert out["loss_mix"].item() == pytest.approx((loss_l + loss_u).item(), rel=1e-5)


def test_bcp_3d_pseudo_labels_are_foreground_at_half_then_the_largest_component() -> None:
    method = _bcp_3d()
    p = torch.full((1, 8, 8, 8), 0.1)
    p[0, 0:4, 0:4, 0:4] = 0.55   # the largest confident component (64 voxels)
    p[0, 6:8, 6:8, 6:8] = 0.95   # confident but smaller (8 voxels, not touching)
    p[0, 4, 0:4, 0:4] = 0.45     # below one half: not foreground
    logits = torch.stack([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)

    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return logits

    method.teacher = Fixed()  # type: ignore[assignment]
    labels, = method.pseudo_labels(torch.zeros(1, 1, 8, 8, 8))
    expected = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    expected[0, 0:4, 0:4, 0:4] = 1
    assert torch.equal(labels, expected)


def test_bench_speed_times_the_3d_track() -> None:
    from sslbench.run.speed import render, speed

    report = speed(["uamt"], "quick", ["train.base_width=4"], "cpu", steps=1, warmup=0, log=lambda m: None,
                   dataset="synthetic-la")
    assert [r["method"] for r in report["rows"]] == ["uamt"]
    assert report["rows"][0]["image_size"] == "16x32x32" and report["rows"][0]["batch"] == 4
    assert report["evaluation"]["eval_windows_per_s"] > 0
    assert "sliding window of 16x32x32 voxels" in render(report, "markdown")


@pytest.mark.slow
def test_3d_training_on_an_nnunet_format_dataset(tmp_path: Path) -> None:
    """Any nnU-Net-format dataset trains in 3-D with --set train.dims=3: three classes, spacing from the
    headers (distances in mm), validation cases present (best selection)."""
    from sslbench.cli import main
    from tests.test_nifti import write_nnunet

    raw = write_nnunet(tmp_path / "Dataset001_Test", n=8)
    env = {"SSLBENCH_CACHE": str(tmp_path / "cache")}
    runner = CliRunner()
    res = runner.invoke(main, ["prepare", "mine", "--raw", str(raw), "--format", "nnunet"], env=env)
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["run", "--dataset", "mine", "--methods", "mt", "--ratios", "50", "--results",
                               str(tmp_path / "r"), "--set", "train.dims=3", "--set", "train.patch_size=[16,16,16]",
                               "--set", "train.iterations=3", "--set", "train.val_every=3", "--set",
                               "train.base_width=4", "--set", "train.batch_size=4", "--set", "train.labeled_bs=2",
                               "--set", "train.stride_xy=8", "--set", "train.stride_z=8"], env=env)
    assert res.exit_code == 0, res.output
    rec = json.loads(next((tmp_path / "r").rglob("run.json")).read_text())
    assert rec["schedule"]["image_size"] == "16x16x16" and rec["selection"]["rule"] == "best"
    assert rec["classes"] == ["organ", "lesion"] and rec["metric_policy"]["spacing"] == "mm from the dataset"


def test_a_non_square_crop_without_augmentation_is_the_block_it_names() -> None:
    rng = np.random.default_rng(4)
    image = rng.standard_normal((20, 40, 56)).astype(np.float32)
    data = volume_data([(image, (image > 0).astype(np.uint8))], [0], [], (16, 32, 48), torch.device("cpu"))
    x, _ = crop_batch(data, torch.tensor([0]), torch.Generator().manual_seed(0), False)
    v = torch.from_numpy(image).half().float()
    assert x.shape == (1, 1, 16, 32, 48)
    assert sum(torch.equal(v[d:d + 16, h:h + 32, w:w + 48], x[0, 0])
               for d in range(5) for h in range(9) for w in range(9)) == 1


def test_volume_batches_hold_labeled_bs_labeled_and_the_rest_unlabeled() -> None:
    from sslbench.train.volumes import VolumeBatchSource

    vols = [(np.full((20, 36, 36), float(i), np.float32), np.zeros((20, 36, 36), np.uint8)) for i in range(6)]
    data = volume_data(vols, [0, 1], [2, 3, 4, 5], (16, 32, 32), torch.device("cpu"))
    cfg = resolve_config(METHODS.get("mt").Config, "quick", "synthetic-la", "mt").train
    batch = VolumeBatchSource(data, cfg, torch.Generator().manual_seed(0), _uamt_3d()).next("train")
    assert batch.x_l.shape[0] == 2 and batch.x_u.shape[0] == 2  # batch 4 with 2 labeled (UA-MT)
    assert set(batch.x_l[:, 0, 0, 0, 0].tolist()) <= {0.0, 1.0} and set(batch.x_u[:, 0, 0, 0, 0].tolist()) <= {2.0, 3.0, 4.0, 5.0}


def test_the_published_schedules_resolve_as_the_releases() -> None:
    uamt = resolve_config(METHODS.get("uamt").Config, "uamt", "la", "uamt").train
    assert (uamt.dims, uamt.patch_size, uamt.stride_xy, uamt.stride_z) == (3, (80, 112, 112), 18, 4)
    assert (uamt.iterations, uamt.batch_size, uamt.labeled_bs, uamt.lr, uamt.lr_schedule, uamt.lr_step,
            uamt.lr_gamma, uamt.select, uamt.amp, uamt.momentum, uamt.weight_decay) == \
        (6000, 4, 2, 0.01, "step", 2500, 0.1, "last", False, 0.9, 1e-4)
    bcp = resolve_config(METHODS.get("bcp").Config, "uamt", "la", "bcp").train
    assert (bcp.pretrain_iterations, bcp.iterations, bcp.batch_size, bcp.labeled_bs, bcp.lr_schedule) == \
        (2000, 15000, 8, 4, "step")


def test_sliding_window_strides_go_to_their_axes() -> None:
    """stride_z acts on D, stride_xy on H and W: the window count is the release's product."""
    calls = []

    class Counting(_Threshold):
        def predict(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.shape[0])
            return super().predict(x)

    image = np.random.default_rng(0).standard_normal((20, 30, 41)).astype(np.float32)
    predict_volume(Counting(), image, Window((8, 16, 24), 5, 3), torch.device("cpu"))  # type: ignore[arg-type]
    along = [math.ceil((20 - 8) / 3) + 1, math.ceil((30 - 16) / 5) + 1, math.ceil((41 - 24) / 5) + 1]
    assert sum(calls) == along[0] * along[1] * along[2]


def test_cps_in_3d_initialises_as_ssl4mis_3d_script() -> None:
    cfg = resolve_config(METHODS.get("cps").Config, "quick", "synthetic-la", "cps", ["train.base_width=16"])
    torch.manual_seed(0)
    method = build_method(METHODS.get("cps"), cfg.method, cfg.train, 2, torch.device("cpu"))
    w1 = method.student.encoder[1][0].weight  # Conv3d 16 -> 32... fan_in 32 * 27
    w2 = method.model2.encoder[1][0].weight
    fan_in, fan_out = w1.shape[1] * 27, w1.shape[0] * 27
    assert float(w1.std()) == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)            # kaiming_normal_
    assert float(w2.std()) == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.05)  # xavier_normal_
    bn = method.model2.encoder[1][1]
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.bias, torch.zeros_like(bn.bias))


def test_la_plugin_names_the_list_of_a_control_character_id_and_a_float32_overflow(tmp_path: Path) -> None:
    import h5py

    from sslbench.cache import prepare

    raw = _fake_la(tmp_path / "a", {"A": (40, 36, 20), "B": (40, 36, 20)}, ["A"], ["B"])
    (raw / "train.list").write_text("A\nx\x9by\n")
    with pytest.raises(DataError, match=r"train.list: case id 'x\\x9by' is not a plain file name"):
        prepare("la", raw=raw, cache_root=tmp_path / "c1")
    (raw / "train.list").write_text("A\n")
    path = raw / "2018LA_Seg_Training Set" / "A" / "mri_norm2.h5"
    with h5py.File(path, "r+") as fh:
        del fh["image"]
        fh.create_dataset("image", data=np.full((40, 36, 20), 1e300))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning before the one line
        with pytest.raises(DataError, match="image contains NaN or Inf"):
            prepare("la", raw=raw, cache_root=tmp_path / "c2")


def test_a_run_without_validation_logs_and_shows_no_score(tmp_path: Path) -> None:
    """LA has no validation split: the trainer validates nothing, so its log holds no NaN score (JSON
    has no NaN) and the last weights are the selected ones."""
    from sslbench.base.run_files import RunFiles
    from sslbench.train.trainer import Trainer

    cfg = resolve_config(METHODS.get("unet-l").Config, "quick", "synthetic-la", "unet-l",
                         ["train.base_width=4", "train.iterations=4", "train.val_every=2", "train.log_every=1"])
    torch.manual_seed(0)
    method = build_method(METHODS.get("unet-l"), cfg.method, cfg.train, 2, torch.device("cpu"))
    rng = np.random.default_rng(0)
    vols = []
    for _ in range(2):
        image = rng.standard_normal((20, 36, 36)).astype(np.float32)
        vols.append((image, (image > 0).astype(np.uint8)))
    data = volume_data(vols, [0, 1], [], cfg.train.patch_size, torch.device("cpu"))
    (tmp_path / "run").mkdir()
    trainer = Trainer(method, data, cfg.train, 0, validate=None, files=RunFiles(tmp_path / "run"), progress=False)
    result = trainer.fit()
    logged = [json.loads(line) for line in (tmp_path / "run" / RunFiles.LOG).read_text().splitlines()]
    assert logged and not any("val_dice" in r for r in logged)
    assert result.selected == "last" and result.best_iteration == 4
