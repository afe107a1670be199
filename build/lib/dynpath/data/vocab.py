"""Tokenizer, vocabulary and word vectors (frozen GloVe, PAD = 0 zero vector, UNK = 1 trainable).

The policy follows VSLNet/EAMAT, which the paper builds on:

* tokens are ``re.findall(r"[\\w']+|[^\\w\\s]")`` of the (lowercased) query, pure punctuation
  dropped; queries are truncated to ``vocab.max_query_len`` (30) tokens;
* with an embedding file, the vocabulary is the TRAINING words that have a vector plus the words of
  the other splits that have one (frozen vectors carry no training signal, so this leaks nothing);
  words without a vector map to UNK;
* without an embedding file (``vocab.embeddings: null``) every training word gets a seeded random
  vector, other-split words map to UNK, and ``vocab_report.json`` says ``pretrained: false`` with a
  warning. A configured path that does not exist is an error, never a silent fallback.

The GloVe reader streams the file (glove.840B.300d.txt is 5.6 GB) and parses vectors only for the
words needed. Some 840B lines have tokens containing spaces: the LAST ``dim`` fields are the vector
and the rest, joined by spaces, is the token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dynpath.errors import DataError
from dynpath.io import atomic_path, write_json

if TYPE_CHECKING:
    from dynpath.config import Config
    from dynpath.data.types import Moment

log = logging.getLogger(__name__)

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
UNK_STD = 0.1  # UNK row init: small random, the model trains it

_TOKEN_RE = re.compile(r"[\w']+|[^\w\s]")
_WORD_RE = re.compile(r"\w")


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Word tokens of ``text``: punctuation split off and dropped (VSLNet/EAMAT)."""
    if lowercase:
        text = text.lower()
    return [t for t in _TOKEN_RE.findall(text) if _WORD_RE.search(t)]


def has_words(text: str) -> bool:
    """True when :func:`tokenize` yields at least one token (used by the readers)."""
    return _WORD_RE.search(text) is not None


