"""FMEN and FMEN-S (Du et al., "Fast and Memory-Efficient Network Towards Efficient Image
Super-Resolution", CVPRW 2022), in training form and in deploy (re-parameterized) form.

Written from the paper and the structure of NJU-Jet/FMEN (train_fmen.py / test_fmen.py @a1def16).

Training form:
- RRRB (residual-in-residual re-parameterizable block), one 3x3 conv C->C at inference:
  ``1x1 expand C->rC``; ``3x3 rC->rC`` on the expanded map padded with the expand bias (not zeros),
  plus an identity over it; ``1x1 reduce rC->C``; plus an outer identity.
- ERB = RRRB -> LeakyReLU(0.1) -> RRRB (no skip left at inference).
- HFAB(C, n, mid) = BN -> 3x3 C->mid (input padded with BN's shift) -> LeakyReLU -> n ERBs(mid) ->
  LeakyReLU -> BN -> 3x3 mid->C (padded with BN's shift) -> BN -> sigmoid -> multiply with the input.
  There is no activation between two consecutive ERBs of one HFAB (as in the official code).
- Network: head 3x3 3->C; warm-up = 3x3 C->C + HFAB(C, up[0], mid-4); ``down`` pairs
  (ERB(C), HFAB(C, up[i+1], mid)); lr_conv 3x3; global skip from the head output; tail 3x3 C->3s^2 +
  PixelShuffle(s). RGB in 0..255, no mean shift.

Deploy form (``deploy=True`` or ``zoo.reparam.deploy(model)``): every RRRB is one 3x3 conv
(``rep_conv``), every HFAB is squeeze 3x3 -> LeakyReLU -> ERBs -> LeakyReLU -> excitate 3x3 ->
sigmoid -> multiply, BNs folded. The module names follow the official test model, so the state dict
of ``FMEN(..., deploy=True)`` has exactly the keys of ``FMEN-S_test_weights.pt``.

LeakyReLU is applied functionally (the official code uses one module-level ``nn.LeakyReLU`` that is
not registered in the model), so module-hook counters see the same modules as in the official model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.registry import Checkpoint, register_model
from zoo.reparam import (
    add_identity,
    bn_to_affine,
    fuse_bn_conv,
    fuse_conv_bn,
    merge_1x1_kxk,
    merge_kxk_1x1,
    pad_with_values,
    set_conv,
)

LRELU_SLOPE = 0.1

__all__ = ["ERB", "FMEN", "HFAB", "RRRB", "DeployHFAB", "RepConv", "fmen_team03_key_map"]


def _act(x: Tensor) -> Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


def _bn_shift(bn: nn.BatchNorm2d) -> Tensor:
    """``beta - running_mean * gamma / sqrt(running_var + eps)``, differentiable in gamma and beta."""
    return bn.bias - bn.running_mean * bn.weight / (bn.running_var + bn.eps).sqrt()


class RepConv(nn.Module):
    """Deploy form of an RRRB: one 3x3 conv C->C (state-dict key ``rep_conv``)."""

    def __init__(self, n_feats: int):
        super().__init__()
        self.rep_conv = nn.Conv2d(n_feats, n_feats, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.rep_conv(x)


class RRRB(nn.Module):
    """Residual-in-residual re-parameterizable block (training form of one 3x3 conv C->C)."""

    def __init__(self, n_feats: int, ratio: int = 2):
        super().__init__()
        self.n_feats = n_feats
        self.expand_conv = nn.Conv2d(n_feats, ratio * n_feats, 1, 1, 0)
        self.fea_conv = nn.Conv2d(ratio * n_feats, ratio * n_feats, 3, 1, 0)
        self.reduce_conv = nn.Conv2d(ratio * n_feats, n_feats, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        expanded = self.expand_conv(x)
        out = self.fea_conv(pad_with_values(expanded, self.expand_conv.bias)) + expanded
        return self.reduce_conv(out) + x

    def merged_weights(self) -> tuple[Tensor, Tensor]:
        """``(weight, bias)`` of the single 3x3 conv this block equals (exact on every pixel)."""
        w_fea = add_identity(self.fea_conv.weight)  # inner identity over the expanded map
        w, b = merge_1x1_kxk(self.expand_conv.weight, self.expand_conv.bias, w_fea, self.fea_conv.bias)
        w, b = merge_kxk_1x1(w, b, self.reduce_conv.weight, self.reduce_conv.bias)
        return add_identity(w), b  # outer identity

    def to_deploy(self) -> RepConv:
        rep = RepConv(self.n_feats).to(self.fea_conv.weight.device, self.fea_conv.weight.dtype)
        set_conv(rep.rep_conv, *self.merged_weights())
        return rep


class ERB(nn.Module):
    """Enhanced residual block: RRRB -> LeakyReLU(0.1) -> RRRB (``deploy=True``: two 3x3 convs)."""

    def __init__(self, n_feats: int, ratio: int = 2, deploy: bool = False):
        super().__init__()
        self.conv1 = RepConv(n_feats) if deploy else RRRB(n_feats, ratio)
        self.conv2 = RepConv(n_feats) if deploy else RRRB(n_feats, ratio)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(_act(self.conv1(x)))


class DeployHFAB(nn.Module):
    """Deploy form of the high-frequency attention block (BNs folded, RRRBs merged)."""

    def __init__(self, n_feats: int, up_blocks: int, mid_feats: int):
        super().__init__()
        self.squeeze = nn.Conv2d(n_feats, mid_feats, 3, 1, 1)
        self.convs = nn.Sequential(*[ERB(mid_feats, deploy=True) for _ in range(up_blocks)])
        self.excitate = nn.Conv2d(mid_feats, n_feats, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        out = _act(self.squeeze(x))
        out = _act(self.convs(out))
        # Sigmoid in place: the attention map replaces the excitation map, so the peak is the
        # paper's 4·C·H·W at the multiply (global residual, block input, attention map, output).
        out = torch.sigmoid_(self.excitate(out))
        return out * x


class HFAB(nn.Module):
    """High-frequency attention block, training form (three BatchNorms, RRRB-based ERBs)."""

    def __init__(self, n_feats: int, up_blocks: int, mid_feats: int, ratio: int = 2):
        super().__init__()
        self.n_feats, self.up_blocks, self.mid_feats = n_feats, up_blocks, mid_feats
        self.bn1 = nn.BatchNorm2d(n_feats)
        self.bn2 = nn.BatchNorm2d(mid_feats)
        self.bn3 = nn.BatchNorm2d(n_feats)
        self.squeeze = nn.Conv2d(n_feats, mid_feats, 3, 1, 0)
        self.convs = nn.Sequential(*[ERB(mid_feats, ratio) for _ in range(up_blocks)])
        self.excitate = nn.Conv2d(mid_feats, n_feats, 3, 1, 0)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        # Pad with the BN's shift computed from its running statistics (as the official code does,
        # also in training mode), so that the BN folds exactly into the following conv.
        out = pad_with_values(self.bn1(x), _bn_shift(self.bn1))
        out = _act(self.squeeze(out))
        out = _act(self.convs(out))
        out = pad_with_values(self.bn2(out), _bn_shift(self.bn2))
        out = self.sigmoid(self.bn3(self.excitate(out)))
        return out * x

    def to_deploy(self) -> DeployHFAB:
        ref = self.squeeze.weight
        dep = DeployHFAB(self.n_feats, self.up_blocks, self.mid_feats).to(ref.device, ref.dtype)
        set_conv(dep.squeeze, *fuse_bn_conv(*bn_to_affine(self.bn1), self.squeeze.weight, self.squeeze.bias))
        w, b = fuse_bn_conv(*bn_to_affine(self.bn2), self.excitate.weight, self.excitate.bias)
        set_conv(dep.excitate, *fuse_conv_bn(w, b, *bn_to_affine(self.bn3)))
        for src, dst in zip(self.convs, dep.convs, strict=True):
            set_conv(dst.conv1.rep_conv, *src.conv1.merged_weights())
            set_conv(dst.conv2.rep_conv, *src.conv2.merged_weights())
        return dep


class FMEN(nn.Module):
    """Fast and Memory-Efficient Network (training form, or deploy form with ``deploy=True``).

    Args:
        scale: upscaling factor (tail conv to ``n_colors * scale**2`` + PixelShuffle).
        n_feats: trunk width C.
        down_blocks: number of (ERB, HFAB) pairs after the warm-up.
        up_blocks: ERBs in each HFAB; ``up_blocks[0]`` for the warm-up HFAB, then one per pair.
        mid_feats: HFAB branch width (the warm-up HFAB uses ``mid_feats - 4``).
        backbone_expand_ratio / attention_expand_ratio: RRRB expansion in the trunk / branch ERBs.
        deploy: build the re-parameterized inference structure directly.
    Input and output are RGB in 0..255.
    """

    def __init__(
        self,
        scale: int = 4,
        n_feats: int = 50,
        down_blocks: int = 4,
        up_blocks: Sequence[int] = (2, 1, 1, 1, 1),
        mid_feats: int = 16,
        backbone_expand_ratio: int = 2,
        attention_expand_ratio: int = 2,
        n_colors: int = 3,
        deploy: bool = False,
    ):
        super().__init__()
        up_blocks = tuple(int(u) for u in up_blocks)
        if len(up_blocks) != down_blocks + 1:
            raise ValueError(f"up_blocks needs down_blocks + 1 = {down_blocks + 1} entries, got {up_blocks}")
        if mid_feats <= 4:
            raise ValueError(
                f"mid_feats must exceed 4 (the warm-up HFAB uses mid_feats - 4), got {mid_feats}"
            )
        self.scale = scale
        self.down_blocks = down_blocks

        def hfab(n: int, mid: int) -> nn.Module:
            if deploy:
                return DeployHFAB(n_feats, n, mid)
            return HFAB(n_feats, n, mid, attention_expand_ratio)

        self.head = nn.Conv2d(n_colors, n_feats, 3, 1, 1)
        self.warmup = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, 1, 1), hfab(up_blocks[0], mid_feats - 4))
        self.ERBs = nn.ModuleList(
            [ERB(n_feats, backbone_expand_ratio, deploy=deploy) for _ in range(down_blocks)]
        )
        self.HFABs = nn.ModuleList([hfab(up_blocks[i + 1], mid_feats) for i in range(down_blocks)])
        self.lr_conv = nn.Conv2d(n_feats, n_feats, 3, 1, 1)
        self.tail = nn.Sequential(nn.Conv2d(n_feats, n_colors * scale**2, 3, 1, 1), nn.PixelShuffle(scale))

    @property
    def is_deploy(self) -> bool:
        """True when no training-form block (RRRB, HFAB with BN) is left."""
        return not any(isinstance(m, (RRRB, HFAB)) for m in self.modules())

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(x)
        h = self.warmup(x)
        for erb, hfab in zip(self.ERBs, self.HFABs, strict=True):
            h = erb(h)  # rebinding h frees the ERB input before the HFAB runs (memory peak)
            h = hfab(h)
        h = self.lr_conv(h) + x
        return self.tail(h)


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------

_PAPER = "Du et al., Fast and Memory-Efficient Network Towards Efficient Image Super-Resolution, CVPRW 2022"

# FMEN-S (NTIRE 2022 ESR entry; official test weights): 341,066 params at x4 in deploy form.
FMEN_S_CONFIG = dict(n_feats=50, down_blocks=4, up_blocks=(2, 1, 1, 1, 1), mid_feats=16)

# FMEN (paper Table 3). The paper gives no configuration; C = 64 with this one reproduces the
# published 748K / 757K / 769K params (deploy form: 748,656 / 757,311 / 769,428) and the published
# 172.0 / 77.2 / 44.2 G Mult-Adds (1280x720 output: 172.06 / 77.23 / 44.21 G), both read to the
# digit printed (truncated). FMEN-S's topology with only the branch width changed cannot: with
# up_blocks (2, 1, 1, 1, 1), mid 38 gives 738,798 and mid 39 gives 752,603 at x2.
FMEN_CONFIG = dict(n_feats=64, down_blocks=4, up_blocks=(3, 2, 2, 2, 2), mid_feats=32)

_FMEN_NOTES = (
    "FMEN config inferred from the published counts (paper gives none): C=64, down_blocks=4, "
    "up_blocks=(3,2,2,2,2), mid_feats=32; deploy-form params 748,656 / 757,311 / 769,428 at x2/x3/x4 "
    "(published 748K / 757K / 769K, truncated); training form 2,424,552 / 2,433,207 / 2,445,324 "
    "(BN affine counted, BN running stats are buffers)."
)
_FMEN_S_NOTES = (
    "FMEN-S: C=50, down_blocks=4, up_blocks=(2,1,1,1,1), mid_feats=16. Params at x4: 341,066 in deploy "
    "form, 1,045,866 in training form (BN affine counted)."
)


def fmen_team03_key_map(state_dict: dict) -> dict:
    """NTIRE 2022 ``team03_fmen.pth`` keys -> this module's: ``basic_blocks.`` -> ``ERBs.``,
    ``hfabs.`` -> ``HFABs.`` (everything else is already the same). Pure: returns a new dict."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("basic_blocks."):
            key = "ERBs." + key[len("basic_blocks.") :]
        elif key.startswith("hfabs."):
            key = "HFABs." + key[len("hfabs.") :]
        out[key] = value
    return out


