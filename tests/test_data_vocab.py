"""Tokenizer, GloVe reader, vocabulary policy, save/load, and the vocab step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dynpath.config import Config
from dynpath.data.types import Moment
from dynpath.data.vocab import (
    PAD_ID,
    UNK_ID,
    Vocabulary,
    build_vocabulary,
    read_glove,
    tokenize,
)
from dynpath.errors import DataError

DIM = 4


def vec(seed: int) -> list[float]:
    return [round(float(x), 4) for x in np.random.default_rng(seed).standard_normal(DIM)]


def glove_line(token: str, seed: int) -> str:
    return token + " " + " ".join(str(v) for v in vec(seed)) + "\n"


@pytest.fixture
def glove(tmp_path: Path) -> Path:
    lines = [
        glove_line(",", 0),
        glove_line("person", 1),
        glove_line("opens", 2),
        glove_line("the", 3),
        glove_line("door", 4),
        glove_line("at . com", 5),  # token with spaces (glove.840B has such lines)
        glove_line("person", 6),  # repeated token: the first one wins
        glove_line("laughs", 7),
        glove_line("don't", 8),
        "broken 1.0 2.0\n",
    ]
    path = tmp_path / "glove.test.4d.txt"
    path.write_text("".join(lines))
    return path


def moments(split: str, queries: list[str]) -> list[Moment]:
    return [Moment(f"{split}{i}", f"v{i}", q, 0.0, 1.0, 2.0, split) for i, q in enumerate(queries)]


def test_tokenize() -> None:
    assert tokenize("Person opens the door, then LEAVES.") == [
        "person",
        "opens",
        "the",
        "door",
        "then",
        "leaves",
    ]
    assert tokenize("Don't stop!", lowercase=False) == ["Don't", "stop"]
    assert tokenize("?! ...") == []


def test_glove_reader_tokens_with_spaces_and_repeats(glove: Path) -> None:
    found, stats = read_glove(glove, {"person", "at . com", "door", "missing"}, DIM)
    assert set(found) == {"person", "at . com", "door"}
    np.testing.assert_allclose(found["at . com"], vec(5), rtol=1e-6)
    np.testing.assert_allclose(found["person"], vec(1), rtol=1e-6)  # first occurrence
    assert found["door"].dtype == np.float32
    everything, stats = read_glove(glove, None, DIM)
    assert len(everything) == 8 and stats["malformed"] == 1 and stats["repeated"] == 1


def test_glove_reader_rejects_wrong_dim_and_missing_file(glove: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"4 values but vocab\.dim is 300"):
        read_glove(glove, None, 300)
    with pytest.raises(DataError, match=r"4 values but vocab\.dim is 2"):
        read_glove(glove, None, 2)
    with pytest.raises(DataError, match="not found"):
        read_glove(tmp_path / "none.txt", None, DIM)


def test_build_with_glove_policy(glove: Path) -> None:
    splits = {
        "train": moments("train", ["Person opens the door.", "person zorbles the door"]),
        "val": moments("val", ["person laughs"]),
        "test": moments("test", ["the person flumps, don't"]),
    }
    vocab, report = build_vocabulary(splits, embeddings=glove, dim=DIM, seed=3)
    # train words with a vector + other-split words with a vector; zorbles/flumps -> UNK
    assert vocab.words[:2] == ["<pad>", "<unk>"]
    assert set(vocab.words[2:]) == {"person", "opens", "the", "door", "laughs", "don't"}
    assert vocab.words[2] in {"person", "the", "door"}  # most frequent train words first
    assert "zorbles" not in vocab and report["oov_train_words"] == 1
    assert report["pretrained"] is True and report["other_split_words_added"] == 2
    assert report["coverage"]["train"] == pytest.approx(7 / 8)
    e = vocab.embeddings
    assert e is not None and e.dtype == np.float32 and e.shape == (8, DIM)
    assert not e[PAD_ID].any() and 0 < np.abs(e[UNK_ID]).max() < 1
    np.testing.assert_allclose(e[vocab.word2id["door"]], vec(4), rtol=1e-6)
    assert vocab.encode("The person zorbles!") == [
        vocab.word2id["the"],
        vocab.word2id["person"],
        UNK_ID,
    ]
    assert len(vocab.encode(" ".join(["door"] * 50))) == 30
    assert len(vocab.encode("door door door", max_len=2)) == 2
    with pytest.raises(DataError, match="query q9"):
        vocab.encode("...", qid="q9")


def test_build_without_embeddings_is_explicit(tmp_path: Path) -> None:
    splits = {"train": moments("train", ["a b c", "a b"]), "test": moments("test", ["a d"])}
    v1, report = build_vocabulary(splits, embeddings=None, dim=DIM, seed=1)
    v2, _ = build_vocabulary(splits, embeddings=None, dim=DIM, seed=1)
    v3, _ = build_vocabulary(splits, embeddings=None, dim=DIM, seed=2)
    assert report["pretrained"] is False and "NOT pretrained" in report["warning"]
    assert v1.words == ["<pad>", "<unk>", "a", "b", "c"] and "d" not in v1
    assert v1.embeddings is not None and v2.embeddings is not None and v3.embeddings is not None
    np.testing.assert_array_equal(v1.embeddings, v2.embeddings)
    assert not np.array_equal(v1.embeddings, v3.embeddings)
    with pytest.raises(DataError, match="embedding file not found"):
        build_vocabulary(splits, embeddings=tmp_path / "absent.txt", dim=DIM)


def test_build_rejects_file_that_matches_nothing(glove: Path) -> None:
    splits = {"train": moments("train", ["zz yy"]), "test": moments("test", ["zz"])}
    with pytest.raises(DataError, match="none of the 2 training words"):
        build_vocabulary(splits, embeddings=glove, dim=DIM)


def test_save_load_round_trip(tmp_path: Path, glove: Path) -> None:
    splits = {"train": moments("train", ["Person opens the door"]), "test": []}
    vocab, report = build_vocabulary(
        splits, embeddings=glove, dim=DIM, lowercase=False, max_query_len=3
    )
    vocab.save(tmp_path / "v", report)
    assert json.loads((tmp_path / "v" / "vocab.json").read_text())["<pad>"] == 0
    assert json.loads((tmp_path / "v" / "vocab_report.json").read_text())["size"] == len(vocab)
    loaded = Vocabulary.load(tmp_path / "v")
    assert loaded.words == vocab.words and loaded.lowercase is False
    assert loaded.max_query_len == 3
    assert loaded.embeddings is not None and vocab.embeddings is not None
    np.testing.assert_array_equal(loaded.embeddings, vocab.embeddings)
    assert loaded.encode("Person opens the door") == vocab.encode("Person opens the door")
    assert loaded.encode("person")[0] == UNK_ID  # case-sensitive vocabulary kept its setting
    with pytest.raises(DataError, match="run `dynpath vocab`"):
        Vocabulary.load(tmp_path / "nothing")


def test_vocab_step_writes_outputs(tmp_path: Path, glove: Path) -> None:
    from dynpath.steps import vocab as step

    root = tmp_path / "data"
    root.mkdir()
    train = "".join(f"V{i:03d} 1.0 5.0##the person opens the door\n" for i in range(20))
    (root / "charades_sta_train.txt").write_text(train + "V000 9.0 2.0##bad line\n")
    (root / "charades_sta_test.txt").write_text("T000 1.0 2.0##person laughs\n")
    durs = {f"V{i:03d}": {"duration": 10.0} for i in range(20)} | {"T000": {"duration": 5.0}}
    (root / "charades.json").write_text(json.dumps(durs))
    cfg = Config.model_validate(
        {
            "data": {"dataset": "charades_sta", "root": str(root)},
            "vocab": {"embeddings": str(glove), "dim": DIM},
        }
    )
    out = step.run(cfg, tmp_path / "out")
    assert out["moments"] == {"train": 18, "val": 2, "test": 1} and out["pretrained"] is True
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["data_report.json", "embeddings.npy", "vocab.json", "vocab_report.json"]
    data_report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert data_report["skipped_by_reason"]["train"] == {"start >= end": 1}
    assert data_report["carved"]["val_videos"] == 2
    assert Vocabulary.load(tmp_path / "out").encode("person laughs")[1] != UNK_ID
