"""Figures (PNG and SVG) of the measurements: rendering only (the data come from
:mod:`memsr_bench.reporting.tradeoffs` and :mod:`memsr_bench.measure`; ``memsr-bench plot`` draws them).

Kinds:

- ``psnr-memory``: PSNR vs peak memory, marker area proportional to the parameter count (as FMEN's
  Fig. 1), from the quality and efficiency rows of the results store; with the published tables a
  second panel shows the published figures of the same kind (never mixed into the measured one).
- ``psnr-runtime``: PSNR vs runtime, the same way, from the store's runtime rows (device named).
- ``timeline``: the predicted live tensor memory after every aten op of one forward pass, with the
  peak node annotated (:func:`memsr_bench.measure.memory_model.predict_peak_memory`; no data needed).
- ``peak-vs-size``: predicted peak memory vs input size for several models, with the affine fit of
  :func:`memsr_bench.measure.memory_model.peak_vs_input_size` (no data needed).

Figures are drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot, no
global backend change). Labels of scatter points are placed greedily where they overlap neither
another label, nor a marker, nor the axes' edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from memsr_bench.units import format_bytes

if TYPE_CHECKING:  # matplotlib and pandas are imported where used: registering the CLI stays cheap
    import pandas as pd
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

__all__ = [
    "hd_sizes",
    "peak_vs_size_figure",
    "psnr_figure",
    "psnr_kind_figure",
    "save_figure",
    "timeline_figure",
]

# HR outputs (H, W) of the peak-vs-size plot: 360p, 720p, 1080p, 1440p, 4K.
HD_OUTPUTS = ((360, 640), (720, 1280), (1080, 1920), (1440, 2560), (2160, 3840))
HD_NAMES = {(720, 1280): "1280x720", (1080, 1920): "1920x1080", (2160, 3840): "3840x2160"}
MAX_MARKER_AREA = 1600.0  # points², the largest model's marker
PRESET_OUTPUT = {"memsr": "HR 1920x1080 output", "fmen": "HR 1280x720 output", "ntire2022": "LR 256x256 input"}


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, stem: Path) -> list[Path]:
    """``stem``.png and ``stem``.svg; returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    import matplotlib

    # Byte-identical files for identical figures: no dates, fixed SVG ids.
    with matplotlib.rc_context({"svg.hashsalt": "memsr-bench"}):
        for suffix, metadata in ((".png", {"Software": None}), (".svg", {"Date": None})):
            path = stem.with_name(stem.name + suffix)
            fig.savefig(path, dpi=150 if suffix == ".png" else None, metadata=metadata)
            paths.append(path)
    return paths


# ----------------------------------------------------------------------------- label placement


def _overlap(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _freeze_layout(fig: Figure) -> None:
    """Run the constrained layout once and keep it, so that positions measured now stay true."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


def place_labels(ax, xs, ys, labels, radii_pt, fontsize: float = 8, avoid: Sequence[Bbox] = ()) -> list:
    """Annotate each point with its label where the text overlaps no other label, marker or ``avoid``
    box and stays inside the axes; the farther candidates get a thin leader line. Call after the
    axes limits and the layout are final. Returns the annotations."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72
    centres = [ax.transData.transform((x, y)) for x, y in zip(xs, ys, strict=True)]
    markers = [
        Bbox.from_extents(cx - r * px_per_pt, cy - r * px_per_pt, cx + r * px_per_pt, cy + r * px_per_pt)
        for (cx, cy), r in zip(centres, radii_pt, strict=True)
    ]
    frame = ax.get_window_extent(renderer).padded(-2)
    placed: list[Bbox] = list(avoid)
    annotations = []
    angles = (0, 45, -45, 90, -90, 135, -135, 180)
    order = sorted(range(len(labels)), key=lambda i: -radii_pt[i])  # big markers first: least room
    for i in order:
        best = None
        for gap in (3, 9, 18, 30, 45):
            for angle in angles:
                r = radii_pt[i] + gap
                dx, dy = r * math.cos(math.radians(angle)), r * math.sin(math.radians(angle))
                ha = "left" if dx > 1 else "right" if dx < -1 else "center"
                va = "bottom" if dy > 1 else "top" if dy < -1 else "center"
                text = ax.annotate(
                    labels[i],
                    (xs[i], ys[i]),
                    xytext=(dx, dy),
                    textcoords="offset points",
                    ha=ha,
                    va=va,
                    fontsize=fontsize,
                    arrowprops=dict(arrowstyle="-", lw=0.5, color="0.4", shrinkA=0, shrinkB=radii_pt[i])
                    if gap >= 9
                    else None,
                )
                box = text.get_window_extent(renderer).padded(4)
                outside = 0.0 if frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) else 1e9
                cost = outside + sum(_overlap(box, b) for b in placed)
                cost += sum(_overlap(box, m) for j, m in enumerate(markers) if j != i)
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, text, box)
                else:
                    text.remove()
                if cost == 0:
                    break
            if best is not None and best[0] == 0:
                break
        placed.append(best[2])
        annotations.append(best[1])
    return annotations


