"""`dynpath bench --quick`: every section runs on tiny shapes and lands in the JSON (a smoke test
of the benchmark; its figures are measured by the full run, see docs/performance.md)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dynpath import bench
from dynpath.cli import main
from dynpath.config import Config, ModelConfig
from dynpath.extract.backbones import BACKBONES
from dynpath.profiles import resolve

ARCHS = ("dynamic", "soft_dynamic", "exploitation_only")


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """One quick run (module-scoped: ~10 s) through the CLI, from a directory without dvc.yaml:
    the summary it prints (JSON, after the table) and the JSON file it writes."""
    tmp = tmp_path_factory.mktemp("bench")
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(resolve("tiny"), sort_keys=False))
    Config.model_validate(resolve("tiny"))  # the profile is valid as written
    argv = ["--params", str(params), "bench", "--quick", "--output", str(tmp / "bench.json")]
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.chdir(tmp)
        code = main([*argv, "--device", "cpu"])
    assert code == 0, out.getvalue()[-3000:]
    printed = out.getvalue()
    summary = json.loads(printed[printed.rindex("\n{\n") + 1 :])  # the last thing printed
    return summary, json.loads((tmp / "bench.json").read_text())


@pytest.mark.slow  # a real benchmark run (the fast suite stays under a minute)
def test_quick_run_writes_every_section(quick: tuple[dict[str, Any], dict[str, Any]]) -> None:
    summary, r = quick
    assert set(r) == {
        "env",
        "matmul_peaks",
        "train_paper",
        "train_default",
        "inference",
        "mslstm",
        "data",
        "extraction",
        "dvc",
        "default",
        "localize",
        "targets",
    }
    assert r["env"]["quick"] is True and r["env"]["device"] == "cpu"
    assert "outputs/models/dynamic" in r["localize"]["skipped"]  # run where no model was trained
    assert r["env"]["cpu_flags"] and r["env"]["torch_cpu_capability"]  # instruction sets
    for key in ("train_paper", "train_default"):
        t = r[key]
        assert t["samples_per_s"] > 0 and t["flops_per_step"] > 0
        assert 0 < t["peak_fraction"] <= 1 and t["matmul_peak"]["gflops"] > 0
        assert all(0 < f <= 1 for f in t["peak_fraction_all"])  # never above the peak
        assert len(t["step_s_all"]) == len(t["peak_fraction_all"]) == 2
    tp = r["train_paper"]
    assert tp["shape"] == bench.QUICK_SHAPE
    assert tp["top_operators"] and all(0 <= op["share"] <= 1 for op in tp["top_operators"])
    assert tp["float64_ops"] == {}  # no float64 anywhere in a training step
    assert tp["lstm_kernels"]["aten::lstm calls"] > 0
    assert set(tp["peer_lstm_measured"]) == {"flops", "onednn", "native"}
    for arch in ARCHS:
        row = r["inference"][arch]
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["queries_per_s"] > 0
    assert r["inference"]["dynamic[balanced]"]["exploitation_share"] == 0.5
    assert set(r["inference"]["ratios"]) >= {"dynamic_vs_soft_p50", "dynamic_vs_exploitation_p50"}
    for mode in ("inference", "training"):
        assert r["mslstm"][mode]["speedup"] > 0
    d = r["data"]
    assert d["hdf5_read_mb_per_s"] > 0 and 0 < d["loader_share"] < 1
    assert 0 < d["loader_share_first_epoch"] < 1 and d["collate_ms"] > 0
    assert {k.split("@")[0] for k in r["extraction"]} == set(BACKBONES.names())
    assert all(row["clips_per_s"] > 0 for row in r["extraction"].values())
    assert "skipped" in r["dvc"]  # no dvc.yaml in the working directory
    assert set(summary["targets"]) == set(r["targets"])
    assert all(v["status"].startswith("n/a") for v in r["targets"].values())


def test_variant_latency_rows_and_balanced_routes() -> None:
    """The one per-variant latency: a row per variant, a ``[balanced]`` twin only for a hard
    selector (half the batch each way, same weights otherwise), route shares only with a
    selector, every timed repeat kept."""
    cfg = ModelConfig(dim=16, heads=2, text_lstm_layers=1, dropout=0.0)
    batch = bench.random_batch(4, 8, 8, 3, bench.VOCAB, seed=0)
    cpu = torch.device("cpu")
    rows = bench.variant_latency(
        ARCHS, cfg, batch, seed=0, device=cpu, repeats=2, warmup=0, balanced=True
    )
    assert list(rows) == [*ARCHS, "dynamic[balanced]"]
    assert all(len(r.wall) == len(r.cpu) == 2 and min(r.wall) > 0 for r in rows.values())
    assert rows["dynamic[balanced]"].exploitation_share == 0.5
    assert rows["soft_dynamic"].exploitation_share is not None
    assert rows["exploitation_only"].exploitation_share is None
    natural = bench.variant_latency(
        ARCHS, cfg, batch, seed=0, device=cpu, repeats=1, warmup=0, balanced=False
    )
    assert list(natural) == list(ARCHS)
    # the balanced twin is the natural model with only FC_3's bias moved
    twin = bench.balance_routes(bench.bench_model("dynamic", cfg, 8, 0).eval(), batch)
    base = bench.bench_model("dynamic", cfg, 8, 0).state_dict()
    moved = {k for k, v in twin.state_dict().items() if not torch.equal(v, base[k])}
    assert moved == {"fusion.fc.bias"}
    with pytest.raises(TypeError, match="soft_dynamic"):
        bench.balance_routes(bench.bench_model("soft_dynamic", cfg, 8, 0), batch)


@pytest.mark.slow  # a real benchmark run (the fast suite stays under a minute)
def test_flop_count_sees_the_lstms(quick: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The counting pass (oneDNN off) must see the LSTM matmuls: they match the analytic count
    from the sequences each LSTM received (biases and gate non-linearities not counted by
    either), and are a real part of the step's total."""
    tp = quick[1]["train_paper"]
    counted, analytic = tp["lstm_flops_counted"], tp["lstm_flops_analytic"]
    assert analytic > 0
    assert counted == pytest.approx(analytic, rel=0.05)
    assert counted < tp["flops_per_step"]


