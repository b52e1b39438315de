"""FMEN / FMEN-S (training and deploy forms) and the re-parameterization helpers of zoo.reparam.

- exact parameter counts for every registered FMEN model and scale;
- training form == ``deploy(training form)`` on odd image sizes, with random weights and random
  BatchNorm statistics and affine parameters, for every scale;
- each helper of zoo.reparam checked on its own against the unmerged layers;
- a training-form and a deploy-form HFAB recomputed by hand with torch.nn.functional;
- both public FMEN-S checkpoints load strictly into ``fmen-s-deploy`` and super-resolve a Set5
  image better than bicubic (needs ../shared).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo import fmen as fm
from zoo import reparam as rp
from zoo.registry import get_spec

SCALES = (2, 3, 4)
FMEN_NAMES = ("fmen", "fmen-deploy", "fmen-s", "fmen-s-deploy")

# sum(p.numel() for p in model.parameters()); BN running statistics are buffers, not counted.
PARAMS = {
    "fmen": {2: 2_424_552, 3: 2_433_207, 4: 2_445_324},
    "fmen-deploy": {2: 748_656, 3: 757_311, 4: 769_428},  # published 748K / 757K / 769K
    "fmen-s": {2: 1_029_630, 3: 1_036_395, 4: 1_045_866},
    "fmen-s-deploy": {2: 324_830, 3: 331_595, 4: 341_066},  # published 341K (x4)
}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    """Random running statistics and affine parameters for every BatchNorm (as after training)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 4 - 2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 2.5 + 0.2)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 2 - 1)


def _random_conv(c_out: int, c_in: int, k: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(c_out, c_in, k, k, generator=gen) * 0.3, torch.randn(c_out, generator=gen)


# ---------------------------------------------------------------------------------------------
# registry and sizes


@pytest.mark.parametrize("name", FMEN_NAMES)
@pytest.mark.parametrize("scale", SCALES)
def test_parameter_count(name, scale):
    assert _n_params(get_spec(name).build(scale=scale)) == PARAMS[name][scale]


def test_published_counts_match_the_deploy_form():
    # FMEN (paper Table 3) prints thousands, truncated; FMEN-S: 341,066 exactly (official weights).
    for scale, published in get_spec("fmen-deploy").published_params.items():
        assert PARAMS["fmen-deploy"][scale] // 1000 * 1000 == published
    assert get_spec("fmen-s-deploy").published_params == {4: 341_000}
    assert PARAMS["fmen-s-deploy"][4] == 341_066


def test_fmen_mult_adds_match_paper_table3():
    """Deploy-form conv Mult-Adds at a 1280x720 output: published 172.0 / 77.2 / 44.2 G."""
    lr_sizes = {2: (360, 640), 3: (240, 426), 4: (180, 320)}
    for scale, published in {2: 172.0, 3: 77.2, 4: 44.2}.items():
        model = get_spec("fmen-deploy").build(scale=scale)
        weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
        h, w = lr_sizes[scale]
        assert int(weights * h * w / 1e8) / 10 == published


def test_fmen_s_deploy_is_34_convs_and_ntire_macs():
    model = get_spec("fmen-s-deploy").build(scale=4)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 34  # NTIRE 2022 "#conv"
    macs = sum(m.weight.numel() for m in convs) * 256 * 256
    assert round(macs / 1e9, 2) == 22.28  # NTIRE 2022 MACs at a 256x256 LR input


def test_registry_metadata():
    for name in FMEN_NAMES:
        spec = get_spec(name)
        assert spec.input_range == 255.0 and spec.channels == "rgb" and spec.scales == SCALES
        assert spec.family == "fmen"
    ckpts = get_spec("fmen-s-deploy").checkpoints
    assert [c.filename for c in ckpts] == ["FMEN-S_test_weights.pt", "team03_fmen.pth"]
    assert all(c.scales == (4,) for c in ckpts)
    assert get_spec("fmen-s-deploy").checkpoint_for(4).filename == "FMEN-S_test_weights.pt"


def test_team03_key_map_is_pure_and_renames():
    sd = {
        "basic_blocks.0.conv1.rep_conv.weight": torch.zeros(1),
        "hfabs.2.squeeze.bias": torch.ones(1),
        "head.weight": torch.zeros(2),
    }
    before = dict(sd)
    out = fm.fmen_team03_key_map(sd)
    assert sd == before
    assert list(out) == ["ERBs.0.conv1.rep_conv.weight", "HFABs.2.squeeze.bias", "head.weight"]


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="up_blocks"):
        fm.FMEN(down_blocks=3, up_blocks=(1, 1))
    with pytest.raises(ValueError, match="mid_feats"):
        fm.FMEN(mid_feats=4)


