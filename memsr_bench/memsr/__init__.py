"""MemSR conversion tools (Wu, Lee, Ma, ICML 2022; code wukailu/MemSR), written for memsr-bench.

- :mod:`~memsr_bench.memsr.plainify` -- stage 1: a residual teacher (EDSR-style) becomes an exactly
  equivalent plain stack of convs + ReLU/identity (carried skips, constant-channel biases);
- :mod:`~memsr_bench.memsr.student_init` -- stage 2: calibration features, per-layer SVD, widths from
  the relative-residual rule (theta) or a fixed width (``fix_r``), least-squares student weights, bridges;
- :mod:`~memsr_bench.memsr.distill` -- the initialisation-aware feature distillation loss;
- :mod:`~memsr_bench.memsr.train` -- a small deterministic trainer (HR-folder patches, L1, Adam,
  checkpoint/resume, Set5 validation); :mod:`~memsr_bench.memsr.data` -- its patches;
- :mod:`~memsr_bench.memsr.modelio` -- self-describing model files.

``memsr-bench convert ...`` and ``memsr-bench train ...`` (:mod:`memsr_bench.cli.convert`) put these on
the command line; ``experiments/memsr_reproduce.py`` (outside the package) is a scaled-down reproduction
of the MemSR ablation on T91 built on them.

The main entry points are importable from here lazily (importing the package stays cheap).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "plainify": "plainify",
    "PlainifyReport": "plainify",
    "Residual": "plainify",
    "UnsupportedLayerError": "plainify",
    "init_student": "student_init",
    "StudentInit": "student_init",
    "BridgeDistillLoss": "distill",
    "kd_weight": "distill",
    "TrainConfig": "train",
    "train": "train",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
