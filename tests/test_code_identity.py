"""Every run knows the code that made it: a run whose method code changed is stale and never reused
silently; runs of several core code versions are named wherever they are shown together."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sslbench.base.code_identity import code_identity, digest_files, file_digest, method_code, method_files

from .conftest import TINY_RUN

PLUGIN = textwrap.dedent('''
    """A one-network plugin, as an outsider writes one."""
    from dataclasses import dataclass

    from sslbench.method import Batch, Losses, MethodConfig, SSLMethod, StepInfo, register_method
    from sslbench.nn import ce_dice_loss

    from {helper} import WEIGHT


    @dataclass
    class FixConfig(MethodConfig):
        pass


    @register_method("{name}")
    class FixSeg(SSLMethod[FixConfig]):
        uses_unlabeled = False

        def training_step(self, batch: Batch, step: StepInfo) -> Losses:
            return {{"loss": WEIGHT * ce_dice_loss(self.student(batch.x_l), batch.y_l)}}
''')


def _plugin(folder: Path, name: str) -> None:
    (folder / f"{name}.py").write_text(PLUGIN.format(name=name, helper=f"{name}_helper"))
    (folder / f"{name}_helper.py").write_text("WEIGHT = 1.0\n")
    (folder / f"{name}_notes.py").write_text("NOTES = 'not imported by the plugin'\n")


def _import(folder: Path, name: str) -> type:
    """The plugin's class from a fresh import (as a new process would see the files now)."""
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]
    from sslbench.method import METHODS

    METHODS._entries.pop(name, None)
    method_code.cache_clear()
    sys.path.insert(0, str(folder))
    try:
        METHODS.load_plugin_module(name)
    finally:
        sys.path.remove(str(folder))
    return METHODS.get(name)


