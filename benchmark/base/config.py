"""Run configuration: dataclass defaults < TOML files under configs/ < ``--set key=value``.

A resolved configuration has three sections: ``train`` (the schedule, owned by the trainer and scaled
by profiles), ``data`` (split and evaluation choices) and ``method`` (the method's own dataclass).
Layers, lowest first:

1. the dataclass defaults (``TrainConfig``, ``DataConfig``, the method's ``Config``);
2. ``configs/profiles/<profile>.toml`` (schedules: quick, ssl4mis, paper);
3. ``configs/datasets/<dataset>.toml`` (dataset-specific settings), if present;
4. ``configs/methods/<method>.toml`` (method-specific settings), if present;
5. ``--set section.key=value`` (or a bare ``key`` when it names exactly one field).

Every TOML layer may hold ``[train]``, ``[data]`` and ``[method]`` tables. A dataset or method file may
also hold ``[profile.<name>.train]`` (``.data``, ``.method``) tables, applied after its own tables
when that profile is resolved (BCP's release pre-trains 10k iterations: its file sets that for the
``ssl4mis`` profile only). Unknown sections, profiles, keys and values of the wrong type are errors
naming the file (or the ``--set`` item).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import sys
import types
import typing
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

from sslbench.base.errors import ConfigError
from sslbench.base.names import NAME
from sslbench.base.ranges import Range, check_values

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class TrainConfig:
    """The schedule, identical for every method of a sweep (SSL4MIS defaults)."""

    iterations: int = 30000          # iterations of the "train" stage
    pretrain_iterations: int = 0     # iterations of a "pretrain" stage (methods that have one)
    batch_size: int = 24             # slices per step
    labeled_bs: int = 12             # labeled slices per step for methods that use unlabeled data
    image_size: int = 256            # training / inference slice size
    base_width: int = 16             # UNet widths base * (1, 2, 4, 8, 16)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_schedule: Literal["poly", "step", "constant"] = "poly"  # "poly" (SSL4MIS), "step" (the paper: lr / 10 every lr_step) or "constant" (BCP, ABD)
    poly_power: float = 0.9
    lr_step: int = 2500
    lr_gamma: float = 0.1
    augment: Literal["ssl4mis", "none"] = "ssl4mis"  # "ssl4mis" (rot90/flip or small rotation) or "none"
    val_every: int = 200             # iterations between validations (and checkpoints)
    select: Literal["best", "last"] = "best"  # model selection: "best" validation Dice or "last"
    log_every: int = 50
    amp: bool = True                 # bf16 autocast on CUDA (ignored on CPU)
    # the 3-D track (UA-MT's LA protocol); in 2-D these keep their defaults and are not part of the config
    dims: Literal[2, 3] = 2          # 2: slices and the 2-D UNet; 3: whole volumes, random crops and UA-MT's VNet
    patch_size: tuple[int, int, int] = (80, 112, 112)  # 3-D crop (D, H, W): UA-MT's 112 x 112 x 80 in its (W, H, D) order
    stride_xy: int = 18              # 3-D sliding-window stride in-plane (H, W): UA-MT's test_util.py
    stride_z: int = 4                # 3-D sliding-window stride through-plane (D)

    ranges: ClassVar[dict[str, Range]] = {
        "lr": Range(0.0, 10.0, open_lo=True), "momentum": Range(0.0, 0.999), "weight_decay": Range(0.0, 1.0),
        "poly_power": Range(0.0, 100.0, open_lo=True), "lr_gamma": Range(0.0, 1.0, open_lo=True),
        "image_size": Range(16, 4096), "base_width": Range(1, 512), "batch_size": Range(2, 65536),
        "labeled_bs": Range(1, 65535), "patch_size": Range(16, 4096), "stride_xy": Range(1, 4096),
        "stride_z": Range(1, 4096)}

    def validate(self) -> None:
        check_values(self, "train")
        if not 0 < self.labeled_bs < self.batch_size:
            raise ConfigError(f"train.labeled_bs must be in (0, batch_size={self.batch_size}), got {self.labeled_bs}")
        if self.image_size % 16:
            raise ConfigError(f"train.image_size must be a multiple of 16 (four poolings), got {self.image_size}")
        if self.dims == 2:
            changed = [k for k in THREE_D_KEYS if getattr(self, k) != getattr(TrainConfig, k)]
            if changed:
                raise ConfigError(f"train.{changed[0]} applies to 3-D training only (train.dims = 3); this "
                                  "configuration trains 2-D slices")
            return
        if len(self.patch_size) != 3 or any(p < 16 or p > 4096 or p % 16 for p in self.patch_size):
            raise ConfigError(f"train.patch_size must be three sizes (D, H, W), each a multiple of 16 in [16, 4096] "
                              f"(four halvings of the VNet), got {list(self.patch_size)}")
        if self.augment == "ssl4mis" and self.patch_size[1] != self.patch_size[2]:
            raise ConfigError(f"train.patch_size {list(self.patch_size)}: UA-MT's rotation / flip augmentation needs "
                              "a square in-plane patch (H = W); use equal sizes or train.augment = \"none\"")


THREE_D_KEYS = ("dims", "patch_size", "stride_xy", "stride_z")


@dataclass
class DataConfig:
    split: Literal["paper", "random"] = "paper"  # "paper" (the dataset's fixed list order) or "random" (seeded)
    eval_split: Literal["test", "val"] = "test"  # where the final metrics come from: "test" or "val"

    def validate(self) -> None:
        check_values(self, "data")


def configs_dir() -> Path:
    """The shipped configs/ folder (installed as the package data ``sslbench.configs``)."""
    return Path(str(resources.files("sslbench.configs")))


def list_profiles() -> list[str]:
    return sorted(p.stem for p in (configs_dir() / "profiles").glob("*.toml"))


def _read_toml(path: Path) -> dict[str, Any]:
    """A configuration file: a regular file of UTF-8 TOML (a FIFO would hang, a folder is no file),
    else one line naming it."""
    from sslbench.base.file_kinds import kind_of

    kind = kind_of(path)  # a link to a regular file is read (a profile linked to a shared copy)
    if kind != "a regular file":
        raise ConfigError(f"{path}: is {kind}, not a TOML file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: nested too deep") from None
    except OSError as exc:
        raise ConfigError(f"{path}: unreadable ({exc.strerror or exc})") from None


def _coerce(value: Any, typ: Any, where: str) -> Any:
    if isinstance(typ, str):  # postponed annotations
        typ = {"int": int, "float": float, "str": str, "bool": bool}.get(typ, typ)
    origin = typing.get_origin(typ)
    if typ is bool:
        if isinstance(value, bool):
            return value
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
    elif origin is Literal:
        if value in typing.get_args(typ):
            return value
        raise ConfigError(f"{where}: must be one of {', '.join(map(str, typing.get_args(typ)))}; got {value!r}")
    elif origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            args = typing.get_args(typ)
            inner = args[0] if args else Any
            items = [v if inner is Any else _coerce(v, inner, where) for v in value]
            return tuple(items) if origin is tuple else items
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(typ):
            if arg is type(None) and value is None:
                return None
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
    else:
        return value
    raise ConfigError(f"{where}: expected {getattr(typ, '__name__', typ)}, got {value!r}")


def field_docs(cls: type) -> dict[str, str]:
    """Each dataclass field's one-line doc: the comment after it in the class body (the most derived
    class of the MRO that comments it); "" where there is none."""
    import inspect
    import io
    import tokenize

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            lines, _ = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        own = {name for name in klass.__dict__.get("__annotations__", {})}
        comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                    for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline)
                    if tok.type == tokenize.COMMENT}
        for number, line in enumerate(lines, 1):
            name = line.strip().split(":", 1)[0]
            if name in own and ":" in line and (comments.get(number) or name not in docs):
                docs[name] = comments.get(number, "")  # an override without a comment keeps its base's doc
    return {f.name: docs.get(f.name, "") for f in fields(cls)}


def config_keys(cls: type) -> set[str]:
    """The keys a config dataclass accepts (``--set section.KEY``)."""
    return set(_field_types(cls))


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, f.type) for f in fields(cls)}


MAX_VALUE_CHARS = 10_000  # a --set value; a config value is a number, a word or a short list


def _parse_value(text: str) -> Any:
    if len(text) > MAX_VALUE_CHARS:
        raise ConfigError(f"a --set value of {len(text)} characters: at most {MAX_VALUE_CHARS}")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except RecursionError:  # brackets nested thousands deep: the parser's recursion, not a value
        raise ConfigError(f"a --set value nested too deep ({text[:20]}...)") from None
    except tomllib.TOMLDecodeError:
        return text  # bare strings need no quotes on the command line
    except ValueError as exc:  # an integer of more digits than Python converts (4300)
        raise ConfigError(f"a --set value that is no usable number ({text[:20]}...: {str(exc)[:80]})") from None


@dataclass
class ResolvedConfig:
    train: TrainConfig
    data: DataConfig
    method: Any  # the method's Config dataclass instance
    sources: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The configuration as stored and hashed; a 2-D one leaves out the 3-D keys (they hold their
        defaults there), so runs made before the 3-D track keep their hash."""
        train = dataclasses.asdict(self.train)
        if self.train.dims == 2:
            for key in THREE_D_KEYS:
                train.pop(key)
        else:
            train["patch_size"] = list(self.train.patch_size)
        return {"train": train, "data": dataclasses.asdict(self.data), "method": dataclasses.asdict(self.method)}

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def resolve_config(method_config_cls: type, profile: str, dataset: str, method: str,
                   overrides: list[str] | tuple[str, ...] = (), defaults: dict[str, Any] | None = None,
                   defaults_source: str = "") -> ResolvedConfig:
    """Apply the layers in order and validate the result. ``defaults``: the method class's own layer
    (a plugin's ``defaults`` mapping, in the form of a ``configs/methods/<name>.toml`` file), applied
    before that file; ``defaults_source`` names it in errors and in ``sources``."""
    sections: dict[str, Any] = {"train": TrainConfig(), "data": DataConfig(), "method": method_config_cls()}
    types_ = {name: _field_types(type(obj)) for name, obj in sections.items()}
    values: dict[str, dict[str, Any]] = {name: {} for name in sections}
    sources: list[str] = []

    root = configs_dir()
    if not isinstance(profile, str) or not NAME.fullmatch(profile) or not isinstance(dataset, str) \
            or not NAME.fullmatch(dataset):
        bad, what = (profile, "profile") if not NAME.fullmatch(str(profile)) else (dataset, "dataset")
        raise ConfigError(f"{what} name {bad!r} is not allowed: a {what} is a name "
                          + (f"(known: {', '.join(list_profiles())})" if what == "profile" else
                             "of letters, digits, '.', '_' and '-'"))
    profile_path = root / "profiles" / f"{profile}.toml"
    if not (profile_path.exists() or profile_path.is_symlink()):
        raise ConfigError(f"unknown profile '{profile}' (known: {', '.join(list_profiles())})")
    layers: list[Path | dict[str, Any]] = [profile_path, root / "datasets" / f"{dataset}.toml"]
    layers += [copy.deepcopy(defaults)] if defaults else []
    layers.append(root / "methods" / f"{method}.toml")
    for path in layers:
        if isinstance(path, dict):  # the method class's defaults
            if not all(isinstance(t, dict) for t in path.values()):
                raise ConfigError(f"{defaults_source}: a mapping of [train] / [data] / [method] / [profile] tables")
            layer, path = path, Path(defaults_source or f"{method} defaults")
        elif not (path.exists() or path.is_symlink()):
            continue
        else:
            layer = _read_toml(path)
        sources.append(str(path.relative_to(root.parent)) if root.parent in path.parents else str(path))
        per_profile = layer.pop("profile", {}) if path != profile_path else {}
        if not isinstance(per_profile, dict) or not all(isinstance(t, dict) for t in per_profile.values()):
            raise ConfigError(f"{path}: [profile.<name>.<section>] tables expected under [profile]")
        unknown = sorted(set(per_profile) - set(list_profiles()))
        if unknown:
            raise ConfigError(f"{path}: unknown profile(s) {', '.join(unknown)} under [profile] "
                              f"(known: {', '.join(list_profiles())})")
        # the file's own tables, then its [profile.<this profile>.*] tables (more specific, so they win)
        for where, tables in ((str(path), layer), (f"{path} [profile.{profile}]", per_profile.get(profile, {}))):
            _apply_tables(tables, types_, values, where)

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = (s.strip() for s in item.split("=", 1))
        if "." in key:
            section, name = key.split(".", 1)
            if section not in sections or name not in types_[section]:
                raise ConfigError(f"--set {key}: unknown key{_suggest(key, types_)}")
        else:
            owners = [s for s in sections if key in types_[s]]
            if not owners:
                raise ConfigError(f"--set {key}: unknown key{_suggest(key, types_)}")
            if len(owners) > 1:
                raise ConfigError(f"--set {key}: ambiguous, use one of {', '.join(f'{s}.{key}' for s in owners)}")
            section, name = owners[0], key
        values[section][name] = _coerce(_parse_value(text), types_[section][name], f"--set {key}")
        sources.append(f"--set {section}.{name}")

    resolved = {s: dataclasses.replace(obj, **values[s]) for s, obj in sections.items()}
    for section, obj in resolved.items():
        check_values(obj, section)
        if hasattr(obj, "validate"):
            obj.validate()
    return ResolvedConfig(resolved["train"], resolved["data"], resolved["method"], sources)


