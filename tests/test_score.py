"""``dynpath score``: a predictions file scored against the annotations, in both formats.

The agreement test trains the real model for two epochs on a small generated JSONL set, runs
the real ``evaluate`` step and scores its ``predictions.jsonl`` (and the same predictions
rewritten in the Moment-DETR/Lighthouse format): the metrics must equal metrics.json's to 0.01.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dynpath.cli import main
from dynpath.config import Config
from dynpath.engine.from_config import ranking_ks
from dynpath.errors import DataError
from dynpath.steps import score

KEYS = [f"r{k}_iou{m}" for k in (1, 5) for m in ("0.3", "0.5", "0.7")] + ["miou"]


def _jsonl_dataset(root: Path, test: list[dict[str, Any]]) -> Path:
    """A JSONL annotation set: two train videos (needed to carve val) and ``test``."""
    root.mkdir(parents=True, exist_ok=True)
    train = [
        {"qid": f"t{i}", "vid": f"tv{i}", "query": "a man walks", "duration": 10.0,
         "relevant_windows": [[1.0, 3.0]]}
        for i in range(4)
    ]  # fmt: skip
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return root


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


TEST = [
    {"qid": "q1", "vid": "v1", "query": "a dog runs", "duration": 20.0,
     "relevant_windows": [[2.0, 6.0]]},
    {"qid": "q2", "vid": "v1", "query": "the dog sleeps", "duration": 20.0,
     "relevant_windows": [[10.0, 12.0], [15.0, 19.0]]},
    {"qid": "q3", "vid": "v2", "query": "a cat jumps", "duration": 8.0,
     "relevant_windows": [[0.0, 4.0]]},
]  # fmt: skip


def test_external_format_any_window_hit_and_text_matching(tmp_path: Path) -> None:
    root = _jsonl_dataset(tmp_path / "data", TEST)
    preds = _write(
        tmp_path / "preds.jsonl",
        [
            {"qid": "q1", "vid": "v1", "query": "a dog runs",
             "pred_relevant_windows": [[2.0, 6.0, 0.9], [0.0, 1.0, 0.1]]},
            # hits the SECOND window of q2 exactly: a hit (the rule for several windows)
            {"qid": "q2", "vid": "v1", "query": "the dog sleeps",
             "pred_relevant_windows": [[15.0, 19.0, 0.8]]},
            # no qid: matched by (video, text), case and spaces ignored; top-1 misses, top-2 hits
            {"vid": "v2", "query": "A  cat jumps",
             "pred_relevant_windows": [[6.0, 8.0, 0.7], [0.0, 4.0, 0.2]]},
        ],
    )  # fmt: skip
    out = score.run(Config(), preds, "jsonl", root)
    assert out["format"] == "moment_detr" and out["n"] == 3 and out["multi_window"] == 1
    assert out["r1_iou0.7"] == pytest.approx(200 / 3)
    assert out["r5_iou0.7"] == pytest.approx(100.0)
    assert out["miou"] == pytest.approx(200 / 3)  # IoUs 1, 1 and 0


def test_missing_queries_are_an_error_unless_allowed(tmp_path: Path) -> None:
    root = _jsonl_dataset(tmp_path / "data", TEST)
    preds = _write(tmp_path / "p.jsonl", [{"qid": "q1", "topk": [[2.0, 6.0, 1.0]]}])
    with pytest.raises(DataError, match=r"2 of 3 queries .* have no prediction"):
        score.run(Config(), preds, "jsonl", root)
    out = score.run(Config(), preds, "jsonl", root, allow_missing=True)
    assert (out["n"], out["missing"], out["r1_iou0.5"]) == (1, 2, 100.0)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"qid": "q1", "topk": [[2.0, 6.0, 1.0]]}', '{"qid": "q2", "topk": [[1'],
         r"p\.jsonl:2: not valid JSON .*truncated"),
        (['{"qid": "q1", "spans": []}'], r"p\.jsonl:1: needs 'topk'"),
        (['{"qid": "q1", "topk": [[2.0, "x"]]}'], r"p\.jsonl:1: 'topk' holds"),
        (['{"qid": "q1", "topk": []}', '{"qid": "q1", "topk": []}'],
         r"p\.jsonl:2: query 'q1' predicted again \(first on line 1\)"),
        (['{"qid": "q1", "topk": []}', '{"qid": "q9", "pred_relevant_windows": []}'],
         r"p\.jsonl:2: mixes"),
        # another dataset's predictions: Charades-STA qids and videos
        (['{"qid": "test-1", "vid": "AO8RW", "query": "a person opens a door", "topk": []}'],
         r"p\.jsonl:1: query 'test-1' \(video 'AO8RW'\) is not in the test split of jsonl"
         r".*1 of 1 lines match no annotation"),
        # a known qid of another video: a colliding id from another dataset
        (['{"qid": "q1", "vid": "zzz", "topk": []}'], r"p\.jsonl:1: query 'q1' \(video 'zzz'\)"),
    ],
)  # fmt: skip
def test_bad_predictions_are_named(tmp_path: Path, lines: list[str], message: str) -> None:
    root = _jsonl_dataset(tmp_path / "data", TEST)
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        score.run(Config(), preds, "jsonl", root, allow_missing=True)


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    root = _jsonl_dataset(tmp_path / "data", TEST)
    truncated = tmp_path / "p.jsonl"
    truncated.write_text('{"qid": "q1", "topk": [[2.0, 6.0, 1.0]]}\n{"qid": "q2", "to')
    cases = {
        str(tmp_path / "absent.jsonl"): "absent.jsonl: predictions file not found",
        str(truncated): "p.jsonl:2: not valid JSON",
        str(_write(tmp_path / "charades.jsonl", [{"qid": "test-1", "vid": "AO8RW", "topk": []}])): (
            "charades.jsonl:1: query 'test-1' (video 'AO8RW') is not in the test split of jsonl"
        ),
    }
    before = sorted(p.name for p in tmp_path.iterdir())
    for path, expected in cases.items():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "dynpath.cli",
                "score",
                path,
                "--dataset",
                "jsonl",
                "--root",
                str(root),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert lines[0].startswith("dynpath score: error: ") and expected in lines[0]
        assert done.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_ks_are_the_evaluators() -> None:
    for topk in (1, 5, 10):
        cfg = Config.model_validate({"eval": {"topk": topk}})
        assert score.run.__module__ == "dynpath.steps.score"
        assert ranking_ks(cfg) == ((1,) if cfg.eval.topk == 1 else (1, cfg.eval.topk))


def test_agrees_with_evaluate_on_its_own_predictions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from test_engine_steps import _write_dataset, make_cfg

    from dynpath.steps import evaluate, train
    from dynpath.steps import vocab as vocab_step

    before = torch.get_num_threads()
    _write_dataset(tmp_path, n_videos=12)
    cfg = make_cfg(tmp_path, epochs=2)
    vocab_step.run(cfg, tmp_path / "vocab")
    train.run(cfg, "dynamic", tmp_path / "vocab", tmp_path / "models", resume=False)
    metrics = evaluate.run(cfg, "dynamic", tmp_path / "vocab", tmp_path / "models", tmp_path / "ev")
    torch.set_num_threads(before)

    ours = score.run(cfg, tmp_path / "ev" / "predictions.jsonl", "jsonl", tmp_path)
    assert ours["format"] == "dynpath" and ours["n"] == metrics["n"] and ours["missing"] == 0
    for key in KEYS:
        assert abs(ours[key] - metrics[key]) <= 0.01, key

    # the same predictions as Moment-DETR/Lighthouse write them, through the CLI
    external = [
        {"qid": p["qid"], "vid": p["vid"], "query": p["query"], "pred_relevant_windows": p["topk"]}
        for p in map(json.loads, (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines())
    ]
    path = _write(tmp_path / "external.jsonl", external)
    assert main(["score", str(path), "--dataset", "jsonl", "--root", str(tmp_path)]) == 0
    theirs = json.loads(capsys.readouterr().out)
    assert theirs["format"] == "moment_detr"
    for key in KEYS:
        assert abs(theirs[key] - metrics[key]) <= 0.01, key
