"""Effect of CPU bf16 autocast (``train.autocast: bf16``) on the synthetic default's metrics.

Trains ``dynamic`` with ``train.autocast: fp32`` and ``bf16`` for each training seed and
evaluates every run with ``dynpath evaluate`` on val and test; then prints per-seed metrics,
mean +- sd per setting and the paired difference (bf16 - fp32) with a 95% t-interval.

Both settings of one seed train at the same time, each in its own process with 1 thread (the
default's per-seed thread count: ``train.threads: 2`` shared by ``train.parallel_seeds: 2``), so
their wall times are measured under the same machine load. Params copies
(``outputs/bf16_ab/params_<setting>.yaml``) differ from ./params.yaml in ``train.autocast``,
``seeds`` (the default's seeds first), ``train.threads: 1`` and ``tracking.enabled: false``
only. Needs ``dvc repro extract vocab`` first. Test metrics are reported only; nothing is chosen
on them (the kept checkpoint is chosen on validation R@1 IoU0.5 by the trainer, as always).

    python scripts/bf16_ab.py run --seeds 12345 7 8     # train + evaluate (skips finished runs)
    python scripts/bf16_ab.py summary --seeds 12345 7 8 # tables only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml
from scipy import stats

ROOT = Path("outputs/bf16_ab")
SETTINGS = ("fp32", "bf16")
METRICS = ("r1_iou0.5", "r1_iou0.7", "miou")
DYNPATH = str(Path(sys.executable).parent / "dynpath")


def params_file(setting: str, seeds: list[int]) -> Path:
    p = yaml.safe_load(Path("params.yaml").read_text())
    p["seeds"] = seeds
    p["train"]["autocast"] = setting
    p["train"]["threads"] = 1
    p["tracking"]["enabled"] = False
    path = ROOT / f"params_{setting}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def model_dir(setting: str, seed: int, seeds: list[int]) -> Path:
    d = ROOT / setting / "models" / "dynamic"
    return d if seed == seeds[0] else d / "seeds" / str(seed)


def eval_dir(setting: str, split: str, seed: int, seeds: list[int]) -> Path:
    d = ROOT / setting / f"eval_{split}" / "dynamic"
    return d if seed == seeds[0] else d / "seeds" / str(seed)


def run(seeds: list[int]) -> None:
    params = {s: params_file(s, seeds) for s in SETTINGS}
    for seed in seeds:
        procs = []
        for s in SETTINGS:
            if (model_dir(s, seed, seeds) / "train_summary.json").exists():
                continue
            cmd = [
                DYNPATH,
                "--params",
                str(params[s]),
                "train",
                "--variant",
                "dynamic",
                "--vocab",
                "outputs/vocab",
                "--out",
                str(ROOT / s / "models"),
                "--seed",
                str(seed),
            ]
            with open(ROOT / f"train_{s}_{seed}.log", "w") as log:  # the child keeps its copy
                procs.append((s, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
        for s, p in procs:
            # the child's own CPU time (user + sys), robust to a shared machine's load
            _, status, ru = os.wait4(p.pid, 0)
            if os.waitstatus_to_exitcode(status):
                sys.exit(f"training {s} seed {seed} failed: see {ROOT}/train_{s}_{seed}.log")
            cpu = {"cpu_s": ru.ru_utime + ru.ru_stime}
            (ROOT / f"train_{s}_{seed}.json").write_text(json.dumps(cpu))
        for s in SETTINGS:
            for split in ("val", "test"):
                if (eval_dir(s, split, seed, seeds) / "metrics.json").exists():
                    continue
                subprocess.run(
                    [
                        DYNPATH,
                        "--params",
                        str(params[s]),
                        "evaluate",
                        "--variant",
                        "dynamic",
                        "--vocab",
                        "outputs/vocab",
                        "--models",
                        str(ROOT / s / "models"),
                        "--out",
                        str(ROOT / s / f"eval_{split}"),
                        "--split",
                        split,
                        "--seed",
                        str(seed),
                    ],
                    check=True,
                )


def summary(seeds: list[int]) -> None:
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for s in SETTINGS:
        for seed in seeds:
            train = json.loads((model_dir(s, seed, seeds) / "train_summary.json").read_text())
            cpu = json.loads((ROOT / f"train_{s}_{seed}.json").read_text())["cpu_s"]
            r = {
                "wall_s": float(train["wall_seconds"]),
                "cpu_s": cpu,
                "best_epoch": train.get("best_epoch"),
            }
            for split in ("val", "test"):
                m = json.loads((eval_dir(s, split, seed, seeds) / "metrics.json").read_text())
                r.update({f"{split}_{k}": float(m[k]) for k in METRICS})  # percent
            rows[(s, seed)] = r
    cols = [f"{sp}_{k}" for sp in ("val", "test") for k in METRICS] + ["wall_s", "cpu_s"]
    print("| setting | seed | best epoch | " + " | ".join(cols) + " |")
    print("|" + " --- |" * (len(cols) + 3))
    for (s, seed), r in rows.items():
        vals = " | ".join(f"{r[c]:.1f}" for c in cols)
        print(f"| {s} | {seed} | {r['best_epoch']} | {vals} |")
    print("\n| quantity | " + " | ".join(cols) + " |")
    print("|" + " --- |" * (len(cols) + 1))
    for s in SETTINGS:
        cells = []
        for c in cols:
            xs = [rows[(s, seed)][c] for seed in seeds]
            cells.append(f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}")
        print(f"| {s} mean ± sd | " + " | ".join(cells) + " |")
    for seed in seeds:
        d = [rows[("bf16", seed)][c] - rows[("fp32", seed)][c] for c in cols]
        print(f"| bf16 - fp32, seed {seed} | " + " | ".join(f"{x:+.1f}" for x in d) + " |")
    cells = []
    n = len(seeds)
    for c in cols:
        d = [rows[("bf16", seed)][c] - rows[("fp32", seed)][c] for seed in seeds]
        m, sd = statistics.mean(d), statistics.stdev(d)
        h = stats.t.ppf(0.975, n - 1) * sd / n**0.5
        cells.append(f"{m:+.1f} [{m - h:+.1f}, {m + h:+.1f}]")
    print(f"| mean diff [95% t-CI, n={n}] | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["run", "summary"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[12345, 7, 8])
    a = ap.parse_args()
    (run if a.mode == "run" else summary)(a.seeds)
    if a.mode == "run":
        summary(a.seeds)


if __name__ == "__main__":
    main()
