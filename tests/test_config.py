"""Config layering: dataclass defaults < profile TOML < dataset/method TOML < --set; unknown keys fail."""
from __future__ import annotations

import pytest

from sslbench.base.config import TrainConfig, list_profiles, resolve_config
from sslbench.base.errors import ConfigError
from sslbench.method import METHODS


def mt_config(*overrides: str, profile: str = "quick"):  # noqa: ANN201
    return resolve_config(METHODS.get("mt").Config, profile, "synthetic-cardiac", "mt", overrides)


def test_profiles_shipped() -> None:
    assert {"quick", "ssl4mis", "paper"} <= set(list_profiles())


def test_reference_profiles_train_and_evaluate_in_fp32() -> None:
    """SSL4MIS and MONA never autocast: their profiles turn bf16 off; quick keeps it (CUDA only)."""
    assert not mt_config(profile="ssl4mis").train.amp and not mt_config(profile="paper").train.amp
    assert mt_config(profile="quick").train.amp


def test_layers_in_order() -> None:
    default = TrainConfig()
    quick = mt_config()
    assert quick.train.iterations != default.iterations          # the profile overrides the dataclass
    assert quick.train.lr == default.lr                          # untouched keys keep their default
    cfg = mt_config("train.iterations=77", "ema_decay=0.5", "method.consistency=1")
    assert cfg.train.iterations == 77
    assert cfg.method.ema_decay == 0.5 and cfg.method.consistency == 1.0  # int coerced to float
    assert "--set train.iterations" in cfg.sources
    assert cfg.hash() != quick.hash()
    assert mt_config().hash() == quick.hash()


def test_paper_and_ssl4mis_profiles() -> None:
    paper = mt_config(profile="paper")
    assert (paper.train.batch_size, paper.train.lr_schedule, paper.train.lr_step) == (6, "step", 2500)
    ssl4mis = mt_config(profile="ssl4mis")
    assert (ssl4mis.train.iterations, ssl4mis.train.batch_size, ssl4mis.train.labeled_bs) == (30000, 24, 12)


@pytest.mark.parametrize("item, message", [
    ("nope=1", "unknown key"),
    ("train.nope=1", "unknown key"),
    ("method.nope=1", "unknown key"),
    ("train.iterations=abc", "expected int"),
    ("train.iterations=1.5", "expected int"),
    ("train.amp=1", "expected bool"),
    ("train.lr_schedule=cosine", "must be one of"),
    ("train.labeled_bs=99", "labeled_bs"),
    ("noequals", "key=value"),
])
def test_bad_overrides(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mt_config(item)


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="unknown profile"):
        mt_config(profile="fast")


def test_toml_layer_errors_name_the_file(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import sslbench.base.config as config

    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "quick.toml").write_text("[train]\niterations = 5\nbogus = 1\n")
    monkeypatch.setattr(config, "configs_dir", lambda: tmp_path)
    with pytest.raises(ConfigError, match=r"quick.toml: unknown key train.bogus"):
        mt_config()
    (tmp_path / "profiles" / "quick.toml").write_text("[trian]\niterations = 5\n")
    with pytest.raises(ConfigError, match=r"quick.toml: unknown section \[trian\]"):
        mt_config()
    (tmp_path / "profiles" / "quick.toml").write_text("[train\n")
    with pytest.raises(ConfigError, match=r"quick.toml: invalid TOML"):
        mt_config()
    (tmp_path / "profiles" / "quick.toml").write_text("[train]\niterations = 5\n")
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "mt.toml").write_text("[method]\nema_decay = 0.9\n[train]\nlr = 0.5\n")
    cfg = mt_config("train.lr=0.25")
    assert (cfg.train.iterations, cfg.method.ema_decay, cfg.train.lr) == (5, 0.9, 0.25)


def test_method_overrides_apply_to_the_methods_that_have_the_key() -> None:
    from sslbench.base.errors import BenchError
    from sslbench.run.specs import expand

    specs = {s.method: s for s in expand(["unet-l", "mt", "uamt"], ["synthetic-cardiac"], [5], [0], "quick",
                                         ["method.ema_decay=0.999", "uamt.ema_decay=0.9", "train.lr=0.02"])}
    assert specs["mt"].config.method.ema_decay == 0.999
    assert specs["uamt"].config.method.ema_decay == 0.9                 # the scoped item comes later: it wins
    assert specs["unet-l"].overrides == ("train.lr=0.02",)               # no ema_decay: left as it is
    assert all(s.config.train.lr == 0.02 for s in specs.values())
    assert specs["mt"].resolved() is specs["mt"].config                 # resolved once, when expanded
    for bad, message in [("method.no_such=1", "none of this sweep's methods"),
                         ("cps.ema_decay=0.9", "not in this sweep"),
                         ("unet-l.ema_decay=0.9", "unet-l has no key 'ema_decay'"),
                         ("nosuch.lr=1", "neither train, data, method nor a method name")]:
        with pytest.raises(BenchError, match=message):
            expand(["unet-l", "mt", "uamt"], ["synthetic-cardiac"], [5], [0], "quick", [bad])