# ----------------------------------------------------------------------------- PSNR vs memory / runtime


def _published_points(reference_dir: Path | None, scale: int, dataset: str) -> pd.DataFrame:
    """MemSR's published PSNR, params, memory and runtime at ``scale`` on ``dataset`` (HR 1920x1080)."""
    import pandas as pd

    if reference_dir is None:
        return pd.DataFrame()
    from memsr_bench.reporting.published import published_efficiency, published_quality

    quality = published_quality(reference_dir, "MemSR")
    quality = quality[(quality["scale"] == scale) & (quality["dataset"] == dataset)]
    eff = published_efficiency(reference_dir)
    eff = eff[eff["source"].str.startswith("MemSR") & (eff["scale"] == scale)]
    points = quality[["model", "psnr"]].merge(eff[["model", "params_k", "memory_mb", "runtime_ms"]], on="model")
    points = points.dropna(subset=["params_k"])
    points["model"] = points["model"].str.replace(" (printed LARAR)", "", regex=False)
    return points.reset_index(drop=True)


def _display_name(name: str, channels: str = "rgb") -> str:
    """Names marked when Y-only; published names with θ for "_theta="."""
    return model_label(name, channels).replace("_theta=", " θ=")


def _marker_area(params: float, max_params: float) -> float:
    return MAX_MARKER_AREA * params / max_params


def _nice_params(max_params: float) -> list[float]:
    candidates = [1e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 2e7, 5e7]
    shown = [c for c in candidates if c <= max_params]
    return shown[-3:] if shown else [max_params]


def _params_text(n: float) -> str:
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}K"


def psnr_figure(
    points: pd.DataFrame,
    x: str,
    x_label: str,
    title: str,
    published: pd.DataFrame | None = None,
    published_x: str | None = None,
    published_x_label: str | None = None,
    published_title: str = "",
    y: str = "psnr",
    y_label: str = "PSNR (dB), Y channel (BT.601)",
    log_x: bool | None = None,
) -> Figure:
    """``points[y]`` (PSNR by default) vs ``points[x]``, marker area ∝ ``points["params"]``; a
    published panel beside it. Rows with ``highlight`` are drawn in red and starred."""
    import pandas as pd

    panels = [(points, x, x_label, title, "params", 1.0, "tab:blue")]
    if published is not None and not published.empty and published_x:
        panels.append(
            (published, published_x, published_x_label or published_x, published_title, "params_k", 1e3, "tab:orange")
        )
    max_params = max(float((p[col] * mult).max()) for p, _, _, _, col, mult, _ in panels)
    fig = _new_figure(6.2 * len(panels) + 1.6, 5.2)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    scatter_data = []
    spread = max(float(f[xcol].max()) / max(float(f[xcol].min()), 1e-9) for f, xcol, *_ in panels)
    for ax, (frame, xcol, xlabel, ptitle, pcol, mult, color) in zip(axes, panels, strict=True):
        params = frame[pcol].astype(float) * mult
        areas = [_marker_area(p, max_params) for p in params]
        marked = frame["highlight"].astype(bool) if "highlight" in frame else pd.Series(False, index=frame.index)
        colors = ["tab:red" if m else color for m in marked]
        ax.scatter(
            frame[xcol],
            frame[y],
            s=areas,
            color=colors,
            alpha=0.55,
            edgecolor="black",
            linewidth=[1.8 if m else 0.6 for m in marked],
        )
        xs = frame[xcol].astype(float)
        if log_x or (log_x is None and spread > 30):  # one scale for every panel: they compare at a glance
            ax.set_xscale("log")
        ax.margins(x=0.18, y=0.15)
        ax.set_xlabel(xlabel)
        ax.set_title(ptitle, fontsize=10)
        ax.grid(True, alpha=0.3)
        channels = frame["channels"] if "channels" in frame else ["rgb"] * len(frame)
        labels = [
            ("★ " if m else "") + _display_name(n, c) for n, c, m in zip(frame["model"], channels, marked, strict=True)
        ]
        scatter_data.append((ax, list(xs), list(frame[y].astype(float)), labels, areas))
    axes[0].set_ylabel(y_label)
    handles = [
        axes[0].scatter([], [], s=_marker_area(p, max_params), color="0.7", edgecolor="black", linewidth=0.6)
        for p in _nice_params(max_params)
    ]
    fig.legend(
        handles,
        [_params_text(p) for p in _nice_params(max_params)],
        title="parameters\n(marker area)",
        loc="outside right upper",
        labelspacing=2.2,
        borderpad=1.2,
        frameon=False,
    )
    _freeze_layout(fig)
    for ax, xs, ys, labels, areas in scatter_data:
        place_labels(ax, xs, ys, labels, [math.sqrt(a) / 2 for a in areas])
    return fig


