"""SwinIR-light and SwinIR-mini (zoo/swinir.py) and EDSR-mini (zoo/edsr.py).

- exact parameter counts for every model and scale, with and without SwinIR's relative-position bias
  tables (the SwinIR paper's 878K / 886K / 897K leave them out);
- reflect padding to a multiple of the window and cropping back, on odd LR sizes;
- state-dict names, order, shapes and buffers of the official ``models/network_swinir.py``: a literal
  derived from it, and the official module itself with the same seeded random weights (outputs equal within
  1e-4 at x2 and x4 on an odd LR size). The official file is read from ``$MEMSR_SWINIR_OFFICIAL`` (the file,
  or a folder holding ``network_swinir.py`` or ``models/network_swinir.py``) or extracted with ``git show``
  from the fetched mirror ``../.mirror/JingyunLiang+SwinIR/repo``; the released SwinIR-mini code of
  Pikapi22/SRModelCompression (BasicSR ``swinir_arch.py``) likewise from ``../.mirror``;
- the suite's counters support every operator and count SwinIR's MACs by formula;
- EDSR-mini (16 features, 8 blocks, res_scale 2) is BasicSR's EDSR of the released options.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import zoo
from memsr_bench.measure.counters import trace_model
from memsr_bench.measure.presets import get_preset
from zoo import swinir as sw
from zoo.edsr import DIV2K_RGB_MEAN, ResBlock
from zoo.registry import get_spec

SCALES = (2, 3, 4)
PARAMS = {
    "swinir-light": {2: 910_152, 3: 918_267, 4: 929_628},
    "swinir-mini": {2: 98_868, 3: 102_123, 4: 106_680},
    "edsr-mini": {2: 49_603, 3: 61_203, 4: 58_883},
}
# without the relative-position bias tables: (2*8-1)^2 * 6 = 1,350 per Swin block
PARAMS_NO_BIAS = {
    "swinir-light": {2: 877_752, 3: 885_867, 4: 897_228},  # 24 blocks: 32,400
    "swinir-mini": {2: 82_668, 3: 85_923, 4: 90_480},  # 12 blocks: 16,200
}
CONFIGS = {  # official constructor arguments (SwinIR README / released options)
    "swinir-light": {"embed_dim": 60, "depths": [6, 6, 6, 6], "num_heads": [6, 6, 6, 6]},
    "swinir-mini": {"embed_dim": 24, "depths": [4, 4, 4], "num_heads": [6, 6, 6]},
}
OFFICIAL_COMMON = {
    "in_chans": 3,
    "img_size": 64,
    "window_size": 8,
    "img_range": 1.0,
    "mlp_ratio": 2,
    "upsampler": "pixelshuffledirect",
    "resi_connection": "1conv",
}
ODD_LR = (17, 23)

_WORK = Path(__file__).resolve().parents[2]
SWINIR_MIRROR = _WORK / ".mirror" / "JingyunLiang+SwinIR" / "repo"
COMPRESSION_MIRROR = _WORK / ".mirror" / "Pikapi22+SRModelCompression" / "repo"


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize(model: nn.Module, seed: int, std: float = 0.1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)


# ---------------------------------------------------------------------------------------------
# sizes and metadata


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("scale", SCALES)
def test_parameter_count(name, scale):
    model = get_spec(name).build(scale=scale)
    assert _n_params(model) == PARAMS[name][scale]
    if name in PARAMS_NO_BIAS:
        blocks = sum(CONFIGS[name]["depths"])
        assert sw.params_excluding_relative_position_bias(model) == PARAMS_NO_BIAS[name][scale]
        assert PARAMS[name][scale] - PARAMS_NO_BIAS[name][scale] == blocks * 15 * 15 * 6


def test_published_counts_are_the_paper_convention():
    light = get_spec("swinir-light").published_params
    assert light == {2: 878_000, 3: 886_000, 4: 897_000}
    for scale in SCALES:
        assert round(PARAMS_NO_BIAS["swinir-light"][scale], -3) == light[scale]  # 877,752 -> 878K, ...
        assert round(PARAMS["swinir-light"][scale], -3) != light[scale]
    assert "bias tables" in get_spec("swinir-light").notes
    # the compression paper's SwinIRmini figure counts the tables, as sum(p.numel())
    assert get_spec("swinir-mini").published_params == {2: PARAMS["swinir-mini"][2]}
    assert get_spec("edsr-mini").published_params == {2: PARAMS["edsr-mini"][2]}


def test_registry_metadata():
    for name in ("swinir-light", "swinir-mini"):
        spec = get_spec(name)
        assert (spec.input_range, spec.channels, spec.scales, spec.family) == (1.0, "rgb", SCALES, "swinir")
    spec = get_spec("edsr-mini")
    assert (spec.input_range, spec.channels, spec.scales, spec.family) == (255.0, "rgb", SCALES, "edsr")
    for name in PARAMS:
        assert name in zoo.names() and get_spec(name).checkpoints == ()


# ---------------------------------------------------------------------------------------------
# SwinIR: padding, cropping, state-dict layout


@pytest.mark.parametrize("name", ("swinir-light", "swinir-mini"))
@pytest.mark.parametrize("scale", SCALES)
def test_reflect_padding_and_crop_on_odd_sizes(name, scale):
    model = zoo.create(name, scale=scale)
    _randomize(model, seed=scale, std=0.05)
    h, w = ODD_LR
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
        assert y.shape == (1, 3, h * scale, w * scale)
        padded = F.pad(x, (0, 1, 0, 7), mode="reflect")  # to 24 x 24, bottom and right only
        y_padded = model(padded)
        assert y_padded.shape == (1, 3, 24 * scale, 24 * scale)  # a multiple of the window: no crop
        torch.testing.assert_close(y, y_padded[:, :, : h * scale, : w * scale], rtol=0, atol=1e-6)
        y_zero = model(F.pad(x, (0, 1, 0, 7)))[:, :, : h * scale, : w * scale]
        assert (y - y_zero).abs().max() > 1e-4  # zero padding would give another result
        assert model(torch.rand(2, 3, 9, 8)).shape == (2, 3, 9 * scale, 8 * scale)


# Derived from models/network_swinir.py: the keys of a Swin block (its own buffer ``attn_mask`` first,
# registered only when the block is shifted: odd blocks), and of the whole lightweight model.
_BLOCK_KEYS = (
    "norm1.weight norm1.bias attn.relative_position_bias_table attn.relative_position_index attn.qkv.weight "
    "attn.qkv.bias attn.proj.weight attn.proj.bias norm2.weight norm2.bias mlp.fc1.weight mlp.fc1.bias "
    "mlp.fc2.weight mlp.fc2.bias"
).split()
_HEAD_KEYS = ["conv_first.weight", "conv_first.bias", "patch_embed.norm.weight", "patch_embed.norm.bias"]
_TAIL_KEYS = ["norm.weight", "norm.bias", "conv_after_body.weight", "conv_after_body.bias"]
_TAIL_KEYS += ["upsample.0.weight", "upsample.0.bias"]


def _official_keys(depths) -> list[str]:
    keys = list(_HEAD_KEYS)
    for i, depth in enumerate(depths):
        for j in range(depth):
            prefix = f"layers.{i}.residual_group.blocks.{j}."
            keys += ([prefix + "attn_mask"] if j % 2 else []) + [prefix + k for k in _BLOCK_KEYS]
        keys += [f"layers.{i}.conv.weight", f"layers.{i}.conv.bias"]
    return keys + _TAIL_KEYS


@pytest.mark.parametrize("name", ("swinir-light", "swinir-mini"))
def test_state_dict_layout_is_the_official_one(name):
    model = zoo.create(name, scale=4)
    sd = model.state_dict()
    assert list(sd) == _official_keys(CONFIGS[name]["depths"])
    assert "mean" not in sd  # the official mean is a plain attribute; here a non-persistent buffer
    block0, block1 = model.layers[0].residual_group.blocks[:2]
    assert block0.attn_mask is None and block1.shift_size == 4
    assert sd["layers.0.residual_group.blocks.1.attn_mask"].shape == (64, 64, 64)  # img_size 64: 8 x 8 windows
    assert set(sd["layers.0.residual_group.blocks.1.attn_mask"].unique().tolist()) == {-100.0, 0.0}
    index = sd["layers.0.residual_group.blocks.0.attn.relative_position_index"]
    assert index.dtype == torch.int64 and index.shape == (64, 64)
    assert index.min() == 0 and index.max() == 15 * 15 - 1 and index[0, 0] == index[63, 63] == 7 * 15 + 7
    assert sd["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"].shape == (225, 6)
    assert sd["upsample.0.weight"].shape == (48, CONFIGS[name]["embed_dim"], 3, 3)
    model.load_state_dict(sd, strict=True)


# ---------------------------------------------------------------------------------------------
# equality with the official code


def _git_show(git_dir: Path, path: str, dest: Path) -> str:
    """Write ``HEAD:path`` of a bare mirror to ``dest``; return the commit."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot read the mirror")
    run = lambda *args: subprocess.run(["git", "-C", str(git_dir), *args], capture_output=True, check=True)  # noqa: E731
    dest.write_bytes(run("show", f"HEAD:{path}").stdout)
    return run("rev-parse", "HEAD").stdout.decode().strip()


