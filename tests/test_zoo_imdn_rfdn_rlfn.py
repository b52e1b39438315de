"""Zoo families IMDN (IMDN, IMDN-RTC, NTIRE 2022 IMDN baseline), RFDN (RFDN, RFDN-L, E-RFDN) and RLFN
(RLFN, RLFN-S, the NTIRE 2022 RLFN): sizes, metadata, checkpoints and forward passes.

Parameter counts: ``../shared/weights/README.md`` for the files there; bytedance/RLFN's released
rlfn_x{2,4}.pth / rlfn_s_x{2,4}.pth for rlfn / rlfn-s; the published 534K/541K/550K (RFDN) and
626K/633K/643K (RFDN-L) for the two layouts without released weights. The hand-computed checks
re-derive block outputs from the raw checkpoint tensors with torch.nn.functional only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import require_shared

from zoo import imdn, rfdn, rlfn  # noqa: F401  (registers)
from zoo.checkpoints import load_checkpoint
from zoo.registry import get_spec

# sum(p.numel() for p in model.parameters()), per scale
PARAMS = {
    "imdn": {2: 694_404, 3: 703_059, 4: 715_176},
    "imdn-rtc": {2: 20_190},
    "imdn-ntire2022": {4: 893_936},
    "e-rfdn": {4: 433_448},
    "rfdn": {2: 534_036, 3: 540_531, 4: 549_624},
    "rfdn-l": {2: 625_962, 3: 632_997, 4: 642_846},
    "rlfn": {2: 526_856, 3: 533_891, 4: 543_740},
    "rlfn-s": {2: 454_620, 3: 461_115, 4: 470_208},
    "rlfn-ntire": {4: 317_218},
}
MODELS = tuple(PARAMS)
MODEL_SCALES = [(name, s) for name, scales in PARAMS.items() for s in scales]

INPUT_RANGE = {
    "imdn": 1.0,
    "imdn-rtc": 1.0,
    "imdn-ntire2022": 1.0,
    "e-rfdn": 255.0,
    "rfdn": 255.0,
    "rfdn-l": 255.0,
    "rlfn": 255.0,
    "rlfn-s": 255.0,
    "rlfn-ntire": 255.0,
}

# (model, scale, file) of every registered checkpoint
CHECKPOINTED = [
    (name, s, ckpt.filename) for name in MODELS for ckpt in get_spec(name).checkpoints for s in ckpt.scales
]


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _raw(filename: str) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors as stored (no key mapping), read independently of the zoo loader."""
    sd = torch.load(require_shared("weights", filename), map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _loaded(name: str, scale: int) -> torch.nn.Module:
    spec = get_spec(name)
    model = spec.build(scale=scale)
    load_checkpoint(model, spec, scale, require_shared("weights"))
    return model.eval()


def _capture(module: torch.nn.Module) -> dict:
    """Forward hook storing the (first) input and the output of ``module``."""
    seen: dict = {}

    def hook(_mod, inputs, output):
        seen["in"] = inputs[0].detach().clone()
        seen["out"] = output.detach().clone()

    module.register_forward_hook(hook)
    return seen


def _conv(x, sd, name, padding=0, stride=1):
    return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], stride=stride, padding=padding)


def _lrelu(x):
    return F.leaky_relu(x, 0.05)


# ---------------------------------------------------------------------------------------------
# sizes and metadata


@pytest.mark.parametrize(("name", "scale"), MODEL_SCALES)
def test_parameter_count(name, scale):
    assert _n_params(get_spec(name).build(scale=scale)) == PARAMS[name][scale]


@pytest.mark.parametrize("name", MODELS)
def test_scales_match_the_table(name):
    assert get_spec(name).scales == tuple(PARAMS[name])


@pytest.mark.parametrize("name", MODELS)
def test_published_params_within_rounding(name):
    spec = get_spec(name)
    for scale, published in spec.published_params.items():
        # published figures are in thousands (e.g. 534K); RFDN's 540,531 is printed as 541K
        assert abs(PARAMS[name][scale] - published) <= 500, (name, scale, published)


