"""Which reading of "three temporal convolutional blocks" trains (docs/design.md, "Networks").

Trains ``dynamic`` on the synthetic default with ``model.conv_blocks: 3`` under each
``model.conv_block_form`` ("plain": the blocks as printed, "residual": x + Block(x), "prenorm":
EAMAT's x + Dropout(Block(LN(x)))), the rest of the default profile unchanged, for each training
seed, and prints the best VALIDATION R@1 IoU0.5 of each run (and its epoch). The choice is made
on validation only; test metrics are not computed here.

Runs in ``runs/conv_forms/`` (its own synthetic data, generated once), one params file per form
(``params_<form>.yaml``: the synthetic profile with ``variants: {dynamic}``, ``conv_blocks: 3``,
``conv_block_form: <form>``, tracking off). Resumable: a finished run is skipped.

    python scripts/conv_forms.py --seeds 12345 7      # writes runs/conv_forms/results.json
    python scripts/conv_forms.py --forms prenorm --inner-average sample   # Eq. 19 averaging
    python scripts/conv_forms.py --forms residual --dropout 0.5 \
        --dropout-placements input ffn eamat                          # where dropout goes

The default profile trains without dropout (docs/synthetic.md), so placements are compared at
the paper's p = 0.5 (EAMAT's ``drop_rate``), with the chosen block form.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dynpath.profiles import resolve

FORMS = ("plain", "residual", "prenorm")
WORK = Path("runs/conv_forms")


def _params(
    form: str, seeds: list[int], inner_average: str, dropout: float | None, placement: str | None
) -> dict[str, Any]:
    raw = resolve("synthetic")
    raw["seeds"] = seeds
    raw["variants"] = {"dynamic": {}}
    raw["model"].update(conv_blocks=3, conv_block_form=form)
    if dropout is not None:
        raw["model"]["dropout"] = dropout
    if placement is not None:
        raw["model"]["dropout_placement"] = placement
    raw["train"]["inner_average"] = inner_average
    raw["train"].update(parallel_seeds=min(2, len(seeds)))
    raw["tracking"]["enabled"] = False
    return raw


def _dynpath(params: str, *args: str) -> None:
    cmd = [sys.executable, "-m", "dynpath.cli", "--params", params, *args]
    subprocess.run(cmd, cwd=WORK, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[12345, 7])
    ap.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    ap.add_argument("--inner-average", choices=["batch", "sample"], default="batch")
    ap.add_argument("--dropout", type=float, default=None, help="model.dropout (default: profile)")
    ap.add_argument(
        "--dropout-placements", nargs="+", choices=["input", "ffn", "eamat"], default=[None]
    )
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    names: dict[tuple[str, str | None], str] = {}
    for form in args.forms:
        for placement in args.dropout_placements:
            name = f"{form}_{args.inner_average}"
            if placement is not None:
                name += f"_p{args.dropout:g}_{placement}"
            names[(form, placement)] = name
            params = _params(form, args.seeds, args.inner_average, args.dropout, placement)
            (WORK / f"params_{name}.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    first = f"params_{next(iter(names.values()))}.yaml"
    if not (WORK / "outputs/vocab/vocab.json").exists():
        _dynpath(first, "data")
        _dynpath(first, "extract")
        _dynpath(first, "vocab", "--out", "outputs/vocab")
    path = WORK / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    for name in names.values():
        out = f"outputs/models_{name}"
        _dynpath(f"params_{name}.yaml", "train", "--variant", "dynamic", "--out", out, "--resume")
        runs = {}
        for seed in args.seeds:
            d = WORK / out / "dynamic"
            d = d if seed == args.seeds[0] else d / "seeds" / str(seed)
            s = json.loads((d / "train_summary.json").read_text())
            runs[str(seed)] = {
                "best_val_r1_iou0.5": s["best_val"].get("r1_iou0.5"),
                "best_epoch": s["best_epoch"],
                "train_seconds": s["train_seconds"],
            }
        vals = [r["best_val_r1_iou0.5"] for r in runs.values()]
        results[name] = {"seeds": runs, "mean_best_val_r1_iou0.5": sum(vals) / len(vals)}
        print(name, json.dumps(results[name]), flush=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    best = max(results, key=lambda f: results[f]["mean_best_val_r1_iou0.5"])
    print(f"best on validation: {best}")


if __name__ == "__main__":
    main()