def test_a_python_file_hashes_by_what_runs_not_by_its_layout(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text('"""Doc."""\ndef f(x):\n    return 2 * x  # double\n')
    before = file_digest(path)
    path.write_text('"""Another doc."""\n\n\ndef f(x):\n    """What f does."""\n    return 2*x\n')
    assert file_digest(path) == before                    # whitespace, comments and docstrings
    path.write_text('def f(x):\n    return 3 * x\n')
    assert file_digest(path) != before                    # what runs
    other = tmp_path / "defaults.toml"
    other.write_text("a = 1\n")
    assert digest_files([path, other], tmp_path) != digest_files([path], tmp_path)


PINNED_SOURCE = ('"""Doc."""\nimport math\n\n\nclass A:\n    """A doc."""\n    x: int = 1\n\n'
                 '    def f(self, y: float = 2.0) -> float:\n        return math.sqrt(y) * self.x + len(f"{y:.1f}")\n')


def test_the_hash_of_a_source_is_pinned(tmp_path: Path) -> None:
    """The canonical tree leaves out what a Python version adds empty (3.12's type_params) or prints
    its own way: the same source hashes alike on every supported version (pinned on 3.11)."""
    import ast

    from sslbench.base.code_identity import _canonical

    path = tmp_path / "pinned.py"
    path.write_text(PINNED_SOURCE)
    assert file_digest(path) == "ee9508386f3226e9b9468e7c7af265741f5dc6866f2ef096b0cae7aab201a88c"
    tree = ast.parse(PINNED_SOURCE)
    cls = tree.body[1]
    cls.type_params = []                                  # what 3.12 adds to every class and function
    assert _canonical(tree) == _canonical(ast.parse(PINNED_SOURCE))


def test_a_plugins_code_is_its_module_and_the_modules_beside_it_that_it_imports(tmp_path: Path) -> None:
    _plugin(tmp_path, "fixseg_unit")
    cls = _import(tmp_path, "fixseg_unit")
    assert sorted(p.name for p in method_files(cls)) == ["fixseg_unit.py", "fixseg_unit_helper.py"]
    first = method_code(cls)
    (tmp_path / "fixseg_unit_notes.py").write_text("NOTES = 'changed, and nobody imports it'\n")
    (tmp_path / "fixseg_unit.py").write_text((tmp_path / "fixseg_unit.py").read_text() + "\n\n# a comment\n")
    assert method_code(_import(tmp_path, "fixseg_unit")) == first
    (tmp_path / "fixseg_unit_helper.py").write_text("WEIGHT = 2.0\n")
    assert method_code(_import(tmp_path, "fixseg_unit")) != first


def test_a_plugin_importing_a_package_of_its_own_folder_hashes_what_it_imports(tmp_path: Path) -> None:
    (tmp_path / "fixseg_pkg.py").write_text(PLUGIN.format(name="fixseg_pkg", helper="fixseg_lib.weights"))
    lib = tmp_path / "fixseg_lib"
    lib.mkdir()
    (lib / "__init__.py").write_text("")
    (lib / "weights.py").write_text("WEIGHT = 1.0\n")
    (lib / ".ipynb_checkpoints").mkdir()
    (lib / ".ipynb_checkpoints" / "weights-checkpoint.py").write_text("WEIGHT = 5.0\n")
    (lib / "notes.txt").write_text("scratch\n")
    cls = _import(tmp_path, "fixseg_pkg")
    names = sorted(p.relative_to(tmp_path).as_posix() for p in method_files(cls))
    assert names == ["fixseg_lib/__init__.py", "fixseg_lib/weights.py", "fixseg_pkg.py"]
    first = method_code(cls)
    (lib / "weights.py").write_text("WEIGHT = 2.0\n")
    assert method_code(_import(tmp_path, "fixseg_pkg")) != first
    for module in [m for m in sys.modules if m.startswith("fixseg_lib")]:
        del sys.modules[module]


def test_a_class_without_a_source_file_has_no_method_hash() -> None:
    from sslbench.method import SSLMethod

    cls = type("Notebook", (SSLMethod,), {"__module__": "__main__not_a_module"})
    assert method_files(cls) == [] and method_code(cls) == ""


def test_a_run_resumed_under_another_core_says_both() -> None:
    from sslbench.run.folder_state import run_code

    now = {"method": "m1", "core": "bbbbbbbbbbbb", "version": "v"}
    assert run_code(None, now) == now
    assert run_code({"code": {"core": "bbbbbbbbbbbb"}}, now) == now
    assert run_code({"code": {"core": "aaaaaaaaaaaa"}}, now)["core"] == "aaaaaaaaaaaa+bbbbbbbbbbbb"
    assert run_code({"code": {"core": "aaaaaaaaaaaa+bbbbbbbbbbbb"}}, now)["core"] == "aaaaaaaaaaaa+bbbbbbbbbbbb"
    assert run_code({"code": {"core": "aaaaaaaaaaaa+cccccccccccc"}}, now)["core"] == "aaaaaaaaaaaa+bbbbbbbbbbbb"


def test_status_calls_a_resumable_run_of_changed_method_code_stale(tmp_path: Path) -> None:
    from sslbench.base.atomic import write_json
    from sslbench.run.status import collect

    folder = tmp_path / "synthetic-cardiac" / "quick" / "mt" / "ratio-5" / "seed-0"
    (folder / "ckpt").mkdir(parents=True)
    (folder / "ckpt" / "last.pt").write_bytes(b"")
    write_json(folder / "config.json", {"hash": "x", "spec": {"method": "mt"},
                                        "code": {"method": "000000000000", "core": "x"}})
    (state,) = collect(tmp_path)
    assert state.state == "stale" and "--rerun-stale" in (state.note or ""), state
    write_json(folder / "config.json", {"hash": "x", "spec": {"method": "mt"}})     # before code identity
    (state,) = collect(tmp_path)
    assert state.state == "pending", state


def test_built_in_methods_hash_their_own_modules_and_their_bases() -> None:
    from sslbench.method import METHODS

    names = {n: sorted(p.relative_to(p.parents[1]).as_posix() if p.parent.name == "mona" else p.name
                       for p in method_files(METHODS.get(n))) for n in ("mt", "abd", "unet-l", "mona")}
    assert names["mt"] == ["mean_teacher.py"]
    assert names["abd"] == ["abd.py", "bcp.py"]            # ABD is a BCP: both files are its code
    assert names["unet-l"] == ["supervised.py"]
    assert "mona/_anatomy.py" in names["mona"] and "mona/glcon.py" in names["mona"]   # its package, whole
    moco = sorted(p.name for p in method_files(METHODS.get("knn-moco")))
    assert "contrastive.py" in moco and "_anatomy.py" in moco and "glcon.py" not in moco   # what it imports only
    ident = code_identity(METHODS.get("mt"))
    assert set(ident) == {"method", "core", "version"} and len(ident["method"]) == len(ident["core"]) == 12


def _bench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sslbench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_an_edited_plugin_is_stale_refused_then_retrained_on_request(tmp_path: Path, cache_dir: Path) -> None:
    _plugin(tmp_path, "fixseg")
    results = tmp_path / "results"
    run = ("run", "--plugin", "fixseg", "--methods", "fixseg", "--ratios", "5", "--results", str(results),
           "--quiet", "--no-table", *TINY_RUN)
    first = _bench(tmp_path, *run)
    assert first.returncode == 0, first.stderr
    folder = results / "synthetic-cardiac" / "quick" / "fixseg" / "ratio-5" / "seed-0"
    record = json.loads((folder / "run.json").read_text())
    assert record["code"]["method"] and record["code"]["core"]

    # a module the plugin does not import, and a comment in the plugin: nothing to retrain
    (tmp_path / "fixseg_notes.py").write_text("NOTES  =  'reformatted'\n")
    (tmp_path / "fixseg.py").write_text((tmp_path / "fixseg.py").read_text() + "\n# tidied up\n")
    again = _bench(tmp_path, *run, "--set", "train.pretrain_iterations=7")   # a key a one-stage method never reads
    assert again.returncode == 0 and "already done" in again.stderr, again.stderr

    (tmp_path / "fixseg_helper.py").write_text("WEIGHT = 2.0\n")                # the loss doubled
    refused = _bench(tmp_path, *run)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.splitlines()
    assert any(line.strip().startswith("fixseg synthetic-cardiac 5% seed 0: method code changed") for line in lines)
    assert "--rerun-stale" in refused.stderr and "--tag" in refused.stderr
    assert json.loads((folder / "run.json").read_text()) == record              # nothing touched

    status = _bench(tmp_path, "status", "--plugin", "fixseg", "--results", str(results))
    assert "stale" in status.stdout and "method code changed" in status.stdout, status.stdout
    table = _bench(tmp_path, "table", "--plugin", "fixseg", "--results", str(results))
    assert "1 run(s) stale: the code of fixseg changed since they ran" in table.stdout, table.stdout

    retrained = _bench(tmp_path, *run, "--rerun-stale")
    assert retrained.returncode == 0, retrained.stderr
    new = json.loads((folder / "run.json").read_text())
    assert new["code"]["method"] != record["code"]["method"] and new["code"]["core"] == record["code"]["core"]
    status = _bench(tmp_path, "status", "--plugin", "fixseg", "--results", str(results))
    assert "1 run(s): 1 done" in status.stdout, status.stdout


@pytest.mark.slow
def test_runs_of_two_core_versions_are_named_in_tables_status_and_export(tmp_path: Path, cache_dir: Path) -> None:
    from .test_cli import bench

    results = tmp_path / "results"
    code, _, err = bench("run", "--methods", "unet-l", "--ratios", "5", "--results", str(results), "--quiet",
                         "--no-table", *TINY_RUN)
    assert code == 0, err
    seed0 = results / "synthetic-cardiac" / "quick" / "unet-l" / "ratio-5" / "seed-0"
    seed1 = seed0.parent / "seed-1"
    shutil.copytree(seed0, seed1)  # the same run as if trained by an older core, under seed 1
    for name, path in (("run.json", ("code",)), ("config.json", ("code",))):
        data = json.loads((seed1 / name).read_text())
        data["code"]["core"] = "0123456789ab"
        if name == "run.json":
            data["seed"], data["id"] = 1, data["id"].replace("seed-0", "seed-1")
        else:
            data["spec"]["seed"] = 1
        (seed1 / name).write_text(json.dumps(data))
    current = json.loads((seed0 / "run.json").read_text())["code"]["core"]

    code, out, _ = bench("table", "--results", str(results))
    assert f"runs from 2 code versions (0123456789ab: 1 run(s), {current} (current): 1 run(s))" in out \
        or f"runs from 2 code versions ({current} (current): 1 run(s), 0123456789ab: 1 run(s))" in out, out
    code, out, _ = bench("status", "--results", str(results))
    assert "finished runs from 2 code versions" in out and "core code version 0123456789ab" in out, out
    code, out, _ = bench("report", "--results", str(results), "-o", str(tmp_path / "report"))
    assert code == 0 and "runs from 2 code versions" in (tmp_path / "report" / "index.html").read_text()
    code, _, err = bench("table", "--results", str(results), "--methods", "unet-k")
    assert code == 2 and "did you mean 'unet-l'?" in err, err
    code, _, err = bench("export", "--results", str(results), "-o", str(tmp_path / "r.csv"))
    import pandas as pd

    df = pd.read_csv(tmp_path / "r.csv", dtype={"code_core": str})
    assert set(df.code_core) == {current, "0123456789ab"}

    # a core change is the user's call: kept by default, retrained with --rerun-stale=core
    sweep = ("run", "--methods", "unet-l", "--ratios", "5", "--seeds", "0,1", "--results", str(results), "--quiet",
             "--no-table", *TINY_RUN)
    code, _, err = bench(*sweep)
    assert code == 0 and "nothing to do" in err, err
    code, _, err = bench(*sweep, "--rerun-stale=core")
    assert code == 0, err
    assert json.loads((seed1 / "run.json").read_text())["code"]["core"] == current
    code, out, _ = bench("table", "--results", str(results))
    assert "code versions" not in out, out


def test_errors_say_what_to_do() -> None:
    from .test_cli import bench

    code, _, err = bench("run", "--methods", "mtt")
    assert code == 2 and "did you mean 'mt'?" in err and "--plugin MODULE" in err and "BENCH_PLUGINS" in err
    code, _, err = bench("run", "--methods", "mt", "--set", "method.ema_decy=0.9")
    assert code == 2 and "did you mean ema_decay?" in err, err
    code, _, err = bench("run", "--methods", "mt,unet-l", "--set", "mt.ema_decy=0.9")
    assert code == 2 and "did you mean ema_decay?" in err, err
    code, out, err = bench("check", "mtt")
    assert code == 2 and "did you mean 'mt'?" in err and not out, (out, err)
    code, _, err = bench("check", "my-method", "--plugin", "my_lab/my_method.py")
    assert code == 2 and "a dotted module path" in err and "not a file path" in err, err
    for command in ("table", "plot ratio", "report", "export", "status", "speed", "methods", "predict", "check x"):
        code, out, _ = bench(*command.split(), "--help")
        assert code == 0 and "--plugin" in out, command


def test_a_stored_code_hash_is_hex_or_the_record_is_refused() -> None:
    """A hash field reaches captions, status lines and CSV cells: hex only (nothing a terminal or a
    spreadsheet acts on)."""
    from sslbench.base.code_identity import is_hash
    from sslbench.base.fields import FieldError
    from sslbench.base.records import check_record

    assert is_hash("0123456789ab") and is_hash("0123456789ab+ba9876543210") and is_hash("")
    for bad in ("=HYPERLINK(1)", "abc\x1b[2J", "0123456789ab\n", 12, None):
        assert not is_hash(bad)
    with pytest.raises(FieldError, match=r"code.core: expected a code hash"):
        check_record({"code": {"core": "=cmd|' /C calc'!A0"}, "dataset": "d", "profile": "p", "method": "m"})