# ---------------------------------------------------------------------------------------------
# training form == deploy form


@pytest.mark.parametrize("name", ["fmen", "fmen-s"])
@pytest.mark.parametrize("scale", SCALES)
def test_deploy_matches_training_form(name, scale):
    gen = torch.Generator().manual_seed(1000 * scale + len(name))
    torch.manual_seed(scale)
    model = get_spec(name).build(scale=scale)
    _randomize_bn(model, gen)
    model.eval()
    deployed = rp.deploy(model)
    assert deployed.is_deploy and not model.is_deploy
    reference = get_spec(f"{name}-deploy").build(scale=scale)
    assert [(k, v.shape) for k, v in deployed.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    for h, w in ((13, 17), (9, 11)):
        x = torch.rand(2, 3, h, w, generator=gen) * 255
        with torch.no_grad():
            a, b = model(x), deployed(x)
        assert a.shape == (2, 3, h * scale, w * scale)
        assert a.abs().max() > 10  # a non-trivial output
        torch.testing.assert_close(b, a, atol=1e-3, rtol=0)


def test_deploy_leaves_the_input_untouched_and_is_idempotent():
    gen = torch.Generator().manual_seed(7)
    model = fm.FMEN(scale=2, n_feats=8, down_blocks=2, up_blocks=(1, 2, 1), mid_feats=6)
    _randomize_bn(model, gen)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    types_before = [type(m) for m in model.modules()]
    deployed = rp.deploy(model)
    assert [type(m) for m in model.modules()] == types_before
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert deployed.training  # keeps the mode of its input
    model.eval()
    deployed.eval()
    again = rp.deploy(deployed)
    x = torch.rand(1, 3, 7, 9, generator=gen) * 255
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), atol=1e-3, rtol=0)
        assert torch.equal(again(x), deployed(x))


def test_deploy_of_a_model_without_blocks_is_an_equal_copy():
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    out = rp.deploy(conv)
    assert out is not conv
    for (k, a), (_, b) in zip(conv.state_dict().items(), out.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_deploy_accepts_a_block_at_the_top():
    gen = torch.Generator().manual_seed(3)
    block = fm.RRRB(5)
    dep = rp.deploy(block)
    assert isinstance(dep, fm.RepConv)
    x = torch.randn(1, 5, 6, 7, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), block(x), atol=1e-5, rtol=1e-5)


def test_training_form_gradients_reach_every_parameter():
    model = fm.FMEN(scale=2, n_feats=8, down_blocks=1, up_blocks=(1, 1), mid_feats=6).train()
    model(torch.rand(2, 3, 6, 6) * 255).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


# ---------------------------------------------------------------------------------------------
# the helpers of zoo.reparam, one at a time


