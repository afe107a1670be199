"""The report's figures as PNG files (matplotlib, Agg): training curves, ablation bars, routes.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through ``pyplot``: no global
figure state, no GUI backend, so the report step works on headless machines and in threads. PNGs
are written atomically and without a timestamp, so the same results give the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dynpath.engine.metrics import metric_key
from dynpath.io import atomic_path
from dynpath.report.results import ROUTES, VariantResult
from dynpath.variants import PAPER_VARIANT

DPI = 110


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return path


def training_curves(results: Sequence[VariantResult], selection_metric: str, path: Path) -> Path:
    """Training loss and the validation selection metric per epoch, one line per variant."""
    fig = Figure(figsize=(11, 4.2))
    ax_loss, ax_val = fig.subplots(1, 2)
    val_key = f"val_{selection_metric}"
    for r in results:
        epochs = [h.get("epoch") for h in r.history]
        loss = [h.get("train_loss") for h in r.history]
        val = [h.get(val_key) for h in r.history]
        style = {
            "linewidth": 2.4 if r.name == PAPER_VARIANT else 1.2,
            "marker": "o",
            "markersize": 3,
        }
        if any(v is not None for v in loss):
            ax_loss.plot(epochs, loss, label=r.display, **style)
        if any(v is not None for v in val):
            ax_val.plot(epochs, val, label=r.display, **style)
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    ax_val.set(title=f"validation {selection_metric}", xlabel="epoch", ylabel="%")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = ax_val.get_legend_handles_labels()
    if not handles:
        handles, labels = ax_loss.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def ablation_bars(
    results: Sequence[VariantResult],
    thresholds: Sequence[float],
    published: Mapping[str, Mapping[str, float]] | None,
    path: Path,
) -> Path:
    """R@1 at the middle threshold and mIoU per variant, the shuffled control as a hatched bar,
    and the paper's value as a black tick when the dataset has published numbers."""
    key = metric_key(1, 0.5) if 0.5 in thresholds else metric_key(1, thresholds[0])
    panels = [(key, key.replace("r1_iou", "R@1 IoU≥")), ("miou", "mIoU")]
    fig = Figure(figsize=(11, 0.45 * max(len(results), 2) + 1.4))
    axes = fig.subplots(1, 2, sharey=True)
    names = [r.display for r in results]
    ys = list(range(len(results)))
    for ax, (k, title) in zip(axes, panels, strict=True):
        real = [r.metric(k) or 0.0 for r in results]
        shuf = [r.shuffled(k) or 0.0 for r in results]
        ax.barh([y - 0.18 for y in ys], real, height=0.36, label="test", color="#3b6fb6")
        ax.barh(
            [y + 0.18 for y in ys],
            shuf,
            height=0.36,
            label="shuffled-video control",
            color="#bbbbbb",
            hatch="//",
        )
        if published:
            pts = [(published.get(r.name) or {}).get(k) for r in results]
            py = [y for y, p in zip(ys, pts, strict=True) if p is not None]
            px = [p for p in pts if p is not None]
            if px:
                ax.scatter(px, py, marker="|", s=220, color="black", label="paper", zorder=3)
        for y, v in zip(ys, real, strict=True):
            ax.text(v + 0.5, y - 0.18, f"{v:.1f}", va="center", fontsize=7)
        ax.set(title=title, xlabel="%", xlim=(0, 100))
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, names)
    axes[0].invert_yaxis()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, -0.06), ncol=3, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def route_shares(results: Sequence[VariantResult], path: Path) -> Path | None:
    """Share of test queries routed to each module, for the variants with a selector."""
    rows = [r for r in results if r.has_routes]
    if not rows:
        return None
    fig = Figure(figsize=(8, 0.45 * max(len(rows), 2) + 1.2))
    ax = fig.subplots()
    ys = list(range(len(rows)))
    left = [0.0] * len(rows)
    colours = {"exploitation": "#d9822b", "exploration": "#2b9d8f"}
    for route in ROUTES:
        share = [100.0 * (r.route_share(route) or 0.0) for r in rows]
        ax.barh(ys, share, left=left, label=route, color=colours[route])
        for y, lft, s in zip(ys, left, share, strict=True):
            if s >= 6:
                ax.text(lft + s / 2, y, f"{s:.0f}%", ha="center", va="center", fontsize=8)
        left = [a + b for a, b in zip(left, share, strict=True)]
    ax.set_yticks(ys, [r.display for r in rows])
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="% of test queries", title="route chosen by the selector")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
