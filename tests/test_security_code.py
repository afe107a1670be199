"""Nothing runs code that comes with data: checkpoints, YAML, arrays, models.

1. A scan of the source tree (``src/``, and ``components/`` / ``pipeline/`` when present) for
   the calls that execute code hidden in data: ``torch.load`` without ``weights_only=True``,
   ``yaml.load``/``unsafe_load``/``full_load`` or an unsafe ``Loader``, ``pickle``/``dill``/
   ``cloudpickle``/``marshal``/``shelve`` loading, ``numpy.load`` with ``allow_pickle=True``,
   ``eval``, ``exec``, and ``shell=True`` subprocesses. The scanner is an AST walk (comments and
   docstrings that merely mention these names do not count) and is itself tested on a snippet
   with each bad call, so the scan cannot pass by seeing nothing.
2. A checkpoint crafted to run a command when unpickled (``__reduce__`` -> ``os.system('touch
   MARKER')``): the payload is proven live by an unsafe load in a child process (the marker
   appears), then every way dynpath reads a checkpoint refuses it and the marker never appears.
3. An ``embeddings.npy`` holding a pickled object array is refused by the vocabulary loader.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from reliability_workspace import REPO, child_env

from dynpath.data.vocab import Vocabulary
from dynpath.engine.checkpoint import load_checkpoint
from dynpath.errors import CheckpointError, DataError, DynpathError
from dynpath.inference.localizer import Localizer

SCANNED = ("src", "components", "pipeline")
PICKLE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
UNSAFE_YAML = {"load", "unsafe_load", "full_load", "load_all", "unsafe_load_all", "full_load_all"}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` of a Name/Attribute chain ("" for anything else)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_calls(source: str, filename: str = "<src>") -> list[str]:
    """``file:line: what`` for every call that could run code from data."""
    tree = ast.parse(source, filename)
    # names bound by imports: "from pickle import load as l" -> l means pickle.load
    alias: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                alias[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                alias[a.asname or a.name] = f"{node.module}.{a.name}"
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        full = alias.get(head, head) + (f".{rest}" if rest else "")
        where = f"{filename}:{node.lineno}"
        if full in ("eval", "exec", "builtins.eval", "builtins.exec"):
            found.append(f"{where}: {full}()")
        elif full == "torch.load" and not _is_true(_kw(node, "weights_only")):
            found.append(f"{where}: torch.load without weights_only=True")
        elif full.startswith("yaml.") and full.split(".", 1)[1] in UNSAFE_YAML:
            found.append(f"{where}: {full} (use yaml.safe_load)")
        elif full.startswith("yaml.") and _dotted(_kw(node, "Loader") or ast.Constant(None)) in {
            "yaml.Loader",
            "yaml.UnsafeLoader",
            "yaml.FullLoader",
        }:
            found.append(f"{where}: {full} with an unsafe Loader")
        elif full.split(".")[0] in PICKLE_MODULES and full.rsplit(".", 1)[-1] in {
            "load",
            "loads",
            "Unpickler",
            "open",
        }:
            found.append(f"{where}: {full}")
        elif full in ("numpy.load", "np.load") and _is_true(_kw(node, "allow_pickle")):
            found.append(f"{where}: {full} with allow_pickle=True")
        elif full.startswith("subprocess.") and _is_true(_kw(node, "shell")):
            found.append(f"{where}: {full} with shell=True")
        elif full in ("os.system", "os.popen"):
            found.append(f"{where}: {full}")
    return sorted(found, key=lambda f: int(f.split(":")[1]))


BAD_SNIPPET = """
import pickle, yaml, torch, subprocess, os
import numpy as np
from pickle import loads as undo
torch.load("m.pt")
torch.load("m.pt", weights_only=False)
yaml.load(open("p.yaml"))
yaml.safe_load(open("p.yaml"), Loader=yaml.Loader)
pickle.load(open("x", "rb"))
undo(b"")
np.load("a.npy", allow_pickle=True)
eval("1 + 1")
exec("x = 1")
subprocess.run("ls", shell=True)
os.system("ls")
# torch.load("ok") in a comment is fine, and so are these safe calls:
torch.load("m.pt", weights_only=True)
yaml.safe_load("a: 1")
np.load("a.npy", allow_pickle=False)
subprocess.run(["ls"])
"""


def test_scanner_flags_every_unsafe_call_and_nothing_safe() -> None:
    found = unsafe_calls(BAD_SNIPPET, "snippet.py")
    assert [f.split(":")[1] for f in found] == [str(n) for n in range(5, 16)], found


def test_source_tree_never_runs_code_from_data() -> None:
    files = [p for d in SCANNED if (REPO / d).is_dir() for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 40, "the scan found too few files to be meaningful"
    found = []
    for path in files:
        found += unsafe_calls(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert found == [], "\n".join(found)


# --------------------------------------------------------------------------- crafted files


class _Payload:
    """Runs ``touch MARKER`` when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint with dynpath's layout whose metadata carries the payload."""
    payload = {
        "meta": {"dynpath_version": "0.1.0", "variant": "dynamic", "arch": "dynamic",
                 "hook": _Payload(marker)},
        "model": {"w": torch.zeros(3)},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def test_crafted_checkpoint_is_live_but_never_executed_by_dynpath(tmp_path: Path) -> None:
    ckpt = _malicious_checkpoint(tmp_path / "models" / "dynamic" / "best.pt", tmp_path / "PWNED")
    # the payload is real: an UNSAFE load in a child process runs it
    proof = tmp_path / "proof"
    proof_ckpt = _malicious_checkpoint(tmp_path / "proof.pt", proof)
    code = f"import torch; torch.load({str(proof_ckpt)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], env=child_env(), timeout=120, check=False)
    assert proof.exists(), "the crafted checkpoint did not run its command when unpickled"

    marker = tmp_path / "PWNED"
    with pytest.raises(Exception, match=r"Weights only load failed|Unsupported global"):
        torch.load(ckpt, weights_only=True)
    with pytest.raises(CheckpointError, match=r"best\.pt: not a readable dynpath checkpoint"):
        load_checkpoint(ckpt)
    vocab = tmp_path / "models" / "dynamic" / "vocab"
    Vocabulary(["<pad>", "<unk>", "door"], embeddings=np.zeros((3, 4), np.float32)).save(vocab)
    with pytest.raises(CheckpointError, match="not a readable dynpath checkpoint"):
        Localizer.load(ckpt.parent, device="cpu")
    # the CLI paths (evaluate, localize, train --resume) go through load_checkpoint as well;
    # test_reliability_bad_inputs runs them on such a file
    assert not marker.exists()


def test_pickled_embeddings_are_refused(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab"
    Vocabulary(["<pad>", "<unk>", "door"], embeddings=np.zeros((3, 4), np.float32)).save(vocab)
    marker = tmp_path / "PWNED"
    evil = np.empty(3, dtype=object)
    evil[0] = _Payload(marker)
    np.save(vocab / "embeddings.npy", evil, allow_pickle=True)
    with pytest.raises((DataError, DynpathError, ValueError), match=r"(?i)pickle"):
        Vocabulary.load(vocab)
    assert not marker.exists()


def test_logged_pyfunc_is_model_from_code_not_a_pickle() -> None:
    """``build_pyfunc_kwargs`` passes the model as a path to its source file (MLflow's "model
    from code"): logging it writes no pickle, loading it imports code shipped with dynpath."""
    src = (REPO / "src" / "dynpath" / "tracking" / "pyfunc_model.py").read_text(encoding="utf-8")
    tree = ast.parse(src)
    values = [
        node.values[node.keys.index(key)]
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and key.value == "python_model"
    ]
    assert values, "python_model is not set in pyfunc_model.py"
    for value in values:  # str(Path(__file__).resolve()): a path, not an instance
        assert isinstance(value, ast.Call) and _dotted(value.func) == "str", ast.dump(value)
    assert "mlflow.models.set_model(" in src
