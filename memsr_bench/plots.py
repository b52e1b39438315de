"""``memsr-bench plot KIND``: figures (PNG and SVG) of the measurements.

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

import argparse
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from memsr_bench.errors import MemsrInputError
from memsr_bench.results import ResultsStore

if TYPE_CHECKING:  # matplotlib and pandas are imported where used: registering the CLI stays cheap
    import pandas as pd
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

__all__ = [
    "KINDS",
    "add_plot_parser",
    "hd_sizes",
    "peak_vs_size_figure",
    "psnr_figure",
    "quality_points",
    "save_figure",
    "timeline_figure",
    "write_report_figures",
]

KINDS = ("psnr-memory", "psnr-runtime", "timeline", "peak-vs-size")
# HR outputs (H, W) of the peak-vs-size plot: 360p, 720p, 1080p, 1440p, 4K.
HD_OUTPUTS = ((360, 640), (720, 1280), (1080, 1920), (1440, 2560), (2160, 3840))
HD_NAMES = {(720, 1280): "1280x720", (1080, 1920): "1920x1080", (2160, 3840): "3840x2160"}
REPORT_TIMELINE_MODELS = ("fmen-s-deploy", "imdn-ntire2022")
REPORT_SIZE_MODELS = ("fsrcnn", "fmen-s-deploy", "rlfn-ntire", "e-rfdn", "imdn-ntire2022", "carn-m", "edsr-baseline")
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


def _latest(frame: pd.DataFrame, by: str = "model") -> pd.DataFrame:
    return frame.sort_values("measured_at").drop_duplicates(by, keep="last").reset_index(drop=True)


def quality_points(
    store: ResultsStore,
    scale: int,
    dataset: str,
    preset: str = "memsr",
    y_variant: str = "float",
) -> tuple[pd.DataFrame, str | None]:
    """One row per zoo model with PSNR (``dataset``, ``scale``), params, predicted peak (MiB) at
    ``preset``'s input and, where stored, runtime (ms) with its device; or (empty, why not)."""
    import pandas as pd

    from memsr_bench.measure import get_preset
    from memsr_bench.results import input_size

    quality = store.query(kind="quality", scale=scale, data=dataset)
    column = f"{y_variant}.psnr"
    if quality.empty or column not in quality:
        return pd.DataFrame(), f"no quality rows for {dataset} x{scale} in the results store"
    quality = _latest(quality[quality[column].notna()])[["model", column]].rename(columns={column: "psnr"})
    eff = store.query(kind="efficiency", conventions=preset, scale=scale)
    if eff.empty:
        return pd.DataFrame(), f"no efficiency rows (preset {preset}) for x{scale} in the results store"
    eff = _latest(eff)[["model", "params", "peak_bytes_predicted"]]
    points = quality.merge(eff, on="model", how="inner")
    if points.empty:
        return pd.DataFrame(), f"no model has both quality ({dataset} x{scale}) and efficiency ({preset}) rows"
    points["peak_mib"] = points["peak_bytes_predicted"] / 2**20
    lr = get_preset(preset).lr_shape(scale)
    shapes = {input_size((1, c, *lr)) for c in (1, 3)}
    runtime = store.query(kind="runtime", scale=scale, data=sorted(shapes))
    points["runtime_ms"] = float("nan")
    points["runtime_device"] = None
    if not runtime.empty and "ms" in runtime:
        device = runtime["device"].value_counts().index[0]  # the device with the most rows
        runtime = _latest(runtime[runtime["device"] == device])[["model", "ms"]]
        points = points.drop(columns="runtime_ms").merge(
            runtime.rename(columns={"ms": "runtime_ms"}), on="model", how="left"
        )
        points.loc[points["runtime_ms"].notna(), "runtime_device"] = device
    return points.sort_values("model").reset_index(drop=True), None


def _published_points(reference_dir: Path | None, scale: int, dataset: str) -> pd.DataFrame:
    """MemSR's published PSNR, params, memory and runtime at ``scale`` on ``dataset`` (HR 1920x1080)."""
    import pandas as pd

    if reference_dir is None:
        return pd.DataFrame()
    from memsr_bench.published import published_efficiency, published_quality

    quality = published_quality(reference_dir, "MemSR")
    quality = quality[(quality["scale"] == scale) & (quality["dataset"] == dataset)]
    eff = published_efficiency(reference_dir)
    eff = eff[eff["source"].str.startswith("MemSR") & (eff["scale"] == scale)]
    points = quality[["model", "psnr"]].merge(eff[["model", "params_k", "memory_mb", "runtime_ms"]], on="model")
    points = points.dropna(subset=["params_k"])
    points["model"] = points["model"].str.replace(" (printed LARAR)", "", regex=False)
    return points.reset_index(drop=True)