def read_glove(
    path: str | Path, words: Collection[str] | None, dim: int
) -> tuple[dict[str, NDArray[np.float32]], dict[str, int]]:
    """Vectors of ``words`` (all when None) from a GloVe text file, and reading statistics.

    The first occurrence of a token wins (glove.840B has a few repeats). A word2vec-style header
    line (``count dim``) is skipped. A file whose first vector line does not have ``dim`` values
    is rejected (wrong file or wrong ``vocab.dim``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: embedding file not found (vocab.embeddings)")
    wanted = None if words is None else set(words)
    found: dict[str, NDArray[np.float32]] = {}
    stats = {"lines": 0, "malformed": 0, "repeated": 0}
    from tqdm import tqdm

    size = os.path.getsize(path)
    with (
        open(path, encoding="utf-8", errors="replace") as fh,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"reading {path.name}",
            disable=True if size < 200_000_000 else None,  # None: on a terminal only
        ) as bar,
    ):
        pending = 0
        checked = False
        for number, line in enumerate(fh, 1):
            pending += len(line)
            if pending > 1 << 24:
                bar.update(pending)
                pending = 0
            line = line.rstrip()
            if not line:
                continue
            stats["lines"] += 1
            spaces = line.count(" ")
            if number == 1 and spaces == 1 and all(p.isdigit() for p in line.split(" ")):
                continue  # word2vec header
            if not checked:
                # The first vector line must have exactly `dim` values: catches a 100-d file read
                # with dim 300 (and the reverse, which would otherwise just match no word).
                checked = True
                if spaces != dim:
                    raise DataError(
                        f"{path}:{number}: {spaces} values but vocab.dim is {dim} "
                        "(wrong file or wrong dim?)"
                    )
            if spaces < dim:
                stats["malformed"] += 1
                continue
            # Fast path: one space per value means the token has none.
            token = line[: line.index(" ")] if spaces == dim else line.rsplit(" ", dim)[0]
            if wanted is not None and token not in wanted:
                continue
            if token in found:
                stats["repeated"] += 1
                continue
            try:
                vec = np.asarray(line.rsplit(" ", dim)[1:], dtype=np.float32)
            except ValueError:
                stats["malformed"] += 1
                continue
            if not np.isfinite(vec).all():
                stats["malformed"] += 1
                continue
            found[token] = vec
            if wanted is not None and len(found) == len(wanted):
                break  # first occurrence wins, so nothing later can change the result
        bar.update(pending)
    stats["found"] = len(found)
    return found, stats


class Vocabulary:
    """Word <-> id mapping (0 = PAD, 1 = UNK) with its tokenizer settings and embedding matrix."""

    def __init__(
        self,
        words: Sequence[str],
        lowercase: bool = True,
        max_query_len: int = 30,
        embeddings: NDArray[np.float32] | None = None,
    ) -> None:
        if list(words[:2]) != [PAD, UNK]:
            raise ValueError(f"vocabulary must start with {PAD!r}, {UNK!r}")
        self.words = list(words)
        self.word2id = {w: i for i, w in enumerate(self.words)}
        if len(self.word2id) != len(self.words):
            raise ValueError("vocabulary words must be unique")
        self.lowercase = lowercase
        self.max_query_len = max_query_len
        if embeddings is not None and embeddings.shape[0] != len(self.words):
            raise ValueError(
                f"embeddings have {embeddings.shape[0]} rows for {len(self.words)} words"
            )
        self.embeddings = embeddings

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.word2id

    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the word ids (the ordered word list) and the case rule.

        The identity a checkpoint records (``meta["vocab_sha256"]``): a vocabulary of the same
        size with other word ids loads into the same shapes and silently gives other spans, so
        its readers compare this, not only the size."""
        text = json.dumps({"words": self.words, "lowercase": self.lowercase}, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()

    def tokenize(self, query: str) -> list[str]:
        return tokenize(query, self.lowercase)

    def encode(self, query: str, max_len: int | None = None, qid: str | None = None) -> list[int]:
        """Word ids of ``query`` (unknown words -> UNK), truncated to ``max_len`` tokens."""
        tokens = self.tokenize(query)
        if not tokens:
            raise DataError(f"query {qid or '?'}: no word tokens in {query!r}")
        limit = self.max_query_len if max_len is None else max_len
        return [self.word2id.get(t, UNK_ID) for t in tokens[:limit]]

    def save(self, directory: str | Path, report: Mapping[str, Any] | None = None) -> None:
        """Write ``vocab.json`` (word -> id), ``embeddings.npy`` and ``vocab_report.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.embeddings is not None:
            with (
                atomic_path(directory / "embeddings.npy", suffix=".npy") as tmp,
                open(tmp, "wb") as fh,
            ):
                np.save(fh, self.embeddings.astype(np.float32, copy=False))
        full = dict(report or {})
        full.update(lowercase=self.lowercase, max_query_len=self.max_query_len, size=len(self))
        write_json(directory / "vocab_report.json", full)
        write_json(directory / "vocab.json", self.word2id)

    @classmethod
    def load(cls, directory: str | Path) -> Vocabulary:
        """Read a directory written by :meth:`save` (the embeddings when present)."""
        directory = Path(directory)
        path = directory / "vocab.json"
        if not path.is_file():
            raise DataError(f"{path}: vocabulary not found (run `dynpath vocab` first)")
        try:
            word2id = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON: {err}") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text") from None
        if not isinstance(word2id, dict):
            raise DataError(f"{path}: expected a JSON object {{word: id}}")
        words = [""] * len(word2id)
        for w, i in word2id.items():
            if not isinstance(i, int) or not 0 <= i < len(words) or words[i]:
                raise DataError(f"{path}: ids must be 0..{len(words) - 1}, each once ({w!r})")
            words[i] = w
        meta: dict[str, Any] = {}
        if (directory / "vocab_report.json").is_file():
            try:
                meta = json.loads((directory / "vocab_report.json").read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise DataError(f"{directory / 'vocab_report.json'}: not valid JSON") from None
            if not isinstance(meta, dict):
                raise DataError(f"{directory / 'vocab_report.json'}: expected a JSON object")
        emb = None
        if (directory / "embeddings.npy").is_file():
            try:
                emb = np.load(directory / "embeddings.npy", allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                first = str(err).splitlines()[0][:200]
                raise DataError(
                    f"{directory / 'embeddings.npy'}: not a readable .npy array ({first})"
                ) from None
        try:
            return cls(
                words,
                lowercase=bool(meta.get("lowercase", True)),
                max_query_len=int(meta.get("max_query_len", 30)),
                embeddings=emb,
            )
        except ValueError as err:
            raise DataError(f"{directory}: {err}") from None


def build_vocabulary(
    splits: Mapping[str, Sequence[Moment]],
    *,
    embeddings: str | Path | None,
    dim: int = 300,
    lowercase: bool = True,
    max_query_len: int = 30,
    seed: int = 12345,
) -> tuple[Vocabulary, dict[str, Any]]:
    """Vocabulary and embedding matrix of ``splits`` (policy: see the module docstring)."""
    if "train" not in splits or not splits["train"]:
        raise DataError("cannot build a vocabulary without training moments")
    counts: dict[str, Counter[str]] = {}
    for split, moments in splits.items():
        c: Counter[str] = Counter()
        for m in moments:
            tokens = tokenize(m.query, lowercase)
            if not tokens:
                raise DataError(f"query {m.qid} ({split}): no word tokens in {m.query!r}")
            c.update(tokens[:max_query_len])
        counts[split] = c
    train = counts["train"]
    others: Counter[str] = Counter()
    for split, c in counts.items():
        if split != "train":
            others.update(c)
    rng = np.random.default_rng(seed)
    unk = rng.normal(0.0, UNK_STD, size=dim).astype(np.float32)
    by_freq = sorted(train, key=lambda w: (-train[w], w))
    report: dict[str, Any] = {"dim": dim, "seed": seed, "unk_init": f"normal(0, {UNK_STD})"}

    if embeddings is None:
        words = by_freq
        vectors = rng.normal(0.0, 1.0 / np.sqrt(dim), size=(len(words), dim)).astype(np.float32)
        warning = (
            "vocab.embeddings is null: random seeded word vectors (NOT pretrained GloVe); "
            "results are not comparable with the paper"
        )
        log.warning(warning)
        report.update(pretrained=False, embeddings=None, warning=warning)
    else:
        path = Path(embeddings)
        if not path.is_file():
            raise DataError(f"{path}: embedding file not found (vocab.embeddings; null = random)")
        found, stats = read_glove(path, set(train) | set(others), dim)
        if not any(w in found for w in train):
            raise DataError(
                f"{path}: none of the {len(train)} training words has a vector "
                "(wrong file, or vocab.lowercase does not match it?)"
            )
        extra = sorted(w for w in others if w not in train and w in found)
        words = [w for w in by_freq if w in found] + extra
        vectors = np.stack([found[w] for w in words]).astype(np.float32)
        report.update(
            pretrained=True,
            embeddings=str(path),
            glove_lines_read=stats["lines"],
            glove_malformed_lines=stats["malformed"],
            other_split_words_added=len(extra),
        )
    matrix = np.concatenate([np.zeros((1, dim), np.float32), unk[None, :], vectors], axis=0)
    vocab = Vocabulary([PAD, UNK, *words], lowercase, max_query_len, matrix)

    def coverage(c: Counter[str]) -> float:
        total = sum(c.values())
        return round(sum(n for w, n in c.items() if w in vocab) / total, 6) if total else 0.0

    oov_train = sorted(w for w in train if w not in vocab)
    report.update(
        size=len(vocab),
        train_words=len(train),
        oov_train_words=len(oov_train),
        oov_train_examples=oov_train[:50],
        coverage={split: coverage(c) for split, c in counts.items()},  # token occurrences
    )
    return vocab, report


def build_from_config(
    splits: Mapping[str, Sequence[Moment]], cfg: Config
) -> tuple[Vocabulary, dict[str, Any]]:
    """:func:`build_vocabulary` with the settings of ``cfg.vocab`` and ``cfg.seed``."""
    return build_vocabulary(
        splits,
        embeddings=cfg.vocab.embeddings,
        dim=cfg.vocab.dim,
        lowercase=cfg.vocab.lowercase,
        max_query_len=cfg.vocab.max_query_len,
        seed=cfg.seed,
    )


def load_vocab(vocab_dir: Path) -> Vocabulary:
    """The vocabulary a model is built on: with its word vectors, which training, evaluation and
    the benchmark all need (a vocabulary without them is an error naming the file to produce)."""
    vocab = Vocabulary.load(vocab_dir)
    if vocab.embeddings is None:
        raise DataError(f"{vocab_dir}/embeddings.npy: word vectors not found (run `dynpath vocab`)")
    return vocab