def test_bn_to_affine_equals_eval_batchnorm():
    gen = torch.Generator().manual_seed(0)
    bn = nn.BatchNorm2d(6)
    _randomize_bn(bn, gen)
    bn.eval()
    x = torch.randn(2, 6, 5, 4, generator=gen)
    scale, shift = bn_aff = rp.bn_to_affine(bn)
    assert scale.dtype == torch.float64 and all(t.shape == (6,) for t in bn_aff)
    torch.testing.assert_close(
        (x.double() * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)).float(), bn(x), atol=1e-5, rtol=1e-5
    )
    again = rp.bn_to_affine(
        gamma=bn.weight, beta=bn.bias, mean=bn.running_mean, var=bn.running_var, eps=bn.eps
    )
    torch.testing.assert_close(again, bn_aff)


def test_fuse_conv_bn():
    gen = torch.Generator().manual_seed(1)
    w, b = _random_conv(5, 4, 3, gen)
    bn = nn.BatchNorm2d(5)
    _randomize_bn(bn, gen)
    bn.eval()
    x = torch.randn(1, 4, 7, 6, generator=gen)
    wf, bf = rp.fuse_conv_bn(w, b, *rp.bn_to_affine(bn))
    with torch.no_grad():
        ref = bn(F.conv2d(x, w, b, padding=1))
    torch.testing.assert_close(F.conv2d(x, wf, bf, padding=1), ref, atol=1e-5, rtol=1e-5)
    # a conv without bias
    wf0, bf0 = rp.fuse_conv_bn(w, None, *rp.bn_to_affine(bn))
    with torch.no_grad():
        ref0 = bn(F.conv2d(x, w, None, padding=1))
    torch.testing.assert_close(F.conv2d(x, wf0, bf0, padding=1), ref0, atol=1e-5, rtol=1e-5)


def test_fuse_bn_conv_exact_with_shift_padding_and_not_with_zero_padding():
    gen = torch.Generator().manual_seed(2)
    w, b = _random_conv(5, 4, 3, gen)
    bn = nn.BatchNorm2d(4)
    _randomize_bn(bn, gen)
    bn.eval()
    x = torch.randn(1, 4, 7, 6, generator=gen)
    scale, shift = rp.bn_to_affine(bn)
    wf, bf = rp.fuse_bn_conv(scale, shift, w, b)
    merged = F.conv2d(x, wf, bf, padding=1)
    with torch.no_grad():
        y = bn(x)
    shift_padded = F.conv2d(rp.pad_with_values(y, shift.float()), w, b)  # FMEN's HFAB padding
    torch.testing.assert_close(merged, shift_padded, atol=1e-5, rtol=1e-5)
    zero_padded = F.conv2d(y, w, b, padding=1)
    torch.testing.assert_close(merged[..., 1:-1, 1:-1], zero_padded[..., 1:-1, 1:-1], atol=1e-5, rtol=1e-5)
    assert (merged - zero_padded).abs().max() > 1e-2  # the border differs with ordinary padding


def test_merge_1x1_kxk():
    gen = torch.Generator().manual_seed(3)
    w1, b1 = _random_conv(6, 4, 1, gen)
    w3, b3 = _random_conv(5, 6, 3, gen)
    x = torch.randn(2, 4, 6, 9, generator=gen)
    w, b = rp.merge_1x1_kxk(w1, b1, w3, b3)
    assert w.shape == (5, 4, 3, 3) and b.shape == (5,)
    mid = F.conv2d(x, w1, b1)
    ref = F.conv2d(rp.pad_with_values(mid, b1), w3, b3)  # padded with the 1x1's bias, as RRRB
    torch.testing.assert_close(F.conv2d(x, w, b, padding=1), ref, atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError):
        rp.merge_1x1_kxk(w3, b3, w3, b3)  # first kernel must be 1x1


def test_merge_kxk_1x1():
    gen = torch.Generator().manual_seed(4)
    w3, b3 = _random_conv(6, 4, 3, gen)
    w1, b1 = _random_conv(5, 6, 1, gen)
    x = torch.randn(2, 4, 6, 9, generator=gen)
    w, b = rp.merge_kxk_1x1(w3, b3, w1, b1)
    ref = F.conv2d(F.conv2d(x, w3, b3, padding=1), w1, b1)
    torch.testing.assert_close(F.conv2d(x, w, b, padding=1), ref, atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError):
        rp.merge_kxk_1x1(w3, b3, w3[:4, :6], b3)  # channel mismatch