def test_flop_counter_misses_onednn_lstm_which_is_why_it_is_switched_off() -> None:
    lstm = torch.nn.LSTM(8, 8, batch_first=True)
    x = torch.randn(2, 5, 8)
    with torch.utils.flop_counter.FlopCounterMode(display=False) as fc:
        lstm(x)
    on = fc.get_total_flops()
    total, _ = bench.count_flops(lambda: lstm(x))
    assert total == 2 * 2 * 5 * 4 * 8 * (8 + 8)  # 2*N*4H*(I+H), forward only
    assert on < total


@pytest.mark.slow  # a real benchmark run (the fast suite stays under a minute)
def test_table_and_targets(
    quick: tuple[dict[str, Any], dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    r = json.loads(json.dumps(quick[1]))
    table = bench.format_table(r)
    assert "<- fp32 peak" in table and "infer dynamic" in table and "[n/a" in table
    # Judged like a full run: each target flips with its value.
    r["env"]["quick"] = False
    r["dvc"] = {"noop": {"seconds": 1.2}}
    r["inference"]["ratios"].update(dynamic_vs_soft_p50=0.5, dynamic_vs_exploitation_p50=1.2)
    r["data"].update(loader_share=0.01, loader_share_first_epoch=0.06)
    r["train_paper"]["peak_fraction"] = 0.7
    status = {k: v["status"] for k, v in bench.check_targets(r).items()}
    assert status == {
        "dynamic <= 0.55x soft_dynamic latency (p50, one query)": "pass",
        "dynamic <= 1.15x exploitation_only latency (p50, one query)": "FAIL",
        "data loading < 5% of a training step (first epoch)": "FAIL",
        "data loading < 5% of a training step (cached epochs)": "pass",
        "train step (paper config) >= 65% of the best fp32 matmul peak": "pass",
        "no-op dvc repro < 5 s": "pass",
    }
    r["dvc"] = {"skipped": "no dvc.lock"}
    assert bench.check_targets(r)["no-op dvc repro < 5 s"]["status"] == "n/a"


def test_random_batch_is_valid_with_varied_query_lengths() -> None:
    b = bench.random_batch(8, 12, 5, 6, 50, seed=0)
    assert b.video.shape == (8, 12, 5) and b.video_mask.all()
    lengths = b.word_mask.sum(1)
    assert lengths.max() == 6 and lengths.min() >= 3 and len(set(lengths.tolist())) > 1
    assert (b.words[~b.word_mask] == 0).all() and (b.words[b.word_mask] >= 2).all()
    assert (b.start <= b.end).all() and (b.end < 12).all()
    assert torch.equal(b.inner.sum(1), (b.end - b.start + 1).float())


@pytest.mark.slow  # a real benchmark run (the fast suite stays under a minute)
def test_cli_quick_writes_json(quick: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """``dynpath bench --quick --output X`` (the module's run) wrote X, a quick run's JSON, and
    printed a summary of that file's figures."""
    summary, r = quick
    assert r["env"]["quick"] is True and r["env"]["device"] == "cpu"
    assert Path(summary["output"]).name == "bench.json"
    assert summary["targets"] == {k: v["status"] for k, v in r["targets"].items()}


@pytest.mark.slow  # a real benchmark run (the fast suite stays under a minute)
def test_peak_is_the_best_fp32_path_with_bf16_beside(
    quick: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    mp = quick[1]["matmul_peaks"]
    paths = mp["paths"]
    assert {"fp32_mm", "bf16_mm"} <= set(paths)
    fp32 = {k: v["gflops"] for k, v in paths.items() if k.startswith("fp32")}
    assert mp["best_fp32"] == max(fp32, key=fp32.__getitem__)
    assert mp["best_fp32_gflops"] == max(fp32.values())
    assert not mp["best_fp32"].startswith("bf16")  # bf16 is reported, never the fp32 peak
    tp = quick[1]["train_paper"]
    assert tp["gemm"] in ("mkl", "onednn")
    if "gemm_paths" in tp:  # both libraries timed on the same step
        assert {"mkl", "onednn"} <= set(tp["gemm_paths"])


def test_peak_fraction_is_clipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    peak = bench.MatmulPeak(torch.device("cpu"), 16)
    # a step "faster than the peak": 2x the peak's FLOP/s in round 1, half of it in round 2
    flops = peak.flops
    with caplog.at_level("WARNING"):
        fractions, raw_max = bench.peak_fractions(flops, [0.5, 2.0], peak, [1.0, 1.0])
    assert fractions == [1.0, 0.5] and raw_max == 2.0
    assert "peak is too low" in caplog.text
    caplog.clear()
    fractions, raw_max = bench.peak_fractions(flops, [2.0], peak, [1.0])
    assert fractions == [0.5] and raw_max == 0.5 and not caplog.text


def _charades(tmp_path: Path, root: Path) -> dict[str, Any]:
    from dynpath.config import ModelConfig

    cfg = Config.model_validate(resolve("tiny"))
    cfg = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"root": str(root), "max_len": 40})}
    )
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"batch_size": 8})})
    model = ModelConfig.model_validate({**bench.QUICK_MODEL, "dim": 16, "heads": 2})
    peak = bench.MatmulPeak(torch.device("cpu"), 64)
    return bench.charades_workload(cfg, torch.device("cpu"), 1e-4, model, 16, peak=peak)


