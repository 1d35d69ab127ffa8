"""What a plugin can declare about its own structure: its configuration defaults per profile, its own
stage names and lengths, and stages that need no unlabeled batch."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch

from sslbench.base.errors import ConfigError
from sslbench.method import Batch, Losses, MethodConfig, SSLMethod, StepInfo, register_method
from sslbench.nn import ce_dice_loss
from sslbench.run.specs import resolve
from sslbench.testing import TINY, build


@dataclass
class ProbeConfig(MethodConfig):
    alpha: float = 1.0          # a weight
    warmup_iters: int = 3       # the warm-up stage's length


@register_method("structure-probe")
class StructureProbe(SSLMethod[ProbeConfig]):
    """Three stages of its own names; the first is supervised and draws labeled slices only."""

    stages = ("warmup", "selfsup", "train")
    stage_lengths = {"warmup": "method.warmup_iters"}
    labeled_only_stages = ("warmup",)
    defaults = {"train": {"lr": 0.02}, "method": {"alpha": 0.5},
                "profile": {"ssl4mis": {"train": {"lr": 0.03}, "method": {"alpha": 0.25}}}}

    def training_step(self, batch: Batch, step: StepInfo) -> Losses:
        self.seen = getattr(self, "seen", [])
        self.seen.append((step.stage, batch.n_l, None if batch.x_u is None else batch.x_u.shape[0]))
        return {"loss": self.cfg.alpha * ce_dice_loss(self.student(batch.joint())[: batch.n_l], batch.y_l)}


def test_a_plugin_ships_its_own_defaults_per_profile() -> None:
    quick = resolve("structure-probe", "quick", "synthetic-cardiac")
    assert (quick.train.lr, quick.method.alpha) == (0.02, 0.5)
    paper = resolve("structure-probe", "ssl4mis", "synthetic-cardiac")
    assert (paper.train.lr, paper.method.alpha) == (0.03, 0.25)
    assert any(s.endswith("StructureProbe.defaults") for s in quick.sources)
    mine = resolve("structure-probe", "ssl4mis", "synthetic-cardiac", ("method.alpha=2.0",))
    assert mine.method.alpha == 2.0                                     # --set still wins
    other = resolve("mt", "quick", "synthetic-cardiac")
    assert other.train.lr != 0.02                                       # nobody else's


def test_bad_defaults_name_the_class() -> None:
    try:
        StructureProbe.defaults = {"train": {"lrr": 0.1}}
        with pytest.raises(ConfigError, match=r"StructureProbe.defaults: unknown key train.lrr"):
            resolve("structure-probe", "quick", "synthetic-cardiac")
    finally:
        del StructureProbe.defaults
        StructureProbe.defaults = {"train": {"lr": 0.02}, "method": {"alpha": 0.5},
                                   "profile": {"ssl4mis": {"train": {"lr": 0.03}, "method": {"alpha": 0.25}}}}


def test_stages_of_its_own_names_and_lengths_and_a_labeled_only_stage() -> None:
    trainer = build(StructureProbe)
    assert trainer.lengths == {"warmup": 3, "selfsup": TINY.pretrain_iterations, "train": TINY.iterations}
    trainer.fit()
    seen = trainer.method.seen
    stages = [s for s, _, _ in seen]
    assert stages == ["warmup"] * 3 + ["selfsup"] * TINY.pretrain_iterations + ["train"] * TINY.iterations
    unlabeled = TINY.batch_size - TINY.labeled_bs
    assert all(n_l == TINY.labeled_bs and n_u is None for s, n_l, n_u in seen if s == "warmup")
    assert all(n_l == TINY.labeled_bs and n_u == unlabeled for s, n_l, n_u in seen if s != "warmup")


def test_a_labeled_only_stage_leaves_the_unlabeled_sampler_alone() -> None:
    trainer = build(StructureProbe)
    before = trainer.batches.unl_sampler.state_dict()
    trainer.train_step()                                                # a warm-up step
    after = trainer.batches.unl_sampler.state_dict()
    assert all(torch.equal(torch.as_tensor(before[k]), torch.as_tensor(after[k])) for k in before)


def test_a_stage_length_from_a_setting_that_is_no_integer_is_refused() -> None:
    cls = type("BadLength", (StructureProbe,), {"stage_lengths": {"warmup": "method.alpha"}})
    from sslbench.base.errors import BenchError

    with pytest.raises(BenchError, match=r"stage 'warmup' takes its length from 'method.alpha'"):
        build(cls)
    typo = type("TypoLength", (StructureProbe,), {"stage_lengths": {"warmup": "method.warmup_iter"}})
    with pytest.raises(BenchError, match=r"did you mean 'method.warmup_iters'\?"):
        build(typo)


def test_unused_stage_lengths_never_block_a_rerun() -> None:
    from sslbench.run.folder_state import unused_keys

    assert unused_keys("unet-l") == {"train.pretrain_iterations"}
    assert unused_keys("mona") == set()
    assert unused_keys("structure-probe") == set()
    assert dataclasses.is_dataclass(ProbeConfig)
