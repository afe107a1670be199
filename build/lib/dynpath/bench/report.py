"""The targets of the performance issue, their pass/fail check and the printed table."""

from __future__ import annotations

import math
from typing import Any

#: Targets of the performance issue (ratios are dynamic / other).
TARGETS = {
    "dynamic_vs_soft_latency_max": 0.55,
    "dynamic_vs_exploitation_latency_max": 1.15,
    "loader_share_max": 0.05,
    "train_peak_fraction_min": 0.65,
    "dvc_noop_seconds_max": 5.0,
    # GPU targets (issue 17; one H100/H200-class GPU)
    "gpu_dynamic_samples_per_s_min": 500.0,
    "gpu_ablation_hours_max": 4.0,
    "gpu_extraction_hours_max": 1.0,
}


def _dvc_noop_seconds(dvc: dict[str, Any]) -> float | None:
    for key in ("noop", "noop_here"):
        if "seconds" in dvc.get(key, {}):
            return float(dvc[key]["seconds"])
    return None


def _get(r: dict[str, Any], *keys: str) -> Any:
    """r[k1][k2]... or None when a section was not run."""
    for k in keys:
        if not isinstance(r, dict) or k not in r:
            return None
        r = r[k]
    return r


def check_targets(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target of the issue: measured value, limit, pass/FAIL (or n/a when not measured).

    The GPU targets (Charades-scale training rate, ablation hours, extraction hours) are judged
    on CUDA only: on a CPU the same figures are reported but no GPU target applies.
    """
    gpu = r["env"]["device"].startswith("cuda")
    rows: dict[str, tuple[Any, float, str]] = {
        "dynamic <= 0.55x soft_dynamic latency (p50, one query)": (
            _get(r, "inference", "ratios", "dynamic_vs_soft_p50"),
            TARGETS["dynamic_vs_soft_latency_max"],
            "max",
        ),
        "dynamic <= 1.15x exploitation_only latency (p50, one query)": (
            _get(r, "inference", "ratios", "dynamic_vs_exploitation_p50"),
            TARGETS["dynamic_vs_exploitation_latency_max"],
            "max",
        ),
        "data loading < 5% of a training step (first epoch)": (
            _get(r, "data", "loader_share_first_epoch"),
            TARGETS["loader_share_max"],
            "max",
        ),
        "data loading < 5% of a training step (cached epochs)": (
            _get(r, "data", "loader_share"),
            TARGETS["loader_share_max"],
            "max",
        ),
        "train step (paper config) >= 65% of the best fp32 matmul peak": (
            _get(r, "train_paper", "peak_fraction"),
            TARGETS["train_peak_fraction_min"],
            "min",
        ),
        "no-op dvc repro < 5 s": (
            _dvc_noop_seconds(r["dvc"]) if "dvc" in r else None,
            TARGETS["dvc_noop_seconds_max"],
            "max",
        ),
    }
    if gpu:
        rows["GPU: Charades-scale dynamic training >= 500 samples/s"] = (
            _get(r, "charades", "archs", "dynamic", "samples_per_s"),
            TARGETS["gpu_dynamic_samples_per_s_min"],
            "min",
        )
        rows["GPU: ten-variant Charades-STA ablation <= 4 h"] = (
            _get(r, "charades", "ablation", "ten_variants_hours"),
            TARGETS["gpu_ablation_hours_max"],
            "max",
        )
        rows["GPU: Charades-STA extraction (i3d@224, network only) <= 1 h"] = (
            _get(r, "charades_extraction", "hours"),
            TARGETS["gpu_extraction_hours_max"],
            "max",
        )
    out: dict[str, dict[str, Any]] = {}
    for name, (value, limit, kind) in rows.items():
        if r["env"]["quick"]:
            status = "n/a (--quick: tiny shapes)"
        elif value is None or (isinstance(value, float) and math.isnan(value)):
            status = "n/a"
        elif kind == "max":
            status = "pass" if value <= limit else "FAIL"
        else:
            status = "pass" if value >= limit else "FAIL"
        out[name] = {"value": value, "limit": limit, "status": status}
    return out


def _env_lines(r: dict[str, Any]) -> list[str]:
    """The machine, its load and the matmul peaks of each path."""
    env = r["env"]
    load = env.get("load_average_start", ["?"])[0]
    loaded = env["device"] == "cpu" and isinstance(load, float) and load > env["cpus"] / 2
    return [
        f"{env['device_name']} ({env['device']}), {env['threads']} threads, torch "
        f"{env['torch']}, load average {load}{'  [--quick: tiny shapes]' if env['quick'] else ''}",
        *(
            [
                "WARNING: the machine was busy (load average above half its CPUs): wall times "
                "include waiting; the CPU-time figures are the robust ones"
            ]
            if loaded
            else []
        ),
        *(
            f"matmul {name:<21} {row['gflops']:8.1f} GFLOP/s (n={row['n']})"
            + ("  <- fp32 peak" if name == r["matmul_peaks"]["best_fp32"] else "")
            for name, row in r["matmul_peaks"]["paths"].items()
        ),
    ]


def _train_lines(tp: dict[str, Any], td: dict[str, Any] | None) -> list[str]:
    """The training step at the paper's and the default profile's shapes."""
    lines = [
        f"peak used for the step       {tp['matmul_peak']['gflops']:8.1f} GFLOP/s "
        f"({tp['matmul_peak']['dtype']}, {tp['matmul_peak']['path']}, in the step's rounds)",
        f"train step (paper config)    {tp['samples_per_s']:8.2f} samples/s  "
        f"{tp['achieved_gflops']:.1f} GFLOP/s = {100 * tp['peak_fraction']:.0f}% of peak "
        f"({100 * tp['peak_fraction_cpu_time']:.0f}% by CPU time; GEMMs on {tp['gemm']})",
    ]
    if "gemm_paths" in tp:
        lines.append(
            "train step per GEMM library  "
            + ", ".join(
                f"{k} {v['step_s']:.2f} s ({100 * v['peak_fraction']:.0f}%)"
                for k, v in tp["gemm_paths"].items()
                if isinstance(v, dict)
            )
        )
    if td is not None:
        lines.append(
            f"train step (default profile) {td['samples_per_s']:8.2f} samples/s  "
            f"{100 * td['peak_fraction']:.0f}% of peak"
        )
    peer = tp["peer_lstm_measured"]
    lines.append(
        f"bare nn.LSTM step            oneDNN {100 * peer['onednn']['peak_fraction']:.0f}% / "
        f"native {100 * peer['native']['peak_fraction']:.0f}% of peak"
    )
    for op in tp.get("top_operators", [])[:5]:
        lines.append(f"  {op['op'][:40]:<40} {100 * op['share']:5.1f}%  ({op['calls']} calls)")
    return lines


def _inference_lines(lat: dict[str, Any]) -> list[str]:
    """Latency and throughput of the timed architectures."""
    lines = []
    for arch in ("dynamic", "soft_dynamic", "exploitation_only"):
        row = lat[arch]
        lines.append(
            f"infer {arch:<22} p50 {row['p50_ms']:8.1f} ms  p95 {row['p95_ms']:8.1f} ms  "
            f"{row['queries_per_s']:7.1f} q/s @ batch {row['batch']}"
        )
    if "dynamic[balanced]" in lat:
        row = lat["dynamic[balanced]"]
        lines.append(
            f"infer dynamic (balanced)      {row['queries_per_s']:36.1f} q/s @ batch {row['batch']}"
        )
    return lines


def _charades_lines(ch: dict[str, Any]) -> list[str]:
    """The Charades-STA-shaped workload and the projected ablation."""
    lines = [f"Charades-STA workload ({ch['source']}; scale {ch['scale']})"]
    for arch, row in ch["archs"].items():
        frac = row.get("peak_fraction_estimate")
        lines.append(
            f"  train {arch:<20} {row['samples_per_s']:8.2f} samples/s, loader "
            f"{100 * row['loader_share']:.1f}%"
            + (f", ~{100 * frac:.0f}% of peak" if frac is not None else "")
            + (f", eval {row['eval_queries_per_s']:.1f} q/s" if "eval_queries_per_s" in row else "")
        )
    hours = ch["ablation"]["ten_variants_hours"]
    if hours is not None:
        lines.append(
            f"  ten-variant ablation, {ch['ablation']['epochs']} epochs  {hours:8.2f} h "
            "(projected, one seed)"
        )
    return lines


def _other_lines(r: dict[str, Any]) -> list[str]:
    """The MS-LSTM, data-loading, extraction and DVC sections that ran."""
    lines = []
    if "mslstm" in r:
        ms = r["mslstm"]
        lines.append(
            f"MS-LSTM batched vs loop      {ms['inference']['speedup']:8.2f}x (inference)  "
            f"{ms['inference_batch1']['speedup']:.2f}x (one query)  "
            f"{ms['training']['speedup']:.2f}x (training)"
        )
    if "data" in r:
        d = r["data"]
        lines.append(
            f"data loader share of step    {100 * d['loader_share_first_epoch']:8.2f}% first "
            f"epoch, {100 * d['loader_share']:.2f}% cached; HDF5 read "
            f"{d['hdf5_read_mb_per_s']:.0f} MB/s"
        )
    for name, row in r.get("extraction", {}).items():
        lines.append(f"extract {name:<20} {row['clips_per_s']:8.1f} clips/s ({row['precision']})")
    if "charades_extraction" in r:
        lines.append(
            f"Charades-STA extraction      {r['charades_extraction']['hours']:8.2f} h "
            "(i3d@224, network only, projected)"
        )
    return lines


def _dvc_lines(dvc: dict[str, Any]) -> list[str]:
    labels = (
        ("full", "full dvc repro"),
        ("noop", "no-op dvc repro"),
        ("noop_here", "no-op dvc repro (here)"),
    )
    return [
        f"{label:<28} {dvc[key]['seconds']:8.2f} s"
        for key, label in labels
        if "seconds" in dvc.get(key, {})
    ]


def format_table(r: dict[str, Any]) -> str:
    """A short human-readable summary of the JSON (the sections that ran)."""
    lines = _env_lines(r)
    if "train_paper" in r:
        lines += _train_lines(r["train_paper"], r.get("train_default"))
    if "inference" in r:
        lines += _inference_lines(r["inference"])
    lines += _other_lines(r)
    if "charades" in r:
        lines += _charades_lines(r["charades"])
    lines += _dvc_lines(r.get("dvc", {}))
    lines += [
        f"[{v['status']}] {k}: {v['value'] if v['value'] is None else round(v['value'], 3)}"
        for k, v in r["targets"].items()
    ]
    return "\n".join(lines)