def _apply_tables(tables: dict[str, Any], types_: dict[str, dict[str, Any]], values: dict[str, dict[str, Any]],
                  where: str) -> None:
    """Put a TOML layer's ``[train]`` / ``[data]`` / ``[method]`` tables into ``values``, checked."""
    for section, table in tables.items():
        if section not in types_ or not isinstance(table, dict):
            raise ConfigError(f"{where}: unknown section [{section}] (allowed: train, data, method)")
        for key, value in table.items():
            if key not in types_[section]:
                raise ConfigError(f"{where}: unknown key {section}.{key}")
            values[section][key] = _coerce(value, types_[section][key], f"{where}: {section}.{key}")


def _suggest(key: str, types_: dict[str, dict[str, Any]]) -> str:
    import difflib

    known = [f"{s}.{k}" for s, ks in types_.items() for k in ks]
    close = difflib.get_close_matches(key, known + [k.split(".", 1)[1] for k in known], n=1)
    return f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"


def stored_config(method_config_cls: type, stored: dict[str, Any], where: str) -> ResolvedConfig:
    """A run's configuration as its ``config.json`` stored it (not as today's TOML files would resolve
    it): each section's values typed and checked like a layer's; a key the code no longer has is an
    error naming ``where``; a key added since takes its default."""
    sections: dict[str, Any] = {"train": TrainConfig(), "data": DataConfig(), "method": method_config_cls()}
    types_ = {name: _field_types(type(obj)) for name, obj in sections.items()}
    values: dict[str, dict[str, Any]] = {name: {} for name in sections}
    tables = {s: stored.get(s, {}) for s in sections}
    _apply_tables(tables, types_, values, where)
    resolved = {s: dataclasses.replace(obj, **values[s]) for s, obj in sections.items()}
    for section, obj in resolved.items():
        check_values(obj, section)
        if hasattr(obj, "validate"):
            obj.validate()
    sources = stored.get("sources", [])
    return ResolvedConfig(resolved["train"], resolved["data"], resolved["method"],
                          [str(s) for s in sources] if isinstance(sources, list) else [])