def _official_source(tmp: Path) -> tuple[Path, str]:
    env = os.environ.get("MEMSR_SWINIR_OFFICIAL")
    if env:
        root = Path(env)
        for candidate in (root, root / "network_swinir.py", root / "models" / "network_swinir.py"):
            if candidate.is_file():
                return candidate, f"$MEMSR_SWINIR_OFFICIAL={candidate}"
        pytest.skip(f"MEMSR_SWINIR_OFFICIAL={env} holds no network_swinir.py")
    if SWINIR_MIRROR.is_dir():
        dest = tmp / "network_swinir.py"
        commit = _git_show(SWINIR_MIRROR, "models/network_swinir.py", dest)
        return dest, f"JingyunLiang/SwinIR@{commit[:7]}"
    pytest.skip(
        "official SwinIR code not available: set MEMSR_SWINIR_OFFICIAL to network_swinir.py (or its folder) "
        f"or fetch github:JingyunLiang/SwinIR to {SWINIR_MIRROR}"
    )


class _StubDropPath(nn.Module):
    """Stands in for timm's DropPath (identity in eval mode)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()

    def forward(self, x):
        return x


def _to_2tuple(x):
    return tuple(x) if isinstance(x, tuple | list) else (x, x)


def _import_with_stubs(path: Path, module_name: str, stubs: dict[str, types.ModuleType]):
    """Import ``path`` as ``module_name`` with ``stubs`` in sys.modules for the import only."""
    saved = {name: sys.modules.get(name) for name in [*stubs, module_name]}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _timm_stubs() -> dict[str, types.ModuleType]:
    try:
        import timm.models.layers  # noqa: F401

        return {}
    except ImportError:
        pass
    timm, models, layers = (types.ModuleType(n) for n in ("timm", "timm.models", "timm.models.layers"))
    layers.DropPath, layers.to_2tuple, layers.trunc_normal_ = _StubDropPath, _to_2tuple, nn.init.trunc_normal_
    timm.models, models.layers = models, layers
    return {"timm": timm, "timm.models": models, "timm.models.layers": layers}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    path, source = _official_source(tmp_path_factory.mktemp("swinir_official"))
    return _import_with_stubs(path, "_official_network_swinir", _timm_stubs()), source


@pytest.mark.filterwarnings("ignore:torch.meshgrid")
@pytest.mark.parametrize("name", ("swinir-light", "swinir-mini"))
@pytest.mark.parametrize("scale", (2, 4))
def test_equal_to_the_official_module(official, name, scale):
    module, source = official
    ref = module.SwinIR(upscale=scale, **CONFIGS[name], **OFFICIAL_COMMON).eval()
    ours = zoo.create(name, scale=scale)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(ref_sd) == list(our_sd), source
    for key, value in ref_sd.items():
        assert value.shape == our_sd[key].shape and value.dtype == our_sd[key].dtype, key
        if key.endswith(("attn_mask", "relative_position_index")):
            assert torch.equal(value, our_sd[key]), key
    assert _n_params(ref) == PARAMS[name][scale]
    _randomize(ref, seed=10 * scale + len(name), std=0.1)
    ours.load_state_dict(ref.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(scale)
    sizes = (ODD_LR, (8, 40), (64, 64)) if scale == 2 else (ODD_LR,)  # odd (padded), one window high, img_size
    for size in sizes:
        x = torch.rand(1, 3, *size, generator=gen)
        with torch.no_grad():
            expected, got = ref(x), ours(x)
        assert got.shape == expected.shape == (1, 3, size[0] * scale, size[1] * scale)
        assert (got - expected).abs().max().item() <= 1e-4, (source, size)


def _compression_swinir(tmp: Path):
    """Pikapi22/SRModelCompression's BasicSR swinir_arch.py, with its two package imports stubbed."""
    if not COMPRESSION_MIRROR.is_dir():
        pytest.skip(f"github:Pikapi22/SRModelCompression not fetched to {COMPRESSION_MIRROR}")
    path = tmp / "swinir_arch.py"
    _git_show(COMPRESSION_MIRROR, "BasicSR/basicsr/archs/swinir_arch.py", path)
    registry = types.ModuleType("basicsr.utils.registry")
    registry.ARCH_REGISTRY = types.SimpleNamespace(register=lambda: lambda cls: cls)
    arch_util = types.ModuleType("_sr_compression.arch_util")
    arch_util.to_2tuple, arch_util.trunc_normal_ = _to_2tuple, nn.init.trunc_normal_
    package = types.ModuleType("_sr_compression")
    package.__path__ = []
    stubs = {
        "basicsr": types.ModuleType("basicsr"),
        "basicsr.utils": types.ModuleType("basicsr.utils"),
        "basicsr.utils.registry": registry,
        "_sr_compression": package,
        "_sr_compression.arch_util": arch_util,
    }
    return _import_with_stubs(path, "_sr_compression.swinir_arch", stubs)