FMEN_S_CHECKPOINTS = (
    Checkpoint(
        filename="FMEN-S_test_weights.pt",
        sha256="d5534eba1feacfdd4043d9175d3bf0730b1ab4c91ba5c3f40a2282cd496fb4a5",
        scales=(4,),
        source="NJU-Jet/FMEN @a1def16 : test_weights.pt",
        key_map=None,
        notes="official FMEN-S test weights (deploy form); RGB 0..255, no mean shift",
    ),
    Checkpoint(
        filename="team03_fmen.pth",
        sha256="f20cde0828068c5f50d3b64aa82c8a363fe6abc8d536d1a9fd4d09899f019bea",
        scales=(4,),
        source="ofsoundof/NTIRE2022_ESR @e95ba4a : model_zoo/team03_fmen.pth",
        key_map=fmen_team03_key_map,
        notes="NTIRE 2022 ESR submission of FMEN-S (deploy form, other values); keys "
        "basic_blocks->ERBs, hfabs->HFABs; RGB 0..255, no mean shift",
    ),
)


def _build(scale: int, defaults: dict, deploy: bool, config: dict) -> FMEN:
    return FMEN(scale=scale, **{**defaults, **config}, deploy=deploy)


@register_model(
    "fmen",
    scales=(2, 3, 4),
    input_range=255.0,
    paper=_PAPER,
    notes="training form (RRRB, BN in HFAB); published params are of the deploy form, see 'fmen-deploy'. "
    + _FMEN_NOTES,
)
def fmen(scale: int = 4, **config) -> FMEN:
    return _build(scale, FMEN_CONFIG, False, config)