# ----------------------------------------------------------------------------- timeline


def timeline_figure(prediction, model_label: str) -> Figure:
    """Live tensor storage after every aten op of one predicted forward pass, the peak node annotated."""
    mib = [b / 2**20 for _, b in prediction.timeline]
    n = len(mib)
    fig = _new_figure(10, 4.8)
    ax = fig.subplots()
    steps = list(range(1, n + 1))
    ax.fill_between(steps, mib, step="post", alpha=0.25, color="tab:blue", linewidth=0)
    ax.step(steps, mib, where="post", color="tab:blue", linewidth=1.2, label="live tensor storage")
    base = (prediction.weights_bytes + prediction.input_bytes) / 2**20
    ax.axhline(base, color="0.3", linestyle="--", linewidth=1, label=f"weights + input ({base:,.1f} MiB)")
    if prediction.lifetimes == "eager" and prediction.last_use_peak_bytes != prediction.peak_bytes:
        last_use = prediction.last_use_peak_bytes / 2**20
        ax.axhline(
            last_use,
            color="tab:green",
            linestyle=":",
            linewidth=1.4,
            label=f"peak if every tensor were freed after its last use ({last_use:,.1f} MiB)",
        )
    peak = prediction.peak_bytes / 2**20
    k = prediction.peak_index + 1
    ax.plot([k], [peak], "o", color="tab:red", markersize=6, zorder=5, label=f"peak ({peak:,.1f} MiB)")
    ax.set_xlim(0, n + 1)
    ax.set_ylim(0, peak * 1.45)
    right = k < n / 2
    ties = sum(1 for _, b in prediction.timeline if b == prediction.peak_bytes)
    again = f" (first of {ties} ops at this level)" if ties > 1 else ""
    ax.annotate(
        f"peak {peak:,.1f} MiB after op {k} of {n}{again}:\n{prediction.peak_node}",
        (k, peak),
        xytext=(0.97 if right else 0.03, 0.95),
        textcoords="axes fraction",
        ha="right" if right else "left",
        va="top",
        fontsize=9,
        bbox=dict(boxstyle="round,pad=0.3", facecolor="white", edgecolor="0.6"),
        arrowprops=dict(arrowstyle="->", color="tab:red", lw=1),
    )
    h, w = prediction.input_shape[-2:]
    ax.set_title(
        f"{model_label}, LR input {h}x{w}: predicted memory during one forward pass "
        f"(float32, batch {prediction.input_shape[0]}, {prediction.lifetimes.replace('_', ' ')} frees)",
        fontsize=10,
    )
    ax.set_xlabel("aten operator, in execution order (index)")
    ax.set_ylabel("live tensor storage (MiB)")
    ax.grid(True, alpha=0.3)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