@pytest.mark.filterwarnings("ignore:torch.meshgrid")
def test_swinir_mini_is_the_released_compression_model(tmp_path):
    """The released SwinIRmini (options test_SwinIR_minix2.yml) under BasicSR's test-time padding."""
    module = _compression_swinir(tmp_path)
    ref = module.SwinIR(upscale=2, **CONFIGS["swinir-mini"], **OFFICIAL_COMMON).eval()
    ours = zoo.create("swinir-mini", scale=2)
    assert list(ref.state_dict()) == list(ours.state_dict()) and _n_params(ref) == 98_868
    _randomize(ref, seed=3)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.rand(1, 3, *ODD_LR, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # SwinIRModel.test: reflect-pad to a multiple of 8, run, crop
        expected = ref(F.pad(x, (0, 1, 0, 7), mode="reflect"))[:, :, : 2 * ODD_LR[0], : 2 * ODD_LR[1]]
        assert (ours(x) - expected).abs().max().item() <= 1e-4


# ---------------------------------------------------------------------------------------------
# counters


def _swinir_macs(name: str, scale: int, h: int, w: int) -> tuple[int, int]:
    """(all MACs, conv MACs) of SwinIR with a 1conv residual and pixelshuffledirect on an h x w LR input."""
    c, depths = CONFIGS[name]["embed_dim"], CONFIGS[name]["depths"]
    pixels = (-(-h // 8) * 8) * (-(-w // 8) * 8)  # everything runs on the padded map
    conv = 9 * (3 * c + (len(depths) + 1) * c * c + c * 3 * scale * scale)
    block = 3 * c * c + c * c + 2 * c * 2 * c + 2 * 64 * c  # qkv, proj, fc1 + fc2, q@k and attn@v (64 tokens)
    return pixels * (conv + sum(depths) * block), pixels * conv


@pytest.mark.parametrize("name", ("swinir-light", "swinir-mini"))
def test_counters_support_every_op_and_count_macs(name):
    model = zoo.create(name, scale=2)
    for shape in ((1, 3, 64, 64), (1, 3, *ODD_LR)):
        trace = trace_model(model, shape)
        assert trace.unsupported_ops() == {}, shape
        macs, conv = _swinir_macs(name, 2, *shape[2:])
        assert (trace.analysis("macs").total(), trace.analysis("conv_macs").total()) == (macs, conv)


def test_fmen_preset_counts_of_swinir_light():
    """HR 1280x720 (FMEN Table 3 convention); SwinIR's published Mult-Adds are 195.6 / 87.2 / 49.6 G."""
    preset = get_preset("fmen")
    expected_lr = {2: (360, 640), 3: (240, 427), 4: (180, 320)}
    expected_macs = {2: 240_910_848_000, 3: 109_249_689_600, 4: 62_710_732_800}
    for scale in SCALES:
        shape = preset.input_shape(scale)
        assert shape[2:] == expected_lr[scale]
        trace = trace_model(zoo.create("swinir-light", scale=scale), shape)
        formula = _swinir_macs("swinir-light", scale, *shape[2:])[0]
        assert trace.analysis("macs").total() == expected_macs[scale] == formula


# ---------------------------------------------------------------------------------------------
# EDSR-mini


def _basicsr_edsr(sd: dict, x: torch.Tensor, scale: int, res_scale: float = 2.0) -> torch.Tensor:
    """BasicSR's EDSR (the released EDSRmini code) on RGB 0..1, img_range 255, from zoo weights."""
    conv = lambda t, key: F.conv2d(t, sd[f"{key}.weight"], sd[f"{key}.bias"], padding=1)  # noqa: E731
    mean = torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1)
    x = conv((x - mean) * 255.0, "head.0")
    res = x
    for i in range(8):
        res = res + conv(F.relu(conv(res, f"body.{i}.body.0")), f"body.{i}.body.2") * res_scale
    res = conv(res, "body.8") + x
    for j in range(0, 2 * (1 if scale in (2, 3) else 2), 2):
        res = F.pixel_shuffle(conv(res, f"tail.0.{j}"), 3 if scale == 3 else 2)
    return conv(res, "tail.1") / 255.0 + mean


@pytest.mark.parametrize("scale", SCALES)
def test_edsr_mini_is_basicsr_edsr_of_the_released_options(scale):
    model = zoo.create("edsr-mini", scale=scale)
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    assert len(blocks) == 8 and {b.res_scale for b in blocks} == {2.0}
    assert model.head[0].out_channels == 16
    _randomize(model, seed=scale, std=0.05)
    x = torch.rand(1, 3, *ODD_LR, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model(x * 255.0) / 255.0
        expected = _basicsr_edsr(model.state_dict(), x, scale)
    assert got.shape == (1, 3, ODD_LR[0] * scale, ODD_LR[1] * scale)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