def test_published_params_present_where_a_paper_gives_them():
    expected = {
        "imdn": {2: 694_000, 3: 703_000, 4: 715_000},
        "imdn-ntire2022": {4: 894_000},
        "e-rfdn": {4: 433_000},
        "rfdn": {2: 534_000, 3: 541_000, 4: 550_000},
        "rlfn-ntire": {4: 317_000},
    }
    for name, table in expected.items():
        assert dict(get_spec(name).published_params) == table


@pytest.mark.parametrize("name", MODELS)
def test_metadata(name):
    spec = get_spec(name)
    assert spec.input_range == INPUT_RANGE[name]
    assert spec.channels == "rgb"
    assert spec.paper and spec.notes
    assert spec.family in ("imdn", "rfdn", "rlfn")
    for ckpt in spec.checkpoints:
        assert len(ckpt.sha256) == 64 and set(ckpt.sha256) <= set("0123456789abcdef")
        assert set(ckpt.scales) <= set(spec.scales)
        assert "@" in ckpt.source and ":" in ckpt.source


def test_registered_checkpoints_match_the_weights_sha256sums():
    sums = {}
    for line in require_shared("weights", "SHA256SUMS").read_text().splitlines():
        digest, filename = line.split()
        sums[filename] = digest
    for name in MODELS:
        for ckpt in get_spec(name).checkpoints:
            assert sums[ckpt.filename] == ckpt.sha256, (name, ckpt.filename)


@pytest.mark.parametrize(("name", "scale"), MODEL_SCALES)
def test_forward_shape(name, scale):
    model = get_spec(name).build(scale=scale).eval()
    x = torch.rand(2, 3, 17, 23) * get_spec(name).input_range
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 3, 17 * scale, 23 * scale)
    assert torch.isfinite(y).all()


def test_ntire_key_map_is_a_pure_renaming():
    t = torch.zeros(1)
    sd = {"fea_conv.weight": t, "B4.esa.conv1.bias": t, "LR_conv.weight": t, "upsampler.0.bias": t}
    mapped = rlfn.ntire_team04_keys(sd)
    assert list(mapped) == ["conv_1.weight", "block_4.esa.conv1.bias", "conv_2.weight", "upsampler.0.bias"]
    assert list(sd) == ["fea_conv.weight", "B4.esa.conv1.bias", "LR_conv.weight", "upsampler.0.bias"]


# ---------------------------------------------------------------------------------------------
# public checkpoints


@pytest.mark.shared
@pytest.mark.parametrize(("name", "scale", "filename"), CHECKPOINTED)
def test_checkpoint_loads_strictly(name, scale, filename):
    spec = get_spec(name)
    model = spec.build(scale=scale)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_checkpoint(model, spec, scale, require_shared("weights", filename))
    after = model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if after[k].numel() > 1)
    assert _n_params(model) == PARAMS[name][scale]


