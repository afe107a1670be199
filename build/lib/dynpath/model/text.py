"""Feature encoding module (paper Sec. III-A): query encoder (Eq. 1) and video encoder (Eq. 2)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dynpath.errors import DynpathError
from dynpath.model.layers import FFN, Dropout, Masks, masked_softmax

PAD_ID = 0
UNK_ID = 1


class TextEncoder(nn.Module):
    """Eq. 1: F_q = FFN_1(BiLSTM(Q)); alpha = softmax(FC_2(ReLU(FC_1(F_q)))); F_s = alpha^T F_q.

    Word vectors: the pretrained matrix (row 0 PAD = zeros, row 1 UNK) is a *buffer*, frozen and
    never a Parameter, so no optimizer can touch it and it receives no gradient; out-of-vocabulary
    words (id 1) use a separate trainable ``unk`` vector (docs/design.md, "Encoders"),
    initialised from row 1. The buffer is saved in checkpoints so they are self-contained.

    The BiLSTM has ``cfg.model.text_lstm_layers`` layers of d/2 units per direction (so its output
    is d wide; the paper does not give the width), inter-layer dropout, and runs on *packed*
    sequences: the backward direction would otherwise start from padding and leak it into every
    valid token. Queries are short (<= 30 words), so packing costs little here.

    Token pooling (FC_1 d -> d/2, FC_2 d/2 -> 1, softmax over valid tokens) is built only when the
    variant has a selector: F_s feeds nothing but FC_3 (Eq. 13), and parameters that can never get
    a gradient would only inflate the parameter count.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        dim: int,
        layers: int,
        dropout: float,
        pool: bool,
        ffn_dropout: float | None = None,
    ) -> None:
        super().__init__()
        vectors = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        if vectors.ndim != 2 or vectors.shape[0] < 2:
            raise DynpathError(
                f"word embeddings must be a [V >= 2, dim] matrix (row 0 PAD, row 1 UNK), "
                f"got shape {tuple(vectors.shape)}"
            )
        self.vectors: Tensor
        self.register_buffer("vectors", vectors.clone())
        self.unk = nn.Parameter(vectors[UNK_ID].clone())
        self.drop = Dropout(dropout)
        hidden = dim // 2
        self.lstm = nn.LSTM(
            vectors.shape[1],
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.ffn = FFN(2 * hidden, dim, dropout if ffn_dropout is None else ffn_dropout)
        self.pool: nn.Sequential | None = None
        if pool:
            # FC_1, delta, FC_2. FC_2 has no bias: a constant added to every token's score
            # cancels in the softmax over tokens, so it could never receive a gradient.
            self.pool = nn.Sequential(
                nn.Linear(dim, dim // 2), nn.ReLU(), nn.Linear(dim // 2, 1, bias=False)
            )

    @property
    def vocab_size(self) -> int:
        return int(self.vectors.shape[0])

    def embed(self, words: Tensor) -> Tensor:
        """Frozen vectors with the trainable UNK substituted where the id is UNK."""
        emb = nn.functional.embedding(words, self.vectors)
        return torch.where(words.eq(UNK_ID).unsqueeze(-1), self.unk, emb)

    def forward(self, words: Tensor, masks: Masks) -> tuple[Tensor, Tensor | None]:
        """Return F_q [B, L, d] (zero at padded words) and F_s [B, d] (None without pooling)."""
        max_words = words.shape[1]
        emb = self.drop(self.embed(words))
        # Lengths must live on the CPU for packing; clamp keeps an (invalid) empty query harmless.
        lengths = masks.words.sum(1).clamp(min=1).cpu()
        if bool((lengths == max_words).all()):
            # No padding (e.g. one query): packing would change nothing but the kernel, so run
            # the plain fused LSTM (oneDNN/cuDNN) and skip the pack/sort/unpack work.
            seq, _ = self.lstm(emb)
        else:
            packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            seq, _ = pad_packed_sequence(out, batch_first=True, total_length=max_words)
        fq = self.ffn(seq).masked_fill(~masks.words.unsqueeze(-1), 0.0)
        if self.pool is None:
            return fq, None
        alpha = masked_softmax(self.pool(fq).squeeze(-1), masks.words, dim=1)  # [B, L]
        fs = torch.einsum("bl,bld->bd", alpha, fq)
        return fq, fs


class VideoEncoder(nn.Module):
    """Eq. 2: F_v = FFN_2(clip features), feature_dim (1024 I3D, 4096 C3D, ...) -> d.

    Dropout on the input features as in VSLNet's visual projection, and after the ReLU (FFN).
    Padded positions are zeroed on output.
    """

    feature_mean: Tensor
    feature_inv_std: Tensor

    def __init__(
        self,
        feature_dim: int,
        dim: int,
        dropout: float,
        normalize: bool = False,
        ffn_dropout: float | None = None,
    ) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.normalize = normalize
        if normalize:
            # Training-split statistics (set_statistics), saved in the state dict so that every
            # consumer of a checkpoint (evaluate, the Localizer, the MLflow model) normalises
            # exactly as training did.
            self.register_buffer("feature_mean", torch.zeros(feature_dim))
            self.register_buffer("feature_inv_std", torch.ones(feature_dim))
        self.drop = Dropout(dropout)
        self.ffn = FFN(feature_dim, dim, dropout if ffn_dropout is None else ffn_dropout)

    @torch.no_grad()
    def set_statistics(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Per-dimension mean and standard deviation of the training features.

        Dimensions that barely vary in training (a background cell, a dead unit) would be blown
        up by their tiny standard deviation, so it is floored at 1% of the mean one.
        """
        if not self.normalize:
            raise DynpathError("set_statistics on a video encoder built without normalize")
        if mean.shape != (self.feature_dim,) or std.shape != (self.feature_dim,):
            raise DynpathError(
                f"feature statistics are {mean.shape}/{std.shape}, expected ({self.feature_dim},)"
            )
        sd = torch.as_tensor(std, dtype=torch.float32)
        sd = sd.clamp_min(max(float(sd.mean()) * 0.01, 1e-12))
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_inv_std.copy_(sd.reciprocal())

    def forward(self, video: Tensor, masks: Masks) -> Tensor:
        if video.shape[-1] != self.feature_dim:
            raise DynpathError(
                f"video features are {video.shape[-1]}-d but the model was built for "
                f"{self.feature_dim}-d features (backbone mismatch between extract and train?)"
            )
        if self.normalize:
            video = (video - self.feature_mean.to(video.dtype)) * self.feature_inv_std.to(
                video.dtype
            )
        return masks.zero_pad(self.ffn(self.drop(video)))