# ----------------------------------------------------------------------------- peak vs input size


def hd_sizes(scale: int) -> list[tuple[int, int]]:
    """LR sizes whose x``scale`` outputs are 360p, 720p, 1080p, 1440p and 4K (16:9)."""
    return [(round(h / scale), round(w / scale)) for h, w in HD_OUTPUTS]


def peak_vs_size_figure(fits: dict, scale: int) -> Figure:
    """Predicted peak (MiB) vs LR pixels for each model (``{name: PeakFit}``), fits dashed."""
    fig = _new_figure(10, 5.6)
    ax = fig.subplots()
    biggest = 0.0
    ordered = sorted(fits.items(), key=lambda item: -item[1].slope)  # legend from the top line down
    for i, (name, fit) in enumerate(ordered):
        color = f"C{i % 10}"
        px = [h * w / 1e6 for h, w in fit.sizes]
        ax.plot(px, [p / 2**20 for p in fit.peaks], "o", color=color, markersize=5)
        line_x = [0, max(px)]
        ax.plot(
            line_x,
            [fit.predict(1, 0) / 2**20 if x == 0 else (fit.intercept + fit.slope * x * 1e6) / 2**20 for x in line_x],
            "--",
            color=color,
            linewidth=1.2,
            label=f"{name}: {fit.slope / 1024:,.2f} KiB/pixel + {format_bytes(fit.intercept)}",
        )
        biggest = max(biggest, max(px))
    ax.set_xlim(0, biggest * 1.05)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("LR input size (megapixels, H·W)")
    ax.set_ylabel("predicted peak memory (MiB)")
    ax.set_title(f"Predicted peak memory vs input size, x{scale}: float32, batch 1", fontsize=10)
    ax.grid(True, alpha=0.3)
    top = ax.secondary_xaxis("top", functions=(lambda x: x * scale**2, lambda x: x / scale**2))
    ticks = [(h * w / 1e6, name) for (h, w), name in HD_NAMES.items() if h * w / 1e6 / scale**2 <= biggest * 1.05]
    top.set_xticks([t for t, _ in ticks], [name for _, name in ticks], fontsize=8)
    top.set_xlabel(f"HR output (x{scale})", fontsize=9)
    fig.legend(
        loc="outside right upper",
        fontsize=8,
        title_fontsize=8,
        frameon=False,
        title="dots: predicted peaks (live tensor storage)\ndashed: fit = slope per LR pixel + intercept",
    )
    return fig


def model_label(name: str, channels: str = "rgb") -> str:
    """The model's name, marked when it reads the Y channel only (its input is 1/3 of an RGB one)."""
    return f"{name} (Y input)" if channels == "y" else name


def psnr_kind_figure(
    kind: str, points: pd.DataFrame, scale: int, dataset: str, preset: str, reference_dir: Path | None
) -> Figure:
    import pandas as pd

    published = _published_points(reference_dir, scale, dataset) if preset == "memsr" else pd.DataFrame()
    where = PRESET_OUTPUT.get(preset, preset)
    if kind == "psnr-memory":
        return psnr_figure(
            points,
            "peak_mib",
            f"predicted peak memory (MiB), {where}\n(live tensor storage, float32, batch 1)",
            f"Measured here: {dataset} x{scale}",
            published,
            "memory_mb",
            f"published peak memory (MB), {where}\n(CUDA max_memory_allocated)",
            f"Published (MemSR): {dataset} x{scale}",
        )
    points = points[points["runtime_ms"].notna()]
    device = points["runtime_device"].iloc[0]
    threads = sorted({int(t) for t in points["threads"].dropna()}) if "threads" in points else []
    spread = points["runtime_iqr_ms"].max() if "runtime_iqr_ms" in points else float("nan")
    return psnr_figure(
        points,
        "runtime_ms",
        f"runtime (ms, median; largest IQR {spread:,.1f} ms), {where}\n{device}"
        + (f", {'/'.join(map(str, threads))} threads" if threads else ""),
        f"Measured here: {dataset} x{scale}",
        published,
        "runtime_ms",
        f"published runtime (ms), {where}\nNVIDIA GTX 1080Ti",
        f"Published (MemSR): {dataset} x{scale}",
    )