def _display_name(name: str) -> str:
    """Zoo names marked when Y-only; published names with θ for "_theta="."""
    import zoo

    if name in zoo.names():
        return model_label(name)
    return name.replace("_theta=", " θ=")


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
    published panel beside it."""
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
        ax.scatter(frame[xcol], frame[y], s=areas, color=color, alpha=0.55, edgecolor="black", linewidth=0.6)
        xs = frame[xcol].astype(float)
        if log_x or (log_x is None and spread > 30):  # one scale for every panel: they compare at a glance
            ax.set_xscale("log")
        ax.margins(x=0.18, y=0.15)
        ax.set_xlabel(xlabel)
        ax.set_title(ptitle, fontsize=10)
        ax.grid(True, alpha=0.3)
        labels = [_display_name(m) for m in frame["model"]]
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
            label=f"{name}: {fit.slope / 1024:,.2f} KiB/pixel + {_mib_text(fit.intercept)}",
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


def _mib_text(n_bytes: float) -> str:
    mib = n_bytes / 2**20
    return f"{mib:,.1f} MiB" if abs(mib) >= 1 else f"{mib:.2g} MiB"


def model_label(name: str) -> str:
    """The zoo name, marked when the model reads the Y channel only (its input is 1/3 of an RGB one)."""
    import zoo

    return f"{name} (Y input)" if zoo.get_spec(name).channels == "y" else name


# ----------------------------------------------------------------------------- report figures


def _best_quality_slice(store: ResultsStore, preset: str, need_runtime: bool) -> tuple[pd.DataFrame, int, str] | str:
    """The (scale, dataset) with the most plottable models (x4 preferred on ties), or why there is none."""
    quality = store.query(kind="quality")
    if quality.empty:
        return "no quality rows in the results store (memsr-bench report --data-root ... --weights ...)"
    best, why = None, "no quality row has a matching efficiency row"
    combos = quality[["scale", "data"]].drop_duplicates().itertuples(index=False)
    for scale, dataset in sorted(combos, key=lambda c: (c[0] != 4, c[0], c[1])):
        points, reason = quality_points(store, int(scale), dataset, preset)
        if reason:
            why = reason
            continue
        if need_runtime:
            points = points[points["runtime_ms"].notna()]
            if points.empty:
                why = f"no runtime rows at the {preset} input (memsr-bench table memsr-table measures them)"
                continue
        if len(points) < 2:
            why = f"only {', '.join(points['model'])} has everything needed ({dataset} x{scale}); a plot needs two"
        elif best is None or len(points) > len(best[0]):
            best = (points, int(scale), dataset)
    return why if best is None else best


TRAINING_FORMS = ("fmen", "fmen-s", "plain")


def compute_memory_points(store: ResultsStore, scale: int = 4, preset: str = "memsr") -> pd.DataFrame:
    """One row per zoo model at ``preset``'s input: MACs (G), predicted peak (MiB) and params."""
    eff = store.query(kind="efficiency", conventions=preset, scale=scale)
    if eff.empty:
        return eff
    points = _latest(eff)[["model", "params", "macs", "peak_bytes_predicted"]].copy()
    points["gmacs"] = points["macs"] / 1e9
    points["peak_mib"] = points["peak_bytes_predicted"] / 2**20
    return points.sort_values("model").reset_index(drop=True)


