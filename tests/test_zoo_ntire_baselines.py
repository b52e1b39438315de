"""The NTIRE 2025 and 2026 ESR baselines: EFDN and SPAN (deploy forms), their public files and published costs."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from memsr_bench.measure.profile import profile
from memsr_bench.model import load_model

PARAMS = {"efdn": 276_192, "span": 150_688}
YEAR = {"efdn": 2025, "span": 2026}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_and_shapes(name):
    model = load_model(name, 4).module
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    with torch.no_grad():
        out = model(torch.rand(1, 3, 20, 17))
    assert out.shape == (1, 3, 80, 68)


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(PARAMS))
def test_public_file_loads_strictly_and_matches_the_published_costs(name):
    from conftest import require_shared

    weights = require_shared("weights")
    loaded = load_model(name, 4, weights=weights)
    assert loaded.weights.known is not None and loaded.weights.known.scales == (4,)
    published = pd.read_csv(require_shared("reference", "published_efficiency.csv"))
    row = published[published["source"].str.startswith(f"NTIRE {YEAR[name]} ESR")].iloc[0]
    result = profile(loaded.module, preset=f"ntire{YEAR[name]}", quantities=["params", "fvcore_flops"])
    assert round(result["fvcore_flops"] / 1e9, 2) == row["macs_g"]
    assert round(result["params"] / 1e3) == round(row["params_k"])
    # trained weights: a smooth image comes back close to its bicubic enlargement (random weights do not)
    smooth = F.interpolate(
        torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)), size=(32, 32), mode="bilinear"
    )
    with torch.no_grad():
        out = loaded.module(smooth)
    assert (out - F.interpolate(smooth, scale_factor=4, mode="bicubic")).abs().mean() < 0.02


@pytest.mark.shared
def test_ntire_2024_rlfn_file_is_the_2022_network_under_official_names():
    from conftest import require_shared

    weights = require_shared("weights")
    a = load_model("rlfn-ntire", 4, weights=weights / "team04_rlfn.pth")
    b = load_model("rlfn-ntire", 4, weights=weights / "rlfn_ntire2024_baseline.pth")  # strict, no key map
    assert b.weights.known.filename == "rlfn_ntire2024_baseline.pth" and a.weights.sha256 != b.weights.sha256
    sa, sb = a.module.state_dict(), b.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and sum(v.numel() for v in sb.values()) == 317_218
