"""The bad-input corpus (tests/data/bad_inputs.yaml) through the real CLI and the Python API.

Every ``cli`` case runs one ``dynpath`` command in this process (``dynpath.cli.main`` with
stderr captured; ``subprocess: true`` cases in a fresh ``python -m dynpath.cli`` process) and
checks:

- the exit code (2 for a bad input, 130 for Ctrl-C, 0 where the input is accepted);
- for an error, exactly ONE line ``dynpath <cmd>: error: ...`` on stderr matching ``message``
  and no traceback anywhere in the output;
- that the case directory holds exactly the files it held before the command (nothing
  half-written, no temp or lock file), and the shared workspace is untouched.

``api`` cases call :class:`~dynpath.inference.localizer.Localizer` directly and check the
exception class (always a DynpathError subclass, plus TypeError/ValueError where it says so) and
its message. The served model's cases (``serve``) run in tests/test_serving.py against a real
``mlflow models serve`` process. docs/reliability.md says how to add a case.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from reliability_workspace import (
    VARIANT,
    Workspace,
    build_workspace,
    child_env,
    params_dict,
    write_params,
    write_videos,
)

from dynpath import cli
from dynpath.errors import DynpathError

CORPUS = Path(__file__).parent / "data" / "bad_inputs.yaml"
# The second round of misuse (issue 26) in its own file, with its own classes; same keys.
ROUND2 = Path(__file__).parent / "data" / "bad_inputs_round2.yaml"
FIRST = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
SECOND = yaml.safe_load(ROUND2.read_text(encoding="utf-8"))
# Later rounds: one file per part (issue 26's third round: the CLI's, the served model's).
LATER = [
    Path(__file__).parent / "data" / name
    for name in ("bad_inputs_round3_cli.yaml", "bad_inputs_round3_serve.yaml")
]
ROUNDS = [FIRST, SECOND, *(yaml.safe_load(p.read_text(encoding="utf-8")) for p in LATER)]
DATA = {
    key: [c for r in ROUNDS for c in r.get(key) or []] for key in ("classes", "cli", "api", "serve")
}
QUERY = "a person opens the door"

pytestmark = pytest.mark.slow


def corpus_ids(section: str) -> list[str]:
    return [c["id"] for c in DATA[section]]


# --------------------------------------------------------------------------- the workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The base project, with ``dynamic`` trained by the real CLI (best.pt, last.pt)."""
    ws = build_workspace(tmp_path_factory.mktemp("corpus"))
    threads = torch.get_num_threads()
    try:
        assert cli.main(ws.train_argv()) == 0
    finally:
        torch.set_num_threads(threads)
    write_videos(ws.root / "videos", [24])
    return ws


@pytest.fixture(scope="module")
def read_only(ws: Workspace) -> Iterator[Path | None]:
    """A read-only tmpfs (needs root and a kernel that allows mounts); None when unavailable."""
    target = ws.root / "ro"
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)], capture_output=True
    )
    if done.returncode != 0:
        yield None
        return
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True)


