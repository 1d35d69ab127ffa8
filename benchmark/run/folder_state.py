"""A run folder's state against the run asked for: new, resumable, done, stale or another run.

``folder_state`` is what decides whether a run is trained, resumed, reused or refused, so it reads the
folder's ``config.json`` once and says why. A folder holding another configuration, another tag's
run, or a finished run whose method code changed since (*stale*) is refused unless the user says
what to do (``--force``, ``--rerun-stale``); nothing is overwritten by accident and nothing stale is
reused silently. A train key the method never reads (``train.pretrain_iterations`` for a one-stage
method) never blocks a rerun.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sslbench.base.errors import BenchError, UnsafePath
from sslbench.base.run_files import RunFiles
from sslbench.method import METHODS
from sslbench.base.code_identity import code_identity, is_hash
from sslbench.run.specs import RunOptions, RunSpec


HASH_ONLY = "its stored hash differs"  # config_diff: no key differs, only the stored hash (a damaged file)


@dataclass(frozen=True)
class FolderState:
    """``state``: "new", "resume", "done", "replace" (its files go first) or "stale" (refused);
    ``why``: what is stale or replaced; ``other_core``: a finished run of another core code version."""

    state: str
    why: str = ""
    other_core: bool = False


def unused_keys(method: str) -> set[str]:
    """Configuration keys a method never reads (a stage length no stage of it takes): a difference
    there is no other configuration."""
    used = set(METHODS.get(method).stage_length_keys().values())
    return {key for key in ("train.iterations", "train.pretrain_iterations") if key not in used}


def _other_identity(stored: Any, spec: RunSpec) -> str:
    """"" when the stored spec is this run's (dataset, profile, method, ratio, seed); else what it
    names instead ("seed 0", "ratio 5 %"). A spec without these fields (an earlier version) is not
    judged."""
    if not isinstance(stored, dict):
        return ""
    differ = []
    for key, mine in (("dataset", spec.dataset), ("profile", spec.profile), ("method", spec.method)):
        if key in stored and stored[key] != mine:
            differ.append(f"{key} {str(stored[key])[:40]!r}")
    try:
        if "ratio" in stored and float(stored["ratio"]) != spec.ratio:
            differ.append(f"ratio {float(stored['ratio']):g} %")
        if "seed" in stored and int(stored["seed"]) != spec.seed:
            differ.append(f"seed {int(stored['seed'])}")
    except (TypeError, ValueError, OverflowError):
        differ.append("an unreadable ratio or seed")
    return ", ".join(differ)


def folder_state(spec: RunSpec, opts: RunOptions) -> FolderState:
    """The folder's state (see the module docstring); a ``BenchError`` naming the folder and what to do
    when it holds another run, unless ``--force`` lets it be replaced."""
    files = spec.files(opts.results)
    files.check()  # a planted link or special file: one line, before anything is written
    if not files.has(RunFiles.CONFIG):
        return FolderState("new")
    try:
        stored = files.read(RunFiles.CONFIG)
        if not isinstance(stored, dict):
            raise BenchError(f"{files.path(RunFiles.CONFIG)}: not a run configuration (a JSON {type(stored).__name__})")
    except UnsafePath:
        raise
    except BenchError as exc:  # damaged: the folder's configuration is unknown, so only --force replaces it
        if not opts.force:
            raise BenchError(f"{exc}; use --force to replace the run or --results for another folder") from None
        return FolderState("replace", "its config.json is damaged")
    stored_tag = stored.get("spec", {}).get("tag", "") if isinstance(stored.get("spec"), dict) else ""
    if stored_tag != spec.tag:  # "a/b" and "a b" share the folder name "@a-b"
        if not opts.force:
            raise BenchError(f"{files.folder}: holds the run tagged {stored_tag!r}, not {spec.tag!r} (both give "
                             "this folder name); choose a tag that differs in its letters or digits, or --force")
        return FolderState("replace", "another tag's run")  # never the other tag's finished run taken for this one
    other = _other_identity(stored.get("spec"), spec)
    if other:  # a copied or moved folder: its run is another run's, never taken for this one
        if not opts.force:
            raise BenchError(f"{files.folder}: holds the run of {other}, not this one (a copied or moved run "
                             "folder?); move it back, or --force to train this run in its place")
        return FolderState("replace", f"the run of {other}")
    code = stored.get("code", {})
    if not isinstance(code, dict) or not all(is_hash(code.get(k, "")) for k in ("method", "core")):
        if not opts.force:
            raise BenchError(f"{files.path(RunFiles.CONFIG)}: damaged (its code field is not a code identity); "
                             "use --force to replace the run or --results for another folder")
        return FolderState("replace", "its config.json is damaged")
    if stored.get("hash") != spec.resolved().hash():
        diff = config_diff(stored, spec.resolved().to_dict(), ignore=unused_keys(spec.method))
        if diff == HASH_ONLY:
            if not opts.force:
                raise BenchError(f"{files.path(RunFiles.CONFIG)}: damaged (its stored hash is not the hash of the "
                                 "configuration it holds); use --force to replace the run or --results for another "
                                 "folder")
            return FolderState("replace", "its config.json is damaged")
        if diff:
            if not opts.force:
                raise BenchError(f"{files.folder}: holds a run with another configuration ({diff}); "
                                 "use --tag NAME to keep both (a variant), --force to replace it or --results for "
                                 "another folder")
            return FolderState("replace", "another configuration")
    done = files.is_done()
    now = code_identity(METHODS.get(spec.method))
    if code.get("method") and now["method"] and code["method"] != now["method"]:
        if opts.rerun_stale in ("method", "core"):
            return FolderState("replace", "its method code changed")
        what = "" if done else ", since its checkpoint was trained (resuming would mix the two)"
        return FolderState("stale", f"method code changed ({code['method']} -> {now['method']}{what})")
    other_core = bool(code.get("core")) and code["core"] != now["core"]
    if other_core and opts.rerun_stale == "core":
        return FolderState("replace", "the core code changed")
    return FolderState("done" if done else "resume", other_core=other_core)


def run_code(stored: Any, now: dict[str, Any]) -> dict[str, Any]:
    """The code identity a run (re)started now records: today's, except that a run resumed under
    another core than it started with says both (``<started>+<now>``): a number trained by two
    versions of the core is shown as its own version, never as the current one."""
    code = stored.get("code") if isinstance(stored, dict) and isinstance(stored.get("code"), dict) else {}
    started = code.get("core")
    if not isinstance(started, str) or not started or started == now["core"]:
        return dict(now)
    if started.endswith(f"+{now['core']}"):
        return {**now, "core": started}  # resumed under today's core before
    return {**now, "core": f"{started.split('+')[0]}+{now['core']}"}


def check_folder(spec: RunSpec, opts: RunOptions) -> str:
    """The folder's state name (``folder_state(...).state``)."""
    return folder_state(spec, opts).state


