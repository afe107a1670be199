"""The bad-input corpus of tests/test_reliability_bad_inputs.py: what a case is (:class:`Case`)
and what it may use (:class:`Ctx`: the base project, its own directory, the outputs that must not
appear and the inputs that must not change). The cases themselves, by kind of input:
``bad_inputs_data.py`` (annotations, features, videos) and ``bad_inputs_models.py`` (checkpoints,
params.yaml, queries).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from reliability_workspace import (
    VARIANT,
    Workspace,
    params_dict,
    write_params,
)


@dataclass
class Ctx:
    """What a case may use: the base project (read-only) and its own directory."""

    ws: Workspace
    dir: Path
    absent: list[Path] = field(default_factory=list)  # outputs that must not exist afterwards
    unchanged: dict[Path, str] = field(default_factory=dict)  # inputs that must not change

    @property
    def model_dir(self) -> Path:
        return self.ws.model_dir(VARIANT)

    def keep(self, *paths: Path) -> None:
        for p in paths:
            self.unchanged[p] = hashlib.sha256(p.read_bytes()).hexdigest()

    def params(self, **sections: dict[str, Any]) -> Path:
        return write_params(self.dir / "params.yaml", params_dict(self.ws.data, **sections))

    def copy_features(self) -> Path:
        dst = self.dir / "features.h5"
        shutil.copy(self.ws.features, dst)
        return dst

    def train(self, params: Path, *extra: str, variant: str = VARIANT) -> list[str]:
        out = self.dir / "models"
        self.absent += [out / variant / n for n in ("best.pt", "train_summary.json")]
        self.absent.append(out / variant / "history.json")
        argv = self.ws.train_argv(*extra, variant=variant, out=out)
        argv[1] = str(params)
        return argv

    def evaluate(self, variant: str, models: Path, params: Path | None = None) -> list[str]:
        out = self.dir / "eval"
        self.absent.append(out)
        return [
            "--params",
            str(params or self.ws.params),
            "evaluate",
            "--variant",
            variant,
            "--vocab",
            str(self.ws.vocab),
            "--models",
            str(models),
            "--out",
            str(out),
        ]

    def localize(self, query: str, *extra: str, model: Path | None = None) -> list[str]:
        model = model or self.model_dir
        return ["localize", "--model", str(model), "--query", query, "--json", *extra]

    def checkpoint(self, variant: str, edit: Callable[[dict[str, Any]], Any]) -> Path:
        """``<dir>/models/<variant>/best.pt`` = the trained checkpoint after ``edit``."""
        ckpt = torch.load(self.model_dir / "best.pt", weights_only=True)
        ckpt = edit(ckpt)
        path = self.dir / "models" / variant / "best.pt"
        path.parent.mkdir(parents=True)
        torch.save(ckpt, path)
        self.keep(path)
        return self.dir / "models"


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Ctx], list[str]]
    code: int
    message: str  # regex: over stderr + log for errors, over the skip report for data-stats
    subprocess: bool = False