class Holder:
    """A child process holding dynpath's output lock on one path until stopped."""

    def __init__(self, path: Path) -> None:
        code = (
            "import sys\nfrom dynpath.io import output_lock\n"
            f"with output_lock({str(path)!r}):\n    print('locked', flush=True)\n"
            "    sys.stdin.read()\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


# --------------------------------------------------------------------------- expansion


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


class Case:
    """One ``cli`` entry of the corpus, expanded against the workspace and its own directory."""

    def __init__(self, spec: dict[str, Any], ws: Workspace, root: Path, ro: Path | None) -> None:
        self.spec = spec
        self.ws = ws
        self.dir = root
        self.vars = {
            "dir": str(root),
            "ro": str(ro),
            "wsparams": str(ws.params),
            "params": str(ws.params),
            "vocab": str(ws.vocab),
            "models": str(ws.models),
            "model": str(ws.model_dir(VARIANT)),
            "features": str(ws.features),
            "videos": str(ws.root / "videos"),
            "data": str(ws.data),
        }
        self.holders: list[Holder] = []

    def fmt(self, text: str) -> str:
        return text.format(**self.vars)

    def setup(self) -> None:
        spec = self.spec
        for kind in spec.get("setup") or []:
            getattr(self, f"_setup_{kind.split(':')[0]}")(*kind.split(":")[1:])
        for name, content in (spec.get("files") or {}).items():
            path = Path(self.fmt(name))
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str) and content.startswith("copy:"):
                src = Path(self.fmt(content[5:]))
                if src.is_dir():
                    shutil.copytree(src, path)
                else:
                    shutil.copy(src, path)
            elif isinstance(content, str) and content.startswith("hex:"):
                path.write_bytes(bytes.fromhex(content[4:]))
            elif content is None:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.write_text(str(content), encoding="utf-8")
        if "params" in spec:
            raw = params_dict(self.ws.data)
            for dotted, value in spec["params"].items():
                _set_dotted(raw, dotted, self.fmt(value) if isinstance(value, str) else value)
            path = self.dir / "params.yaml"
            write_params(path, raw)
            self.vars["params"] = str(path)

    # named setups (for inputs a YAML literal cannot express)
    def _setup_checkpoint(self, edit: str, dst: str) -> None:
        ckpt = torch.load(self.ws.model_dir() / "last.pt", weights_only=True)
        if edit == "epochs9":
            ckpt["progress"]["epoch"] = 9
        elif edit == "nometa":
            del ckpt["meta"]
        elif edit == "metalist":
            ckpt["meta"] = [1, 2]
        elif edit == "noarch":
            del ckpt["meta"]["arch"]
        elif edit == "badconfig":
            ckpt["meta"]["config"] = {"train": {"epochs": "many"}}
        elif edit in ("novocabhash", "noidentity"):  # written before issue 26 recorded them
            ckpt["meta"].pop("vocab_sha256", None)
            ckpt["meta"].pop("features_identity", None)
        elif edit == "shapes":
            key = next(iter(ckpt["model"]))
            ckpt["model"][key] = torch.zeros(3, 3, 3)
        path = Path(self.fmt(dst))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, path)

    def _setup_pickle(self, dst: str) -> None:
        import pickle

        path = Path(self.fmt(dst))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({"meta": {}, "model": {}}, protocol=4))

    def _setup_store(self, kind: str, vid: str = "bad") -> None:
        import h5py

        store = self.dir / "features.h5"
        self.vars["store"] = str(store)
        shutil.copy(self.ws.features, store)
        with h5py.File(store, "a") as f:
            if kind == "huge":
                f.create_dataset("bad", data=np.full((20, 12), 3e38, np.float32))
            elif kind == "int":
                f.create_dataset("bad", data=np.ones((20, 12), np.int64))
            elif kind == "group":
                f.create_group("bad")
            elif kind.startswith("dtype-"):  # video `vid` (new, or replaced) of another dtype
                name = kind[len("dtype-") :]
                base = np.random.default_rng(0).normal(size=(20, 12))
                if vid in f:
                    del f[vid]
                if name == "bytes":
                    f.create_dataset(vid, data=np.full((20, 12), b"ab", dtype="S2"))
                elif name == "str":
                    f.create_dataset(vid, data=np.full((20, 12), "ab", dtype=h5py.string_dtype()))
                elif name == "bool":
                    f.create_dataset(vid, data=base > 0)
                else:
                    f.create_dataset(vid, data=(base * 10).astype(name))
            elif kind.startswith("attr-"):  # another extraction: one identity attribute changed
                name = kind[len("attr-") :]
                value = f.attrs.get(name, "")
                f.attrs[name] = value * 2 if not isinstance(value, str | bytes) else "other"

    def _setup_storeattr(self, video: str, name: str, value: str) -> None:
        """A copy of the store with attribute ``name`` of ``video`` (``file``: of the store)
        set to ``value``: a number, ``true``/``false``, or else that text."""
        import h5py

        store = self.dir / "features.h5"
        self.vars["store"] = str(store)
        if not store.exists():
            shutil.copy(self.ws.features, store)
        parsed: Any = {"true": True, "false": False}.get(value, value)
        with contextlib.suppress(ValueError):
            parsed = float(value)
        with h5py.File(store, "a") as f:
            (f if video == "file" else f[video]).attrs[name] = parsed

    def _setup_vocab(self, kind: str, dst: str) -> None:
        """A copy of the workspace's vocabulary at ``dst`` of the SAME size, changed by
        ``kind``: two word ids swapped, all ids reversed, one word renamed, the case rule
        flipped, or a plain copy (``same``)."""
        path = Path(self.fmt(dst))
        shutil.copytree(self.ws.vocab, path)
        word2id = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        words = sorted(word2id, key=word2id.__getitem__)
        if kind == "permuted":
            words[2], words[3] = words[3], words[2]
        elif kind == "reversed":
            words[2:] = words[2:][::-1]
        elif kind == "renamed":
            words[-1] = "zebra"
        elif kind == "case":
            report = json.loads((path / "vocab_report.json").read_text(encoding="utf-8"))
            report["lowercase"] = not report.get("lowercase", True)
            (path / "vocab_report.json").write_text(json.dumps(report), encoding="utf-8")
        (path / "vocab.json").write_text(
            json.dumps({w: i for i, w in enumerate(words)}), encoding="utf-8"
        )

    def _setup_lock(self, target: str) -> None:
        self.holders.append(Holder(Path(self.fmt(target))))
        self.vars["holder"] = str(self.holders[-1].proc.pid)

    def _setup_dupqid(self, kind: str) -> None:
        root = self.dir / "data"
        shutil.copytree(self.ws.data, root)
        lines = (root / "train.jsonl").read_text().splitlines()
        rec = json.loads(lines[1])
        rec["qid"] = json.loads(lines[0])["qid"]
        if kind == "same":
            rec = json.loads(lines[0])
        lines.append(json.dumps(rec))
        (root / "train.jsonl").write_text("\n".join(lines) + "\n")
        self.vars["data"] = str(root)
        self.vars["qid"] = rec["qid"]

    def _setup_video(self, name: str) -> None:
        shutil.copy(self.ws.root / "videos" / "v00.mp4", self.dir / name)

    def argv(self) -> list[str]:
        text = self.fmt(self.spec["argv"])
        tokens = shlex.split(text)
        macros = {
            "@train": ["--params", self.vars["params"], "train", "--variant", VARIANT,
                       "--vocab", self.vars["vocab"], "--out", f"{self.dir}/models"],
            "@evaluate": ["--params", self.vars["params"], "evaluate", "--variant", VARIANT,
                          "--vocab", self.vars["vocab"], "--models", self.vars["models"],
                          "--out", f"{self.dir}/eval"],
            "@localize": ["localize", "--model", self.vars["model"], "--query", QUERY, "--json"],
            "@store": ["--features", self.vars["features"], "--video-id", "vid001"],
        }  # fmt: skip
        out: list[str] = []
        for tok in tokens:
            out.extend(macros.get(tok, [tok]))
        return out

    def teardown(self) -> None:
        for holder in self.holders:
            holder.stop()


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` (hidden ones included) with a content digest."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink() or p.is_dir():
            out[str(p.relative_to(root))] = "dir"
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_cli(argv: list[str], cwd: Path, subproc: bool, capsys: Any) -> tuple[int, str, str]:
    if subproc:
        done = subprocess.run(
            [sys.executable, "-m", "dynpath.cli", *argv],
            cwd=cwd,
            env=child_env(LC_ALL="C.UTF-8"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        return done.returncode, done.stdout, done.stderr
    capsys.readouterr()
    threads = torch.get_num_threads()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(old)
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("spec", DATA["cli"], ids=corpus_ids("cli"))
def test_cli_case(
    spec: dict[str, Any],
    ws: Workspace,
    read_only: Path | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    requires = spec.get("requires")
    if requires == "rofs" and read_only is None:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    if requires == "no_cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA machine: the device exists")
    case = Case(spec, ws, tmp_path, read_only)
    case.setup()
    try:
        argv = case.argv()
        before, base = snapshot(tmp_path), snapshot(ws.models)
        code, out, err = run_cli(argv, tmp_path, bool(spec.get("subprocess")), capsys)
        after = snapshot(tmp_path)  # before the holders stop (they remove their lock files)
    finally:
        case.teardown()
    expected = spec["code"]
    assert code == expected, f"exit {code}, expected {expected}\n{out[-2000:]}\n{err[-3000:]}"
    assert "Traceback" not in err + out, err[-3000:]
    message = case.fmt(spec["message"]) if "{" in spec["message"] else spec["message"]
    if expected != 0:
        lines = [ln for ln in err.splitlines() if ": error: " in ln]
        assert len(lines) == 1, err[-3000:]
        command = argv[argv.index("--params") + 2] if argv[0] == "--params" else argv[0]
        # argparse reports unknown options from the top-level parser: "dynpath: error: ..."
        assert lines[0].startswith((f"dynpath {command}: error: ", "dynpath: error: ")), lines[0]
        assert re.search(message, lines[0]), f"{message!r} not in {lines[0]!r}"
        assert "weights_only" not in lines[0]  # never torch's advice to disable the safe load
    else:
        assert re.search(message, out), out[-2000:]
    if expected != 0:
        assert after == before, sorted(set(after.items()) ^ set(before.items()))
    assert snapshot(ws.models) == base  # the shared model is never touched


# --------------------------------------------------------------------------- Python API


@pytest.fixture(scope="module")
def localizer(ws: Workspace) -> Any:
    from dynpath.inference.localizer import Localizer

    return Localizer.load(ws.model_dir(), device="cpu")


def _api_value(value: Any) -> Any:
    """YAML stand-ins: ``$feats`` a valid [T, D] array, ``$bytes:TEXT`` bytes, ``$nan``."""
    if value == "$feats":
        return np.random.default_rng(0).normal(size=(20, 12)).astype(np.float32)
    if value == "$nan":
        return float("nan")
    if value == "$huge":
        return np.full((20, 12), 3e38, np.float32)
    if isinstance(value, str) and value.startswith("$bytes:"):
        return value[7:].encode()
    if isinstance(value, str) and value.startswith("$float:"):
        return float(value[7:])
    return value


@pytest.mark.parametrize("spec", DATA["api"], ids=corpus_ids("api"))
def test_api_case(spec: dict[str, Any], localizer: Any, tmp_path: Path) -> None:
    from dynpath.inference.localizer import Localizer

    kwargs = {k: _api_value(v) for k, v in (spec.get("kwargs") or {}).items()}
    for key, value in kwargs.items():  # arguments of the form "$model" or list stand-ins
        if isinstance(value, str) and value == "$model":
            kwargs[key] = str(localizer.source)
        elif isinstance(value, list):
            kwargs[key] = [_api_value(v) for v in value]
    expected = {"TypeError": TypeError, "ValueError": ValueError}.get(spec.get("also", ""), object)
    with pytest.raises(DynpathError) as info:
        if spec["call"] == "predict":
            localizer.predict(**kwargs)
        elif spec["call"] == "predict_batch":
            localizer.predict_batch(**kwargs)
        else:
            Localizer.load(**kwargs)
    assert isinstance(info.value, expected), type(info.value).__mro__
    assert re.search(spec["message"], str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_training_exits_130_with_complete_checkpoints(
    ws: Workspace, tmp_path: Path
) -> None:
    """SIGINT to a real ``dynpath train`` as soon as an epoch's checkpoint exists: exit 130,
    one line, no traceback; every checkpoint on disk loads and no temp file is left."""
    params = params_dict(ws.data)
    params["train"] = {**params["train"], "epochs": 40}
    path = write_params(tmp_path / "params.yaml", params)
    out = tmp_path / "models"
    argv = [*ws.train_argv(out=out)]
    argv[1] = str(path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynpath.cli", *argv],
        cwd=tmp_path,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a Ctrl-C reaches it even when this run inherited SIGINT ignored (a background job)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not (out / VARIANT / "last.pt").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1 and "train: error: interrupted" in lines[0], stderr[-2000:]
    for name in ("last.pt", "best.pt"):
        if (out / VARIANT / name).exists():
            torch.load(out / VARIANT / name, weights_only=True)
    assert [p.name for p in (out / VARIANT).iterdir() if p.name.startswith(".")] == []
    with contextlib.suppress(FileNotFoundError):
        json.loads((out / VARIANT / "history.json").read_text())


def test_corpus_size_and_classes() -> None:
    """The corpus keeps its breadth: at least 150 cases over every class of issue 15."""
    cases = DATA["cli"] + DATA["api"] + DATA["serve"]
    assert len(cases) >= 150, len(cases)
    classes = {c["class"] for c in cases}
    assert set(DATA["classes"]) == classes, classes ^ set(DATA["classes"])
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]


def test_second_round_size_and_classes() -> None:
    """Issue 26's round: at least 60 cases, each of its classes (in its own file) used."""
    cases = SECOND["cli"] + SECOND.get("api", [])
    assert len(cases) >= 60, len(cases)
    assert {c["class"] for c in cases} == set(SECOND["classes"])