@pytest.mark.shared
@pytest.mark.parametrize(("name", "scale", "filename"), CHECKPOINTED)
def test_checkpoint_beats_bicubic_at_its_input_range(name, scale, filename):
    """A wrong input range or a wrongly wired layer gives garbage; the real models beat bicubic by >3 dB."""
    from PIL import Image

    hr_path = require_shared("datasets", "Set5", "HR", "butterfly.png")
    lr_path = require_shared("datasets", "Set5", "LR_bicubic", f"X{scale}", f"butterflyx{scale}.png")
    lr = torch.from_numpy(np.array(Image.open(lr_path).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
    hr = np.array(Image.open(hr_path).convert("RGB"), dtype=np.float64).transpose(2, 0, 1)
    hr = hr[:, : lr.shape[2] * scale, : lr.shape[3] * scale]
    model = _loaded(name, scale)
    rng = get_spec(name).input_range
    with torch.no_grad():
        sr = (model(lr * rng)[0] / rng * 255).clamp(0, 255).round().double().numpy()
    bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)[0]
    bicubic = (bicubic * 255).clamp(0, 255).round().double().numpy()

    def psnr_y(img):
        y = lambda a: 16 + (65.481 * a[0] + 128.553 * a[1] + 24.966 * a[2]) / 255  # noqa: E731
        diff = (y(img) - y(hr))[scale:-scale, scale:-scale]
        return 10 * np.log10(255.0**2 / np.mean(diff**2))

    assert psnr_y(sr) > psnr_y(bicubic) + 3.0


# ---------------------------------------------------------------------------------------------
# outputs re-derived by hand from the raw checkpoint tensors


@pytest.mark.shared
def test_imdn_rtc_whole_network_by_hand():
    sd = _raw("model_RTC.pth")
    model = _loaded("imdn-rtc", 2)
    torch.manual_seed(1)
    x = torch.rand(1, 3, 20, 26)
    with torch.no_grad():
        got = model(x)
        head = _conv(x, sd, "model.0", 1)
        h = head
        for b in range(5):
            p = f"model.1.sub.{b}"
            o1 = _lrelu(_conv(h, sd, f"{p}.c1", 1))
            o2 = _lrelu(_conv(o1[:, 3:], sd, f"{p}.c2", 1))
            o3 = _lrelu(_conv(o2[:, 3:], sd, f"{p}.c3", 1))
            o4 = _conv(o3[:, 3:], sd, f"{p}.c4", 1)
            h = _conv(torch.cat([o1[:, :3], o2[:, :3], o3[:, :3], o4], 1), sd, f"{p}.c5") + h
        body = _conv(h, sd, "model.1.sub.5") + head
        want = F.pixel_shuffle(_conv(body, sd, "model.2", 1), 2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.shared
def test_imdn_head_and_contrast_aware_attention_by_hand():
    sd = _raw("IMDN_x2.pth")
    model = _loaded("imdn", 2)
    head = _capture(model.fea_conv)
    cca = _capture(model.IMDB1.cca)
    torch.manual_seed(2)
    x = torch.rand(1, 3, 19, 24)
    with torch.no_grad():
        model(x)
        torch.testing.assert_close(head["out"], _conv(x, sd, "fea_conv", 1), rtol=1e-5, atol=1e-5)
        f = cca["in"]
        stat = f.std(dim=(2, 3), keepdim=True, unbiased=False) + f.mean(dim=(2, 3), keepdim=True)
        att = torch.sigmoid(_conv(F.relu(_conv(stat, sd, "IMDB1.cca.conv_du.0")), sd, "IMDB1.cca.conv_du.2"))
        torch.testing.assert_close(cca["out"], f * att, rtol=1e-5, atol=1e-5)


@pytest.mark.shared
def test_imdn_ntire_block_and_global_skip_by_hand():
    sd = _raw("imdn_baseline.pth")
    model = _loaded("imdn-ntire2022", 4)
    block = _capture(model.model[1].sub[0])
    torch.manual_seed(3)
    x = torch.rand(1, 3, 16, 18)
    with torch.no_grad():
        model(x)
        h = block["in"]
        torch.testing.assert_close(h, _conv(x, sd, "model.0", 1), rtol=1e-5, atol=1e-5)
        p = "model.1.sub.0"
        o1 = _lrelu(_conv(h, sd, f"{p}.conv1.0", 1))
        o2 = _lrelu(_conv(o1[:, 16:], sd, f"{p}.conv2.0", 1))
        o3 = _lrelu(_conv(o2[:, 16:], sd, f"{p}.conv3.0", 1))
        o4 = _conv(o3[:, 16:], sd, f"{p}.conv4", 1)
        want = h + _conv(torch.cat([o1[:, :16], o2[:, :16], o3[:, :16], o4], 1), sd, f"{p}.conv1x1")
        torch.testing.assert_close(block["out"], want, rtol=1e-5, atol=1e-4)


def _esa_rfdn(x, sd, p):
    """njulj/RFDN ESA written out: 1x1, 3x3/2 (no pad), maxpool 7/3, conv_max+ReLU, conv3+ReLU, conv3_,
    bilinear back (align_corners=False), + conv_f(1x1 output), 1x1, sigmoid, multiply."""
    c1_ = _conv(x, sd, f"{p}.conv1")
    c1 = _conv(c1_, sd, f"{p}.conv2", stride=2)
    v = F.max_pool2d(c1, kernel_size=7, stride=3)
    v = F.relu(_conv(v, sd, f"{p}.conv_max", 1))
    v = F.relu(_conv(v, sd, f"{p}.conv3", 1))
    v = _conv(v, sd, f"{p}.conv3_", 1)
    v = F.interpolate(v, size=x.shape[2:], mode="bilinear", align_corners=False)
    return x * torch.sigmoid(_conv(v + _conv(c1_, sd, f"{p}.conv_f"), sd, f"{p}.conv4"))


@pytest.mark.shared
def test_e_rfdn_first_block_by_hand():
    sd = _raw("RFDN_AIM.pth")
    model = _loaded("e-rfdn", 4)
    block = _capture(model.B1)
    torch.manual_seed(4)
    x = torch.rand(1, 3, 30, 25) * 255
    with torch.no_grad():
        model(x)
        h = block["in"]
        torch.testing.assert_close(h, _conv(x, sd, "fea_conv", 1), rtol=1e-5, atol=1e-3)
        d1 = _lrelu(_conv(h, sd, "B1.c1_d"))
        r1 = _lrelu(_conv(h, sd, "B1.c1_r", 1) + h)
        d2 = _lrelu(_conv(r1, sd, "B1.c2_d"))
        r2 = _lrelu(_conv(r1, sd, "B1.c2_r", 1) + r1)
        d3 = _lrelu(_conv(r2, sd, "B1.c3_d"))
        r3 = _lrelu(_conv(r2, sd, "B1.c3_r", 1) + r2)
        r4 = _lrelu(_conv(r3, sd, "B1.c4", 1))
        want = _esa_rfdn(_conv(torch.cat([d1, d2, d3, r4], 1), sd, "B1.c5"), sd, "B1.esa")
        torch.testing.assert_close(block["out"], want, rtol=1e-4, atol=1e-3)


@pytest.mark.shared
def test_rlfn_ntire_first_block_by_hand():
    sd = _raw("team04_rlfn.pth")  # RLFN_cut names: B1.* is the zoo's block_1.*
    model = _loaded("rlfn-ntire", 4)
    block = _capture(model.block_1)
    torch.manual_seed(5)
    x = torch.rand(1, 3, 26, 21) * 255
    with torch.no_grad():
        model(x)
        h = block["in"]
        torch.testing.assert_close(h, _conv(x, sd, "fea_conv", 1), rtol=1e-5, atol=1e-3)
        out = _lrelu(_conv(h, sd, "B1.c1_r", 1))
        out = _lrelu(_conv(out, sd, "B1.c2_r", 1))
        out = _lrelu(_conv(out, sd, "B1.c3_r", 1)) + h
        f = _conv(out, sd, "B1.c5")
        c1_ = _conv(f, sd, "B1.esa.conv1")
        v = F.max_pool2d(_conv(c1_, sd, "B1.esa.conv2", stride=2), kernel_size=7, stride=3)
        v = F.interpolate(
            _conv(v, sd, "B1.esa.conv3", 1), size=f.shape[2:], mode="bilinear", align_corners=False
        )
        want = f * torch.sigmoid(_conv(v + _conv(c1_, sd, "B1.esa.conv_f"), sd, "B1.esa.conv4"))
        torch.testing.assert_close(block["out"], want, rtol=1e-4, atol=1e-3)


def test_plain_rfdn_block_ends_in_cca_after_the_fusion_conv():
    """The paper RFDN (no released code) is E-RFDN's RFDB with CCA (reduction 4) in ESA's place."""
    torch.manual_seed(6)
    model = get_spec("rfdn").build(scale=2).eval()
    block = model.B1
    assert not hasattr(block, "esa") and block.cca.conv_du[0].out_channels == 12
    sd = {k: v.detach() for k, v in block.state_dict().items()}
    x = torch.randn(1, 48, 11, 13)
    with torch.no_grad():
        got = block(x)
        d1 = _lrelu(_conv(x, sd, "c1_d"))
        r1 = _lrelu(_conv(x, sd, "c1_r", 1) + x)
        d2 = _lrelu(_conv(r1, sd, "c2_d"))
        r2 = _lrelu(_conv(r1, sd, "c2_r", 1) + r1)
        d3 = _lrelu(_conv(r2, sd, "c3_d"))
        r3 = _lrelu(_conv(r2, sd, "c3_r", 1) + r2)
        f = _conv(torch.cat([d1, d2, d3, _lrelu(_conv(r3, sd, "c4", 1))], 1), sd, "c5")
        stat = f.std(dim=(2, 3), keepdim=True, unbiased=False) + f.mean(dim=(2, 3), keepdim=True)
        want = f * torch.sigmoid(_conv(F.relu(_conv(stat, sd, "cca.conv_du.0")), sd, "cca.conv_du.2"))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
