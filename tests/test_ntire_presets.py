"""NTIRE 2023-2026 presets: fvcore's own FlopCountAnalysis as the 2024-2026 FLOPs, read from the suite's one trace."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis
from torch import nn

import zoo
from memsr_bench.measure.counters import trace_model
from memsr_bench.measure.presets import PRESETS, get_preset
from memsr_bench.measure.profile import profile
from memsr_bench.model import load_model


def _fvcore_total(model: nn.Module, shape) -> int:
    analysis = FlopCountAnalysis(model.eval(), torch.rand(shape))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    return int(analysis.total())


@pytest.mark.parametrize("name", zoo.names())
def test_fvcore_flops_is_fvcore_on_every_zoo_model(name):
    spec = zoo.get_spec(name)
    model = load_model(name, 4 if 4 in spec.scales else spec.scales[0]).module
    shape = (1, 1 if spec.channels == "y" else 3, 24, 20)  # ESA blocks need >= 15 pixels
    assert trace_model(model, shape).analysis("fvcore_flops").total() == _fvcore_total(model, shape)


class _Mixed(nn.Module):
    """Ops fvcore counts (conv, BN, bilinear, adaptive pool, grid_sample) and ops it skips."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        y = torch.sigmoid(self.bn(self.conv(x))) * x.mean()
        y = F.interpolate(y, scale_factor=2, mode="bilinear") + F.interpolate(y, scale_factor=2, mode="bicubic")
        grid = torch.zeros(1, 4, 4, 2)
        return F.grid_sample(y, grid, align_corners=False) + F.adaptive_avg_pool2d(y, 4)


def test_fvcore_convention_and_fvcore_only_ops():
    model = _Mixed()
    trace = trace_model(model, (1, 3, 6, 6))
    fvcore = trace.analysis("fvcore_flops")
    assert fvcore.total() == _fvcore_total(model, (1, 3, 6, 6))
    ops = fvcore.by_operator()
    assert ops["conv"] == 6 * 6 * 4 * 27 and "sigmoid" not in ops and "upsample_bicubic2d" not in ops
    # grid_sampler has no memsr-bench formula: fvcore counts it, and it is still reported as uncounted
    assert ops["grid_sampler"] > 0 and trace.unsupported_ops()["aten::grid_sampler"] == 1


def test_ntire_presets():
    for year in (2023, 2024, 2025, 2026):
        preset = get_preset(f"ntire{year}")
        assert preset.lr_shape(4) == (256, 256) and preset.runtime_protocol == "ntire2022"
    assert get_preset("ntire2023").reported == get_preset("ntire2022").reported
    assert {get_preset(f"ntire{y}").reported for y in (2024, 2025, 2026)} == {(("FLOPs", "fvcore_flops"),)}
    assert [PRESETS[f"ntire{y}"].baseline for y in (2023, 2024, 2025, 2026)] == ["e-rfdn", "rlfn-ntire", "efdn", "span"]
    model = load_model("fsrcnn", 4).module
    result = profile(model, preset="ntire2024", quantities=["params", "fvcore_flops", "ntire2022_flops"])
    assert result.reported() == [("FLOPs", "fvcore_flops", result["fvcore_flops"])]
    assert result["fvcore_flops"] != result["ntire2022_flops"]  # PReLU outputs count for NTIRE 2022 only


@pytest.mark.shared
def test_rlfn_matches_the_ntire_2024_baseline():
    from conftest import require_shared

    published = pd.read_csv(require_shared("reference", "published_efficiency.csv"))
    row = published[published["source"].str.startswith("NTIRE 2024")].iloc[0]
    result = profile(load_model("rlfn-ntire", 4).module, preset="ntire2024", quantities=["params", "fvcore_flops"])
    assert round(result["fvcore_flops"] / 1e9, 2) == row["macs_g"] == 19.67
    assert round(result["params"] / 1e3) == row["params_k"] == 317
