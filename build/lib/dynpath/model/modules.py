"""The exploitation (Sec. III-B) and exploration (Sec. III-C) modules, built from a small spec.

A module is: network pair -> context-query attention with F_q -> a second network pair.

- Exploitation (coarse-to-fine): GoL then LoL, CQA, then GoL then LoL again.
- Exploration (point-to-area): SpL then TeN, CQA, then SpL then TeN again.

Order of the second pair (docs/design.md, "Modules"): Eq. 9 as printed, F_e1 = GoL(LoL(.)),
applies LoL *before* GoL, the reverse of the module's own order; Eq. 12 as printed,
F_e2 = TeN(SpL(.)), is the module's own order. ``cfg.model.second_order = "module"`` (default)
keeps the module's order for both; ``"printed"`` follows the equations, which only changes the
exploitation module (``PathwaySpec.printed_reverses_second``).

Ablations are specs too: "w/o LML" replaces LoL by GoL, "w/o TE" replaces TeN by SpL, and
"network parallel" sums the two networks of each pair, net_a(x) + net_b(x), instead of chaining
them, net_b(net_a(x)) (the paper: "we stack the networks in parallel"), in one module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from dynpath.config import ModelConfig
from dynpath.model.layers import (
    ContextQueryAttention,
    GlobalMotion,
    Masks,
    TemporalConvStack,
    conv_block,
)
from dynpath.registry import Registry

NetworkFactory = Callable[[ModelConfig], nn.Module]

#: Network kinds by the paper's names. GoL and TeN share an architecture (Eq. 6, 11), as do LoL
#: and SpL (Eq. 7, 10); each instance has its own weights.
NETWORKS: Registry[NetworkFactory] = Registry("network")


def _global(cfg: ModelConfig) -> nn.Module:
    return GlobalMotion(
        cfg.dim, cfg.heads, cfg.lstm_scales, cfg.dropout, cfg.ffn_dropout, cfg.lstm_bidirectional
    )


def _temporal_conv(cfg: ModelConfig) -> nn.Module:
    blocks = [
        conv_block(cfg.dim, cfg.kernels, cfg.ffn_dropout, cfg.conv_block_form, cfg.dropout)
        for _ in range(cfg.conv_blocks)
    ]
    # one block keeps the block itself (and its state-dict names)
    return blocks[0] if len(blocks) == 1 else TemporalConvStack(blocks)


NETWORKS.add("gol", _global)
NETWORKS.add("ten", _global)
NETWORKS.add("lol", _temporal_conv)
NETWORKS.add("spl", _temporal_conv)


@dataclass(frozen=True)
class PathwaySpec:
    """One module: its route name, its two networks in module order, and how they combine."""

    name: str  # "exploitation" | "exploration" (ModelOutput.ROUTE_NAMES)
    networks: tuple[str, str]  # NETWORKS names, in the module's order
    parallel: bool = False  # "network parallel": net_a(x) + net_b(x)
    printed_reverses_second: bool = False  # Eq. 9 as printed reverses the second pair


EXPLOITATION = PathwaySpec("exploitation", ("gol", "lol"), printed_reverses_second=True)
EXPLORATION = PathwaySpec("exploration", ("spl", "ten"))


class NetworkPair(nn.Module):
    """Two networks applied in sequence (b(a(x))) or, for "network parallel", summed."""

    def __init__(self, first: nn.Module, second: nn.Module, parallel: bool) -> None:
        super().__init__()
        self.first = first
        self.second = second
        self.parallel = parallel

    def forward(self, x: Tensor, masks: Masks) -> Tensor:
        if self.parallel:
            return self.first(x, masks) + self.second(x, masks)
        return self.second(self.first(x, masks), masks)


class Pathway(nn.Module):
    """An exploitation or exploration module: pair -> CQA(., F_q) -> pair (Eq. 6-12).

    ``pre`` produces F_v^c (exploitation) or F_v^td (exploration) from F_v; ``cqa`` fuses F_q
    (Eq. 8); ``post`` gives F_e1 (Eq. 9) or F_e2 (Eq. 12). Output is zero at padded positions.
    """

    def __init__(self, spec: PathwaySpec, cfg: ModelConfig) -> None:
        super().__init__()
        self.spec = spec
        a, b = spec.networks
        self.pre = NetworkPair(NETWORKS.get(a)(cfg), NETWORKS.get(b)(cfg), spec.parallel)
        self.cqa = ContextQueryAttention(cfg.dim, cfg.dropout, cfg.ffn_dropout)
        if cfg.second_order == "printed" and spec.printed_reverses_second:
            a, b = b, a
        self.post = NetworkPair(NETWORKS.get(a)(cfg), NETWORKS.get(b)(cfg), spec.parallel)

    def forward(self, fv: Tensor, fq: Tensor, masks: Masks) -> Tensor:
        x = self.pre(fv, masks)
        x = self.cqa(x, fq, masks)
        return self.post(x, masks)