def test_bcp_and_abd_pretrain_10k_iterations_under_the_releases_schedule() -> None:
    """Their releases pre-train 10 000 iterations (``--pre_iterations 10000``) before 30 000: the
    ssl4mis profile follows that schedule through the method files' ``[profile.ssl4mis.train]``;
    other profiles keep their own length, and ``--set`` still wins."""
    for name in ("bcp", "abd"):
        def cfg(profile: str, *overrides: str):  # noqa: ANN202
            return resolve_config(METHODS.get(name).Config, profile, "acdc", name, overrides).train

        assert (cfg("ssl4mis").pretrain_iterations, cfg("ssl4mis").iterations) == (10000, 30000)
        assert cfg("ssl4mis").lr_schedule == "constant"
        assert cfg("quick").pretrain_iterations == 300 and cfg("paper").pretrain_iterations == 30000
        assert cfg("ssl4mis", "train.pretrain_iterations=77").pretrain_iterations == 77
    unimatch = resolve_config(METHODS.get("unimatch").Config, "ssl4mis", "acdc", "unimatch", ()).train
    assert unimatch.pretrain_iterations == 30000      # the profile's, untouched by BCP's file


def test_profile_tables_in_a_method_file_are_checked(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import sslbench.base.config as config

    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "quick.toml").write_text("[train]\niterations = 5\n")
    (tmp_path / "profiles" / "slow.toml").write_text("[train]\niterations = 50\n")
    (tmp_path / "methods").mkdir()
    monkeypatch.setattr(config, "configs_dir", lambda: tmp_path)
    (tmp_path / "methods" / "mt.toml").write_text(
        "[train]\nlr = 0.5\n[profile.slow.train]\nlr = 0.1\n[profile.slow.method]\nema_decay = 0.9\n")
    assert (mt_config().train.lr, mt_config().method.ema_decay) == (0.5, 0.99)
    slow = mt_config(profile="slow")
    assert (slow.train.iterations, slow.train.lr, slow.method.ema_decay) == (50, 0.1, 0.9)
    (tmp_path / "methods" / "mt.toml").write_text("[profile.fast.train]\nlr = 0.1\n")
    with pytest.raises(ConfigError, match=r"mt.toml: unknown profile\(s\) fast"):
        mt_config()
    (tmp_path / "methods" / "mt.toml").write_text("[profile.slow.train]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"mt.toml \[profile.slow\]: unknown key train.bogus"):
        mt_config(profile="slow")


@pytest.mark.parametrize("item, message", [
    ("train.lr=nan", "train.lr must be a finite number"),
    ("train.lr=-1", r"train.lr = -1.0 is outside its range \(0, 10\]"),
    ("train.lr=0", r"train.lr = 0.0 is outside"),
    ("train.momentum=-3", "train.momentum = -3.0 is outside"),
    ("train.lr_step=0", r"train.lr_step = 0 is outside its range \[1, 1e\+09\]"),
    ("train.poly_power=-1", "train.poly_power = -1.0 is outside"),
    ("method.ema_decay=2", r"method.ema_decay = 2.0 is outside its range \[0, 1\]"),
    ("train.image_size=1048576", "train.image_size = 1048576 is outside"),
    ("method.consistency=inf", "method.consistency must be a finite number"),
    ("method.eval_net=teachr", "must be one of student, teacher"),
    ("data.eval_split=train", "must be one of test, val"),
])
def test_values_outside_their_declared_range_are_refused_before_anything_runs(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        mt_config(item)


def _method_configs() -> list[tuple[str, type]]:
    from sslbench.base.config import DataConfig

    return [("train", TrainConfig), ("data", DataConfig)] + [(e.name, e.obj.Config) for e in METHODS]


def test_every_config_field_has_a_declared_range_or_choice_set() -> None:
    """Numbers get a range (their class's or their name's rule); strings are ``Literal`` choices; and
    every shipped default is inside its own range, for every method and profile."""
    import dataclasses
    import typing

    for owner, cls in _method_configs():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            hint = hints[f.name]
            assert hint in (int, float, bool, tuple[float, float], tuple[int, int, int]) or typing.get_origin(hint) is typing.Literal, \
                f"{owner}: {cls.__name__}.{f.name} is {hint}: declare its choices with Literal"
    for e in METHODS:
        for profile in list_profiles():
            resolve_config(e.obj.Config, profile, "synthetic-cardiac", e.name)


def test_every_numeric_field_refuses_nan_negatives_and_absurd_sizes() -> None:
    import dataclasses
    import math

    from sslbench.base.ranges import check_values

    for owner, cls in _method_configs():
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            if isinstance(default, tuple):  # an interval (low, high)
                bad = [(math.nan, default[1]), (-1.0, default[1]), (default[1], default[0])]
            elif isinstance(default, bool) or not isinstance(default, (int, float)):
                continue
            else:
                bad = [-1, 10 ** 12] if isinstance(default, int) else [math.nan, -1.0, math.inf]
            for value in bad:
                with pytest.raises(ConfigError, match=f.name):
                    check_values(dataclasses.replace(cls(), **{f.name: value}), owner)