def write_report_figures(
    out_dir: Path,
    store: ResultsStore,
    reference_dir: Path | None,
    log: Callable[[str], None] = print,
    preset: str = "memsr",
) -> list[Path]:
    """Write ``out_dir``/figures/*.png and *.svg for ``memsr-bench report``; returns the files.

    The memory timelines and the peak-vs-size plot need no data; the PSNR-vs-memory and
    PSNR-vs-runtime plots need quality rows (and runtime rows) in ``store``, and are otherwise
    skipped with the reason logged.
    """
    import zoo
    from memsr_bench.measure import get_preset
    from memsr_bench.measure.memory_model import peak_vs_input_size, predict_peak_memory

    figures = Path(out_dir) / "figures"
    written: list[Path] = []
    for name in REPORT_TIMELINE_MODELS:
        if name not in zoo.names():
            continue
        scale = 4 if 4 in zoo.get_spec(name).scales else zoo.get_spec(name).scales[0]
        model = zoo.create(name, scale=scale)
        prediction = predict_peak_memory(model, (1, 1 if zoo.get_spec(name).channels == "y" else 3, 256, 256))
        written += save_figure(timeline_figure(prediction, f"{name} x{scale}"), figures / f"timeline_{name}_x{scale}")
    fits = {
        model_label(name): peak_vs_input_size(zoo.create(name, scale=4), hd_sizes(4))
        for name in REPORT_SIZE_MODELS
        if name in zoo.names() and 4 in zoo.get_spec(name).scales
    }
    written += save_figure(peak_vs_size_figure(fits, 4), figures / "peak_vs_input_size_x4")
    # The accuracy-free trade-off: it needs only the efficiency rows, so it exists without any data.
    points = compute_memory_points(store, 4, preset)
    # Networks as they run: training forms (deploy() merges them) and the generic `plain` left out.
    points = points[~points["model"].isin(TRAINING_FORMS)] if len(points) else points
    if len(points) >= 2:
        lr_h, lr_w = get_preset(preset).lr_shape(4)
        fig = psnr_figure(
            points,
            "peak_mib",
            f"predicted peak memory (MiB), HR {4 * lr_w}x{4 * lr_h} output\n(live tensor storage, float32, batch 1)",
            "Compute vs memory of the zoo at x4 (deploy forms; no accuracy data needed)",
            y="gmacs",
            y_label=f"MACs (G), preset {preset}",
            log_x=True,
        )
        written += save_figure(fig, figures / "macs_vs_memory_x4")
    else:
        log(f"skipped figures/macs_vs_memory_x4: no efficiency rows (preset {preset}) in the results store")
    for kind in ("psnr-memory", "psnr-runtime"):
        found = _best_quality_slice(store, preset, need_runtime=kind == "psnr-runtime")
        if isinstance(found, str):
            log(f"skipped figures/{kind.replace('-', '_vs_')}: {found}")
            continue
        points, scale, dataset = found
        fig = _psnr_kind_figure(kind, points, scale, dataset, preset, reference_dir)
        written += save_figure(fig, figures / f"{kind.replace('-', '_vs_')}_{dataset}_x{scale}")
    for path in written:
        if path.suffix == ".png":
            log(f"wrote {path}")
    return written