@register_model(
    "fmen-deploy",
    scales=(2, 3, 4),
    input_range=255.0,
    paper=_PAPER,
    published_params={2: 748_000, 3: 757_000, 4: 769_000},
    notes="deploy (re-parameterized) form; zoo.reparam.deploy(fmen) gives the same structure. " + _FMEN_NOTES,
)
def fmen_deploy(scale: int = 4, **config) -> FMEN:
    return _build(scale, FMEN_CONFIG, True, config)


@register_model(
    "fmen-s",
    scales=(2, 3, 4),
    input_range=255.0,
    paper=_PAPER + "; NTIRE 2022 ESR",
    notes="training form; published params are of the deploy form, see 'fmen-s-deploy'. " + _FMEN_S_NOTES,
)
def fmen_s(scale: int = 4, **config) -> FMEN:
    return _build(scale, FMEN_S_CONFIG, False, config)


@register_model(
    "fmen-s-deploy",
    scales=(2, 3, 4),
    input_range=255.0,
    paper=_PAPER + "; NTIRE 2022 ESR",
    published_params={4: 341_000},
    checkpoints=FMEN_S_CHECKPOINTS,
    notes="deploy (re-parameterized) form, the structure of the official weights (x4 only). " + _FMEN_S_NOTES,
)
def fmen_s_deploy(scale: int = 4, **config) -> FMEN:
    return _build(scale, FMEN_S_CONFIG, True, config)
