"""``carry_best_of``: a pre-training stage's best-validated network, not its last, starts the next stage
(BCP's and ABD's releases reload ``pre_train/<model>_best_model.pth``), across a resume too."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from sslbench.testing import TINY, build

CFG = dataclasses.replace(TINY, pretrain_iterations=12, iterations=4, val_every=4, log_every=4)


def _spy(t, snaps: dict[int, dict[str, torch.Tensor]], scores: list[float]):  # type: ignore[no-untyped-def]
    """A validation that returns ``scores`` in turn and keeps the inference weights it saw, per
    pre-training iteration; ``start_stage`` records the weights stage 2 begins with."""
    m = t.method
    seen: dict[str, object] = {}
    it = iter(scores)

    def validate() -> float:
        if t.stage == "pretrain":
            snaps[t.iteration] = {k: v.clone() for k, v in m.inference_net().state_dict().items()}
        return next(it)

    original = m.start_stage

    def start_stage(stage: str) -> None:
        seen["student"] = {k: v.clone() for k, v in m.student.state_dict().items()}
        original(stage)
        seen["teacher"] = {k: v.clone() for k, v in m.teacher.module.state_dict().items()}

    t.validate = validate
    m.start_stage = start_stage  # type: ignore[method-assign]
    return seen


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["bcp", "abd"])
def test_stage_two_starts_from_the_best_validated_pretrained_network(tmp_path: Path, name: str) -> None:
    t = build(name, cfg=CFG, folder=tmp_path)
    snaps: dict[int, dict[str, torch.Tensor]] = {}
    seen = _spy(t, snaps, [0.2, 0.9, 0.4, 0.5])
    result = t.fit()
    assert sorted(snaps) == [4, 8, 12] and not _equal(snaps[8], snaps[12])
    assert _equal(seen["student"], snaps[8])           # the best (iteration 8), not the last (12)
    assert _equal(seen["teacher"], snaps[8])           # and the teacher starts from it too
    if name == "abd":
        assert not _equal(seen["teacher"], t.method.teacher.module.state_dict())  # it moved on in stage 2
    assert result.carried == {"pretrain": {"iteration": 8, "val_dice": 0.9}}
    assert not (tmp_path / "ckpt" / "pretrain-best.pt").exists()  # in last.pt once stage 2 began
    lines = [json.loads(x) for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [(x["stage"], x["iteration"], x["val_dice"]) for x in lines if "val_dice" in x] == [
        ("pretrain", 4, 0.2), ("pretrain", 8, 0.9), ("pretrain", 12, 0.4), ("train", 4, 0.5)]
    assert (result.best_iteration, result.best_score) == (4, 0.5)  # the final stage's own selection


def test_a_resumed_pretraining_still_carries_its_best(tmp_path: Path) -> None:
    first = build("bcp", cfg=CFG, folder=tmp_path)
    snaps: dict[int, dict[str, torch.Tensor]] = {}
    _spy(first, snaps, [0.2, 0.9])                     # killed at the third validation (iteration 12)
    with pytest.raises(StopIteration):
        first.fit()
    assert torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["iteration"] == 8
    second = build("bcp", seed=5, cfg=CFG, folder=tmp_path)
    seen = _spy(second, {}, [0.4, 0.5])
    result = second.fit()
    assert result.resumed_from == 8 and result.carried["pretrain"] == {"iteration": 8, "val_dice": 0.9}
    assert _equal(seen["student"], snaps[8])


def test_without_validation_the_last_pretrained_network_goes_on_and_the_record_says_so(tmp_path: Path) -> None:
    t = build("bcp", cfg=CFG, folder=tmp_path)
    result = t.fit()                                    # no validate callable: scores are NaN
    assert result.carried["pretrain"]["iteration"] == 12 and result.carried["pretrain"]["val_dice"] is None
    assert "last weights" in result.carried["pretrain"]["note"]


def test_abd_validates_the_pretrained_network_even_when_model_2_is_evaluated() -> None:
    t = build("abd", cfg=CFG)
    m = t.method
    m.inference_net_name = "model2"                      # as method.eval_net=model2 sets it
    m.current_stage = "pretrain"
    assert m.inference_net() is m.student               # model_2 is not trained before stage 2
    m.current_stage = "train"
    assert m.inference_net() is m.model_2


def test_a_method_without_carry_best_of_ends_its_pretraining_with_its_last_network(tmp_path: Path) -> None:
    t = build("mona", cfg=dataclasses.replace(CFG, pretrain_iterations=4), folder=tmp_path)
    calls: list[str] = []
    t.validate = lambda: calls.append(t.stage) or 0.5   # type: ignore[func-returns-value]
    result = t.fit()
    assert calls == ["train"] and result.carried == {}  # MONA's GLCon stage is not validated


@pytest.mark.parametrize("damage", ["missing", "truncated", "foreign"])
def test_a_lost_or_unreadable_best_file_lets_the_last_weights_go_on_and_says_so(tmp_path: Path, damage: str) -> None:
    t = build("bcp", cfg=CFG, folder=tmp_path)
    warnings: list[str] = []
    t.warn = warnings.append
    scores = iter([0.9, 0.2, 0.1, 0.5])

    def validate() -> float:
        score = next(scores)
        if t.stage == "pretrain" and t.iteration == 12:   # after its last write (iteration 4), before the carry
            path = tmp_path / "ckpt" / "pretrain-best.pt"
            if damage == "missing":
                path.unlink()
            elif damage == "truncated":
                path.write_bytes(path.read_bytes()[:100])
            else:
                torch.save({"iteration": 4, "weights": {"nonsense": torch.zeros(1)}}, path)
        return score

    t.validate = validate
    result = t.fit()
    note = result.carried["pretrain"]["note"]
    assert result.carried["pretrain"]["iteration"] == 12
    if damage == "missing":
        assert "pretrain-best.pt is missing" in note
    elif damage == "truncated":
        assert "pretrain-best.pt unreadable" in note and "kept as pretrain-best.pt.unusable-" in note
        assert any(p.name.startswith("pretrain-best.pt.unusable-") for p in (tmp_path / "ckpt").iterdir())
    else:
        assert "pretrain-best.pt holds weights of another network" in note
    assert any("starts from its last weights" in w for w in warnings)