def _psnr_kind_figure(
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
    return psnr_figure(
        points,
        "runtime_ms",
        f"runtime (ms), {where}\n{device}",
        f"Measured here: {dataset} x{scale}",
        published,
        "runtime_ms",
        f"published runtime (ms), {where}\nNVIDIA GTX 1080Ti",
        f"Published (MemSR): {dataset} x{scale}",
    )


# ----------------------------------------------------------------------------- CLI


def _stem(args: argparse.Namespace, default: str) -> Path:
    return Path(args.out) if args.out else Path("reports") / "figures" / default


def _report(paths: Sequence[Path]) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


def _cmd_psnr(args: argparse.Namespace) -> int:
    from memsr_bench.measure import PRESETS
    from memsr_bench.published import default_reference_dir

    if args.preset not in PRESETS:
        raise MemsrInputError("--preset", f"unknown preset {args.preset!r}; known: {', '.join(PRESETS)}")
    store = ResultsStore(args.store)
    points, reason = quality_points(store, args.scale, args.dataset, args.preset, args.y_variant)
    if reason:
        raise MemsrInputError(store.path, reason)
    if args.kind == "psnr-runtime" and points["runtime_ms"].isna().all():
        raise MemsrInputError(
            store.path, f"no runtime rows for x{args.scale} at the {args.preset} input (see memsr-bench table)"
        )
    reference_dir = Path(args.reference) if args.reference else default_reference_dir()
    if reference_dir is not None and not reference_dir.is_dir():
        raise MemsrInputError("--reference", f"folder not found: {reference_dir}")
    fig = _psnr_kind_figure(args.kind, points, args.scale, args.dataset, args.preset, reference_dir)
    return _report(save_figure(fig, _stem(args, f"{args.kind.replace('-', '_vs_')}_{args.dataset}_x{args.scale}")))


def _zoo_model(name: str, scale: int | None):
    import zoo

    if name not in zoo.names():
        raise MemsrInputError(name, f"unknown model; choose one of: {', '.join(zoo.names())}")
    spec = zoo.get_spec(name)
    scale = spec.scales[-1] if scale is None else scale
    if scale not in spec.scales:
        raise MemsrInputError(name, f"scale x{scale} is not available (scales: {list(spec.scales)})")
    return zoo.create(name, scale=scale), scale, 1 if spec.channels == "y" else 3


def _cmd_timeline(args: argparse.Namespace) -> int:
    from memsr_bench.measure.memory_model import predict_peak_memory
    from memsr_bench.profile import lr_size_for, parse_size

    model, scale, channels = _zoo_model(args.model, args.scale)
    input_size = parse_size(args.input, "--input") if args.input else None
    output_size = parse_size(args.output, "--output") if args.output else None
    if args.preset:
        from memsr_bench.measure import get_preset

        get_preset(args.preset)
    h, w = lr_size_for(scale, input_size, output_size, args.preset)
    prediction = predict_peak_memory(model, (1, channels, h, w), lifetimes=args.lifetimes)
    fig = timeline_figure(prediction, f"{args.model} x{scale}")
    return _report(save_figure(fig, _stem(args, f"timeline_{args.model}_x{scale}")))


def _cmd_peak_vs_size(args: argparse.Namespace) -> int:
    from memsr_bench.measure.memory_model import peak_vs_input_size
    from memsr_bench.profile import parse_size

    sizes = [parse_size(s, "--sizes") for s in args.sizes] if args.sizes else hd_sizes(args.scale)
    if len({h * w for h, w in sizes}) < 2:
        raise MemsrInputError("--sizes", "give at least two sizes with different H·W")
    fits = {}
    for name in dict.fromkeys(args.models):
        model, _, channels = _zoo_model(name, args.scale)
        fits[model_label(name)] = peak_vs_input_size(model, sizes, channels=channels)
    return _report(save_figure(peak_vs_size_figure(fits, args.scale), _stem(args, f"peak_vs_input_size_x{args.scale}")))


def add_plot_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``plot KIND ...`` on the CLI's sub-parsers (each kind ``set_defaults(run=...)``)."""
    pp = subparsers.add_parser(
        "plot",
        help="figures (PNG and SVG): psnr-memory, psnr-runtime, timeline, peak-vs-size",
        description="Draw a figure as OUT.png and OUT.svg (default reports/figures/<name>). psnr-memory and "
        "psnr-runtime read the results store (quality, efficiency and runtime rows); timeline and "
        "peak-vs-size predict memory without data.",
    )
    kinds = pp.add_subparsers(dest="kind", required=True, metavar="KIND")

    for kind, text in (
        ("psnr-memory", "PSNR vs predicted peak memory, marker area ∝ params (FMEN Fig. 1 style)"),
        ("psnr-runtime", "PSNR vs runtime, marker area ∝ params"),
    ):
        kp = kinds.add_parser(kind, help=text, description=text + "; from the results store.")
        kp.add_argument("--scale", type=int, default=4, help="SR factor (default 4)")
        kp.add_argument("--dataset", default="Set5", help="test set as stored (Set5, Set14, BSD100, ...)")
        kp.add_argument(
            "--preset", default="memsr", help="efficiency preset giving the input size (default memsr: HR 1920x1080)"
        )
        kp.add_argument("--y-variant", default="float", choices=["float", "rounded"], help="Y convention of PSNR")
        kp.add_argument("--store", help="results store file (default $MEMSR_RESULTS or ~/.cache/memsr-bench/...)")
        kp.add_argument("--reference", help="published tables folder (default ../shared/reference, if present)")
        kp.add_argument("--out", help="output stem: writes OUT.png and OUT.svg")
        kp.set_defaults(run=_cmd_psnr)

    tl = kinds.add_parser(
        "timeline",
        help="predicted live memory after every op of one forward pass, peak node annotated",
        description="Predicted memory timeline of a zoo model (fake tensors: any input size is cheap).",
    )
    tl.add_argument("model", help="zoo model name")
    tl.add_argument("--scale", type=int, help="SR factor (default: the model's largest)")
    tl.add_argument("--input", help="LR input HxW")
    tl.add_argument("--output", help="HR output HxW (LR = output / scale)")
    tl.add_argument("--preset", help="input of a preset: ntire2022 (LR 256x256), fmen (HR 1280x720), memsr (1920x1080)")
    tl.add_argument("--lifetimes", choices=["eager", "last_use"], default="eager", help="when tensors are freed")
    tl.add_argument("--out", help="output stem: writes OUT.png and OUT.svg")
    tl.set_defaults(run=_cmd_timeline)

    ps = kinds.add_parser(
        "peak-vs-size",
        help="predicted peak memory vs input size for several models, with the affine fit",
        description="Predicted peak memory of each model at several LR sizes (default: the LR of 360p..4K outputs).",
    )
    ps.add_argument("models", nargs="+", metavar="MODEL", help="zoo model names")
    ps.add_argument("--scale", type=int, default=4, help="SR factor (default 4)")
    ps.add_argument("--sizes", nargs="+", metavar="HxW", help="LR input sizes (default: LR of 360p, 720p, ... 4K)")
    ps.add_argument("--out", help="output stem: writes OUT.png and OUT.svg")
    ps.set_defaults(run=_cmd_peak_vs_size)
    return pp
