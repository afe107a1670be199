"""Markdown tables of the ablation study from its report summary (docs/study.md's tables).

    python scripts/study_tables.py docs/study/summary.json > /tmp/tables.md

Prints: the ablation over seeds (mean +- sd of R@1 at each IoU and mIoU, the paired bootstrap
difference against ``dynamic`` with its 95% interval and width), how each variant's seeds ended
(early stop or epoch cap, best epochs, still rising), and the routes per seed of the selector
variants (shares, collapse, whether the route follows the query family).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KEYS = ("r1_iou0.3", "r1_iou0.5", "r1_iou0.7", "miou")


def _ms(seeds: dict[str, Any], key: str) -> str:
    mean, sd = seeds["mean"].get(key), seeds["sd"].get(key)
    return "–" if mean is None else f"{mean:.1f} ± {sd:.1f}" if sd is not None else f"{mean:.1f}"


def ablation(s: dict[str, Any]) -> list[str]:
    out = [
        "| variant | seeds | R@1 IoU0.3 | R@1 IoU0.5 | R@1 IoU0.7 | mIoU | Δ R@1 IoU0.5 vs dynamic "
        "[95% CI] | CI half-width |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in s["order"]:
        v = s["variants"][name]
        seeds = v["seeds"]
        vs = v.get("vs_dynamic")
        if vs is None:
            delta, width = "reference", "–"
        else:
            mark = " *" if vs["excludes_zero"] else ""
            delta = f"{vs['diff']:+.2f} [{vs['low']:+.2f}, {vs['high']:+.2f}]{mark}"
            width = f"{max(vs['diff'] - vs['low'], vs['high'] - vs['diff']):.2f}"
        cells = [_ms(seeds, k) for k in KEYS]
        out.append(
            f"| {v['display']} | {seeds['n']} | " + " | ".join(cells) + f" | {delta} | {width} |"
        )
    return out


def stops(s: dict[str, Any]) -> list[str]:
    out = [
        "| variant | early stops | best epochs (per seed) | epochs trained | still rising |",
        "|---|---|---|---|---|",
    ]
    for name in s["order"]:
        v = s["variants"][name]
        st = v.get("stops") or {}
        early = sum(x["stopped"] == "early_stop" for x in st.values())
        best = ", ".join(str(x["best_epoch"]) for x in st.values())
        trained = ", ".join(str(x["epochs"]) for x in st.values())
        rising = v.get("still_rising")
        seeds = v.get("still_rising_seeds") or []
        flag = f"yes ({', '.join(map(str, seeds))})" if rising else "no"
        out.append(f"| {v['display']} | {early}/{len(st)} | {best} | {trained} | {flag} |")
    return out


def routes(s: dict[str, Any]) -> list[str]:
    rs = s.get("routes_by_seed")
    if not rs:
        return ["(no selector variant evaluated)"]
    out = [
        "| variant | seed | → exploitation % | ordered sub-actions → exploitation % | "
        "held posture → exploration % | collapsed | family gap | follows family |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant, seeds in rs["seeds"].items():
        for seed, r in seeds.items():
            out.append(
                f"| {s['variants'][variant]['display']} | {seed} | "
                f"{100 * r['share_exploitation']:.1f} | "
                f"{100 * r.get('exploitation_share_exploitation', float('nan')):.1f} | "
                f"{100 * r.get('exploration_share_exploration', float('nan')):.1f} | "
                f"{'yes' if r['collapsed'] else 'no'} | {r['family_gap']:+.1f} | "
                f"{r['follows_family']} |"
            )
    return out


def main() -> None:
    s = json.loads(Path(sys.argv[1]).read_text())
    for title, lines in (
        ("Ablation over seeds", ablation(s)),
        ("How training ended", stops(s)),
        ("Routes per seed", routes(s)),
    ):
        print(f"### {title}\n")
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
