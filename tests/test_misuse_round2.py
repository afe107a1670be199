"""Unit checks of issue 26's fixes that the CLI corpus (tests/data/bad_inputs_round2.yaml)
cannot see: a warning rather than an error, and the helpers' own edge cases."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dynpath.data.vocab import Vocabulary
from dynpath.engine.checkpoint import check_features, check_vocab
from dynpath.errors import CheckpointError

WORDS = ["<pad>", "<unk>", "person", "door", "opens"]


def _vocab(words: list[str], lowercase: bool = True) -> Vocabulary:
    return Vocabulary(words, lowercase=lowercase)


def test_fingerprint_depends_on_ids_and_case_rule_only() -> None:
    base = _vocab(WORDS).fingerprint()
    assert base == _vocab(list(WORDS)).fingerprint()
    assert base != _vocab([*WORDS[:2], "door", "person", "opens"]).fingerprint()
    assert base != _vocab(WORDS, lowercase=False).fingerprint()
    assert base.startswith("sha256:") and len(base) == 7 + 64


def test_check_vocab_refuses_same_size_other_ids_naming_both_files() -> None:
    meta = {"vocab_size": 5, "vocab_sha256": _vocab(WORDS).fingerprint()}
    other = _vocab([*WORDS[:2], "door", "person", "opens"])
    with pytest.raises(CheckpointError) as info:
        check_vocab(meta, len(other), other.fingerprint(), Path("v"), Path("m/best.pt"))
    assert "v/vocab.json: not the vocabulary m/best.pt was trained with" in str(info.value)


def test_check_vocab_only_warns_for_a_checkpoint_without_fingerprint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        check_vocab({"vocab_size": 5}, 5, "sha256:x", Path("v"), Path("old.pt"))
    assert "old.pt records no vocabulary fingerprint" in caplog.text
    with pytest.raises(CheckpointError, match=r"vocabulary has 4 words but old\.pt"):
        check_vocab({"vocab_size": 5}, 4, "sha256:x", Path("v"), Path("old.pt"))


def test_check_features_compares_recorded_attributes_only() -> None:
    ident = {"backbone": "i3d", "fps": 25, "window": 16}
    check_features({}, ident, Path("f.h5"), Path("best.pt"))  # an old checkpoint: unchecked
    check_features({"features_identity": ident}, dict(ident), Path("f.h5"), Path("best.pt"))
    with pytest.raises(CheckpointError, match=r"f\.h5: not the features best\.pt .*fps 24 vs 25"):
        check_features(
            {"features_identity": ident}, {**ident, "fps": 24}, Path("f.h5"), Path("best.pt")
        )