@pytest.mark.slow  # a real benchmark run (the fast suite stays under a minute)
def test_charades_workload_generated_list_has_the_real_counts(tmp_path: Path) -> None:
    r = _charades(tmp_path, tmp_path / "absent")
    assert r["source"].startswith("generated")
    assert (r["train_queries"], r["test_queries"]) == (12404, 3720)
    assert r["videos"] == 5338 + 1334
    assert 0 < r["clips_per_video"]["capped_share"] < 1  # lengths vary around max_len 40
    assert set(r["archs"]) == set(ARCHS)
    for row in r["archs"].values():
        assert row["steps_timed"] == 2 and row["samples_per_s"] > 0
        assert 0 <= row["loader_share"] < 1 and 0 < row["peak_fraction_estimate"] <= 1
        assert row["flops_per_sample_first_batch"] > 0 and row["peak_rss_mb_process"] > 0
    assert r["archs"]["dynamic"]["eval_queries_per_s"] > 0
    ab = r["ablation"]
    assert set(ab["rate_of"]) == set(bench.ABLATION_RATE_OF)
    assert ab["epochs"] == Config.model_validate(resolve("tiny")).train.epochs
    per = ab["per_variant_hours"]
    assert ab["ten_variants_hours"] == pytest.approx(sum(per.values()))
    # variants take the rate of the timed architecture with the same pathways
    assert per["sum_fusion"] == per["soft_dynamic"]