def test_add_identity_and_identity_kernel():
    gen = torch.Generator().manual_seed(5)
    w, b = _random_conv(4, 4, 3, gen)
    x = torch.randn(1, 4, 5, 5, generator=gen)
    w_id = rp.add_identity(w)
    torch.testing.assert_close(F.conv2d(x, w_id, b, padding=1), F.conv2d(x, w, b, padding=1) + x)
    ident = rp.identity_kernel(4, 5)
    torch.testing.assert_close(F.conv2d(x, ident, padding=2), x)
    with pytest.raises(ValueError):
        rp.add_identity(torch.zeros(3, 4, 3, 3))


def test_pad_kernel():
    gen = torch.Generator().manual_seed(6)
    w1, b1 = _random_conv(5, 4, 1, gen)
    x = torch.randn(1, 4, 6, 7, generator=gen)
    w3 = rp.pad_kernel(w1, 3)
    assert w3.shape == (5, 4, 3, 3) and torch.equal(w3[:, :, 1, 1], w1[:, :, 0, 0])
    off_centre = w3.clone()
    off_centre[:, :, 1, 1] = 0
    assert not off_centre.any()
    torch.testing.assert_close(F.conv2d(x, w3, b1, padding=1), F.conv2d(x, w1, b1))
    torch.testing.assert_close(rp.pad_kernel(w3, 5)[:, :, 1:4, 1:4], w3)
    with pytest.raises(ValueError):
        rp.pad_kernel(w3, 4)


def test_merge_parallel_repvgg_style():
    """3x3 + 1x1 + identity branches on one input (RepVGG) == one 3x3 conv."""
    gen = torch.Generator().manual_seed(8)
    w3, b3 = _random_conv(4, 4, 3, gen)
    w1, b1 = _random_conv(4, 4, 1, gen)
    x = torch.randn(2, 4, 5, 6, generator=gen)
    w, b = rp.merge_parallel((w3, b3), (w1, b1), (rp.identity_kernel(4, 1), None))
    ref = F.conv2d(x, w3, b3, padding=1) + F.conv2d(x, w1, b1) + x
    torch.testing.assert_close(F.conv2d(x, w, b, padding=1), ref, atol=1e-5, rtol=1e-5)


def test_helpers_are_pure():
    gen = torch.Generator().manual_seed(9)
    w1, b1 = _random_conv(6, 4, 1, gen)
    w3, b3 = _random_conv(6, 6, 3, gen)
    w1b, b1b = _random_conv(5, 6, 1, gen)
    scale, shift = torch.rand(6, generator=gen) + 0.5, torch.randn(6, generator=gen)
    tensors = [w1, b1, w3, b3, w1b, b1b, scale, shift]
    copies = [t.clone() for t in tensors]
    rp.merge_1x1_kxk(w1, b1, w3, b3)
    rp.merge_kxk_1x1(w3, b3, w1b, b1b)
    rp.fuse_conv_bn(w3, b3, scale, shift)
    rp.fuse_bn_conv(scale, shift, w3, b3)
    rp.add_identity(w3)
    rp.pad_kernel(w1, 3)
    rp.merge_parallel((w3, b3), (w3, None))
    for t, c in zip(tensors, copies, strict=True):
        assert torch.equal(t, c)


