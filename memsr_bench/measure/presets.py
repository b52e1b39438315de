"""Measurement presets: the input-size rule of each published table and what that table reports.

A preset says which input a paper counted at (an LR size, or the LR size giving a fixed HR output)
and which quantities its table prints, as ``(the paper's label, quantity name)`` pairs
(:attr:`Preset.reported`). The quantities themselves are defined once, in
:mod:`memsr_bench.measure.quantities`, and named for their convention, so a preset never changes
what a name means: the NTIRE 2022 "FLOPs" is ``ntire2022_flops``, never ``macs``.
``profile(model, preset="fmen", scale=4)`` (:func:`memsr_bench.measure.profile.profile`) applies one.

* ``ntire2022`` -- NTIRE 2022 Efficient SR challenge (FMEN Table 4): LR input 256x256 whatever the
  scale; "FLOPs" = ``ntire2022_flops`` (``get_model_flops``: hooks on Conv2d/ConvTranspose2d,
  ReLU-family, BatchNorm2d and Linear modules), "#Activations" = ``ntire2022_activations`` (output
  elements of Conv2d/ConvTranspose2d calls), "#Conv" = ``ntire2022_convs`` (their number of calls).
* ``ntire2023`` -- the 2022 counters (the 2023 challenge kept them); baseline E-RFDN.
* ``ntire2024``, ``ntire2025``, ``ntire2026`` -- "FLOPs" = ``fvcore_flops`` (fvcore 0.1.5's own
  ``FlopCountAnalysis(model, 1x3x256x256).total()``) at LR 256x256; baselines RLFN, EFDN, SPAN.
* ``fmen`` -- FMEN Table 3: "Mult-Adds" = ``conv_macs`` (convolution MACs) for an HR output of
  1280x720 (LR ``round(1280/s) x round(720/s)``).
* ``memsr`` -- MemSR tables: "FLOPs" as printed = ``thop_0031_macs`` (``thop.profile`` 0.0.31 MACs:
  conv MACs with bias adds, BatchNorm, LeakyReLU, pooling and Upsample module costs), for an HR
  output of 1920x1080 (LR ``round(1920/s) x round(1080/s)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from memsr_bench.errors import MemsrInputError

__all__ = ["PRESETS", "Preset", "get_preset"]


@dataclass(frozen=True)
class Preset:
    """Input-size rule + the quantities its table reports, under the paper's labels."""

    name: str
    source: str  # the table(s) measured this way
    convention: str  # one line, printed with every result
    # (the paper's label, quantity name from memsr_bench.measure.quantities) shown by its table;
    # the label is only a column heading, the value stays under the quantity's own name
    reported: tuple[tuple[str, str], ...] = ()
    lr_size: tuple[int, int] | None = None  # fixed LR (H, W)
    hr_size: tuple[int, int] | None = None  # fixed HR output (H, W); LR = round(HR / scale)
    baseline: str | None = None  # the challenge's baseline model (zoo name), scores are relative to it
    published: str | None = None  # source prefix of its rows in published_efficiency.csv
    runtime_protocol: str = "default"  # the table's runtime protocol (memsr_bench.measure.runtime.PROTOCOLS)

    def lr_shape(self, scale: int | None = None) -> tuple[int, int]:
        """LR ``(H, W)`` for ``scale``."""
        if self.lr_size is not None:
            return self.lr_size
        if scale is None or int(scale) < 1:
            raise MemsrInputError("scale", f"preset {self.name!r} needs the model's scale (HR output {self.hr_size})")
        h, w = self.hr_size
        return round(h / int(scale)), round(w / int(scale))

    def input_shape(self, scale: int | None = None, channels: int = 3) -> tuple[int, int, int, int]:
        """``(1, channels, H, W)`` LR input for ``scale``."""
        return (1, int(channels), *self.lr_shape(scale))


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="ntire2022",
            source="NTIRE 2022 ESR challenge; FMEN Table 4",
            convention=(
                "NTIRE 2022 ESR get_model_flops/get_model_activation at LR 256x256: FLOPs = Conv2d/"
                "ConvTranspose2d MACs (kh·kw·Cin·Cout/groups·Hout·Wout) + ReLU-family module output "
                "elements + 2x BatchNorm2d elements + Linear; activations = Conv2d/ConvTranspose2d "
                "output elements; convs = their calls (module hooks)"
            ),
            reported=(
                ("FLOPs", "ntire2022_flops"),
                ("#Activations", "ntire2022_activations"),
                ("#Conv", "ntire2022_convs"),
            ),
            lr_size=(256, 256),
            baseline="imdn-ntire2022",
            published="FMEN Table 4",
            runtime_protocol="ntire2022",
        ),
        Preset(
            name="ntire2023",
            source="NTIRE 2023 ESR challenge (ofsoundof/NTIRE2023_ESR): the 2022 counters and protocol",
            convention=(
                "NTIRE 2023 ESR = the 2022 utils/model_summary counters at LR 256x256 (module hooks); baseline "
                "E-RFDN (the RFDN_AIM.pth bytes)"
            ),
            reported=(
                ("FLOPs", "ntire2022_flops"),
                ("#Activations", "ntire2022_activations"),
                ("#Conv", "ntire2022_convs"),
            ),
            lr_size=(256, 256),
            baseline="e-rfdn",
            runtime_protocol="ntire2022",
        ),
        *(
            Preset(
                name=f"ntire{year}",
                source=f"NTIRE {year} ESR challenge (Amazingren/NTIRE{year}_ESR)",
                convention=(
                    f"NTIRE {year} ESR FLOPs = fvcore 0.1.5 FlopCountAnalysis(model, 1x3x256x256).total() at LR "
                    "256x256: fvcore's own handles (MACs of conv/linear/matmul, batch_norm, upsampling), "
                    f"element-wise ops not counted; baseline {baseline}"
                ),
                reported=(("FLOPs", "fvcore_flops"),),
                lr_size=(256, 256),
                baseline=baseline,
                published=f"NTIRE {year} ESR",
                runtime_protocol="ntire2022",  # CUDA events, no warm-up, mean
            )
            for year, baseline in ((2024, "rlfn-ntire"), (2025, "efdn"), (2026, "span"))
        ),
        Preset(
            name="fmen",
            source="FMEN Table 3",
            convention="FMEN Table 3 Mult-Adds: convolution MACs for an HR output of 1280x720",
            reported=(("Mult-Adds", "conv_macs"),),
            hr_size=(720, 1280),
            published="FMEN Table 3",
        ),
        Preset(
            name="cdism",
            source="Compressing Deep Image SR Models (Jiang et al. 2024), project figure",
            convention=(
                "CDISM figure FLOPs (convention not stated) read as MACs of every convolution, linear and "
                "matmul op for an HR output of 1280x720: the SR papers' Mult-Adds for convolutional networks, "
                "and the only reading that fits SwinIR's attention layers"
            ),
            reported=(("FLOPs", "macs"),),
            hr_size=(720, 1280),
            published="CDISM project figure",
        ),
        Preset(
            name="memsr",
            source="MemSR (ICML 2022) tables and slides",
            convention=(
                "MemSR FLOPs as printed = thop 0.0.31 profile MACs (conv incl. bias adds, BatchNorm, "
                "LeakyReLU, AvgPool, Linear, Upsample modules; exact module types) for an HR output "
                "of 1920x1080"
            ),
            reported=(("FLOPs", "thop_0031_macs"),),
            hr_size=(1080, 1920),
            published="MemSR",
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise MemsrInputError("preset", f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