@pytest.mark.slow  # a real benchmark run (the fast suite stays under a minute)
def test_charades_workload_reads_the_real_annotations(tmp_path: Path, shared_data: Path) -> None:
    r = _charades(tmp_path, shared_data / "charades_sta")
    assert r["source"].startswith("real annotations")
    assert (r["train_queries"], r["test_queries"]) == (12404, 3720)


def test_sections_option_is_validated() -> None:
    assert bench.parse_sections("all") == bench.SECTIONS
    assert bench.parse_sections("paper, charades") == ("paper", "charades")
    with pytest.raises(ValueError, match="unknown gpu"):
        bench.parse_sections("paper,gpu")


@pytest.mark.slow  # a real benchmark run (the fast suite stays under a minute)
def test_default_section_keys(quick: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Every variant timed at 1 and 2 threads, dynamic beside its reference paths, and a
    profiler split (operators vs overhead) with the top operators."""
    d = quick[1]["default"]
    assert set(d) >= {"shape", "variants", "threads"}
    assert d["threads"] == [1, 2]
    assert set(d["shape"]) == {"batch", "clips", "min_clips", "feature_dim", "words"}
    assert {"dynamic", "dynamic[reference]", "exploitation_only"} <= set(d["variants"])
    for row in d["variants"].values():
        for n in (1, 2):
            cell = row[f"threads_{n}"]
            assert cell["samples_per_s"] > 0 and cell["samples_per_s_cpu_time"] > 0
        prof = row["profile"]
        assert prof["operator_ms"] > 0 and prof["operator_calls"] > 0
        assert 0.0 <= prof["overhead_share"] <= 1.0
        assert prof["top_operators"] and prof["top_operators"][0]["op"].startswith("aten::")
    for n in (1, 2):
        speedup = d[f"dynamic_speedup_vs_reference_threads_{n}"]
        assert speedup["wall"] > 0 and speedup["cpu"] > 0


def test_localize_section_without_a_model_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The section as the bench calls it, from a directory without a trained model (the quick
    run's check, ``test_quick_run_writes_every_section``, covers its place in the JSON)."""
    from dynpath.bench.localize import localize_stages
    from dynpath.config import Config

    monkeypatch.chdir(tmp_path)
    cfg = Config.model_validate(resolve("tiny"))
    assert "outputs/models/dynamic" in localize_stages(cfg, None)["skipped"]
    missing = str(tmp_path / "nope")
    assert localize_stages(cfg, missing) == {
        "skipped": f"no model at {missing} (train one, or pass --localize-model)"
    }


def test_localize_probe_splits_a_call_into_stages(tmp_path: Path) -> None:
    """The probe's stages on a model directory it can load: keys and non-negative seconds."""
    from mlflow_server import make_model_dir

    from dynpath.bench.localize import STAGES, probe

    model = make_model_dir(tmp_path)
    stages = probe(str(model), None, "person opens the door")
    assert set(stages) == set(STAGES)
    assert all(v >= 0.0 for v in stages.values())


@pytest.mark.slow  # two fresh interpreters
def test_localize_section_times_the_fresh_interpreters_torch_import(tmp_path: Path) -> None:
    """The stage split's import_torch is the real import (it read ~0 s when the probe timed it
    after its own package had already imported torch)."""
    from mlflow_server import make_model_dir

    from dynpath.bench.localize import localize_stages
    from dynpath.config import Config

    cfg = Config.model_validate({"data": {"videos": str(tmp_path / "no-videos")}})
    out = localize_stages(cfg, str(make_model_dir(tmp_path)))
    assert out["stages_s"]["import_torch"] > 0.05, out
    assert out["probe_process_s"] >= out["stages_total_s"]