def stale_error(stale: list[tuple[RunSpec, FolderState]]) -> BenchError:
    """One line per stale run and what to do, as one error."""
    lines = [f"{len(stale)} run(s) were made by other code of their method, so their results are stale:"]
    lines += [f"  {spec.label}: {state.why}" for spec, state in stale]
    lines.append("retrain them with --rerun-stale, or keep the old results and train the new code beside them "
                 "with --tag NAME")
    return BenchError("\n".join(lines))


def config_diff(stored: dict[str, Any], requested: dict[str, Any], most: int = 6, ignore: set[str] = frozenset()) -> str:
    """The keys whose stored and requested values differ, as ``section.key stored -> requested``
    ("" when they differ only in ``ignore``d keys)."""
    out = []
    differs = False
    for section in ("train", "data", "method"):
        a, b = stored.get(section, {}), requested.get(section, {})
        a = a if isinstance(a, dict) else {}
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b or _json_value(a[key]) != _json_value(b[key]):
                differs = True
                if f"{section}.{key}" not in ignore:
                    out.append(f"{section}.{key} {a.get(key, '(absent)')!r} -> {b.get(key, '(absent)')!r}")
    if not out:
        return "" if differs else HASH_ONLY
    return "; ".join(out[:most]) + (f"; and {len(out) - most} more" if len(out) > most else "")


def _json_value(value: Any) -> Any:
    """A value as JSON stores it (tuples are lists), for comparing a stored configuration."""
    return json.loads(json.dumps(value, default=str))