def test_pad_with_values():
    x = torch.arange(6.0).view(1, 1, 2, 3).repeat(1, 2, 1, 1).requires_grad_()
    v = torch.tensor([7.0, -1.0], requires_grad=True)
    out = rp.pad_with_values(x, v)
    assert out.shape == (1, 2, 4, 5)
    assert torch.equal(out[0, :, 1:-1, 1:-1], x[0].detach())
    border = torch.ones(4, 5, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    assert torch.all(out[0, 0][border] == 7) and torch.all(out[0, 1][border] == -1)
    out.sum().backward()
    assert torch.equal(v.grad, torch.tensor([14.0, 14.0]))  # 4*5 - 2*3 border pixels per channel
    assert torch.equal(x.grad, torch.ones_like(x))


def test_rrrb_merged_conv_equals_block():
    gen = torch.Generator().manual_seed(10)
    block = fm.RRRB(6, ratio=3)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    x = torch.randn(2, 6, 5, 8, generator=gen)
    dep = block.to_deploy()
    assert isinstance(dep, fm.RepConv) and dep.rep_conv.weight.shape == (6, 6, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), block(x), atol=1e-4, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# HFAB recomputed by hand with torch.nn.functional


def _hand_erb_deploy(erb: fm.ERB, x: torch.Tensor) -> torch.Tensor:
    c1, c2 = erb.conv1.rep_conv, erb.conv2.rep_conv
    h = F.leaky_relu(F.conv2d(x, c1.weight, c1.bias, padding=1), 0.1)
    return F.conv2d(h, c2.weight, c2.bias, padding=1)


def test_deploy_hfab_by_hand():
    gen = torch.Generator().manual_seed(11)
    torch.manual_seed(11)
    hfab = fm.DeployHFAB(n_feats=6, up_blocks=2, mid_feats=5).eval()
    x = torch.randn(1, 6, 7, 5, generator=gen) * 3
    h = F.leaky_relu(F.conv2d(x, hfab.squeeze.weight, hfab.squeeze.bias, padding=1), 0.1)
    for erb in hfab.convs:  # no activation between two consecutive ERBs
        h = _hand_erb_deploy(erb, h)
    h = F.leaky_relu(h, 0.1)
    attention = torch.sigmoid(F.conv2d(h, hfab.excitate.weight, hfab.excitate.bias, padding=1))
    expected = attention * x
    with torch.no_grad():
        got = hfab(x)
    torch.testing.assert_close(got, expected)
    # and a few values by plain arithmetic: pixel (0, 0) of channel 2 of the excitate output
    pre = hfab.excitate.bias[2] + sum(
        (hfab.excitate.weight[2, :, 1 + dy, 1 + dx] * h[0, :, dy, dx]).sum() for dy in (0, 1) for dx in (0, 1)
    )
    torch.testing.assert_close(got[0, 2, 0, 0], torch.sigmoid(pre) * x[0, 2, 0, 0])


def test_training_hfab_by_hand_and_its_deploy_form():
    gen = torch.Generator().manual_seed(12)
    torch.manual_seed(12)
    hfab = fm.HFAB(n_feats=6, up_blocks=1, mid_feats=5, ratio=2)
    _randomize_bn(hfab, gen)
    hfab.eval()
    x = torch.randn(1, 6, 7, 5, generator=gen) * 3

    def bn(m, t):
        inv = m.weight / torch.sqrt(m.running_var + m.eps)
        return (t - m.running_mean.view(1, -1, 1, 1)) * inv.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)

    def pad_shift(m, t):  # pad with the BN output of a zero input, i.e. its shift
        zero = bn(m, torch.zeros(1, t.shape[1], 1, 1))
        out = zero.expand(t.shape[0], -1, t.shape[2] + 2, t.shape[3] + 2).clone()
        out[:, :, 1:-1, 1:-1] = t
        return out

    def rrrb(r, t):
        e = F.conv2d(t, r.expand_conv.weight, r.expand_conv.bias)
        padded = e.new_empty(e.shape[0], e.shape[1], e.shape[2] + 2, e.shape[3] + 2)
        padded[:] = r.expand_conv.bias.view(1, -1, 1, 1)
        padded[:, :, 1:-1, 1:-1] = e
        f = F.conv2d(padded, r.fea_conv.weight, r.fea_conv.bias) + e
        return F.conv2d(f, r.reduce_conv.weight, r.reduce_conv.bias) + t

    with torch.no_grad():
        h = F.conv2d(pad_shift(hfab.bn1, bn(hfab.bn1, x)), hfab.squeeze.weight, hfab.squeeze.bias)
        h = F.leaky_relu(h, 0.1)
        erb = hfab.convs[0]
        h = rrrb(erb.conv2, F.leaky_relu(rrrb(erb.conv1, h), 0.1))
        h = F.leaky_relu(h, 0.1)
        h = F.conv2d(pad_shift(hfab.bn2, bn(hfab.bn2, h)), hfab.excitate.weight, hfab.excitate.bias)
        expected = torch.sigmoid(bn(hfab.bn3, h)) * x
        torch.testing.assert_close(hfab(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hfab.to_deploy()(x), expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# public FMEN-S checkpoints (../shared/weights)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.shared
@pytest.mark.parametrize("index", [0, 1])
def test_fmen_s_checkpoints_load_strictly(weights_dir, index):
    spec = get_spec("fmen-s-deploy")
    ckpt = spec.checkpoints[index]
    path = weights_dir / ckpt.filename
    assert _sha256(path) == ckpt.sha256
    state = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.key_map is not None:
        state = ckpt.key_map(state)
    model = spec.build(scale=4)
    model.load_state_dict(state, strict=True)
    assert _n_params(model) == 341_066
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.shared
def test_fmen_s_checkpoints_through_zoo_create(weights_dir):
    pytest.importorskip("zoo.checkpoints")
    import zoo

    by_dir = zoo.create("fmen-s-deploy", scale=4, checkpoint=weights_dir)  # the first known file
    by_file = zoo.create("fmen-s-deploy", scale=4, checkpoint=weights_dir / "team03_fmen.pth")
    official = torch.load(weights_dir / "FMEN-S_test_weights.pt", map_location="cpu", weights_only=True)
    ntire = fm.fmen_team03_key_map(
        torch.load(weights_dir / "team03_fmen.pth", map_location="cpu", weights_only=True)
    )
    assert torch.equal(by_dir.head.weight, official["head.weight"])
    assert torch.equal(by_file.HFABs[3].excitate.bias, ntire["HFABs.3.excitate.bias"])


def _rgb_psnr(a: np.ndarray, b: np.ndarray, crop: int) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[crop:-crop, crop:-crop]
    return float(10 * np.log10(255.0**2 / np.mean(d**2)))


@pytest.mark.shared
@pytest.mark.parametrize("index", [0, 1])
def test_fmen_s_checkpoints_super_resolve(weights_dir, datasets_dir, index):
    """Real weights through the deploy structure: Set5 'baby' x4 clearly beats bicubic."""
    from PIL import Image

    spec = get_spec("fmen-s-deploy")
    ckpt = spec.checkpoints[index]
    state = torch.load(weights_dir / ckpt.filename, map_location="cpu", weights_only=True)
    if ckpt.key_map is not None:
        state = ckpt.key_map(state)
    model = spec.build(scale=4).eval()
    model.load_state_dict(state, strict=True)
    hr = np.asarray(Image.open(datasets_dir / "Set5" / "HR" / "baby.png").convert("RGB"))
    lr = np.asarray(Image.open(datasets_dir / "Set5" / "LR_bicubic" / "X4" / "babyx4.png").convert("RGB"))
    x = torch.from_numpy(lr.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        sr = model(x)
    bicubic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)

    def to_img(t):
        return t[0].permute(1, 2, 0).clamp(0, 255).round().numpy()

    psnr_sr, psnr_bic = _rgb_psnr(to_img(sr), hr, 4), _rgb_psnr(to_img(bicubic), hr, 4)
    assert psnr_sr > 32.0  # measured: 32.23 (official test weights), 32.19 (NTIRE file)
    assert psnr_sr > psnr_bic + 1.0  # bicubic: 30.59
