"""Sparsity read-outs of a pruned (OBProxSG-trained) network and a documented rule for a compact config.

The paper ("Compressing Deep Image SR Models", Jiang et al., 2024) picks the student's widths and block
counts by hand after looking at the sparse network; :func:`propose_compact_config` is our explicit,
reproducible stand-in for that choice. The released training loop only logs one number,
:func:`released_weight_density`.

"Layers" here are ``nn.Conv1d/2d/3d`` and ``nn.Linear`` modules (weights with output channels on dim 0);
transposed convolutions and normalisation layers are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "CompactConfig",
    "block_density",
    "channel_density",
    "default_block_name",
    "layer_density",
    "repeated_blocks",
    "propose_compact_config",
    "released_weight_density",
]

_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _layers(model: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    for name, module in model.named_modules():
        if isinstance(module, _LAYER_TYPES) and module.weight is not None and module.weight.numel() > 0:
            yield name, module.weight.detach()


def layer_density(model: nn.Module) -> dict[str, float]:
    """Fraction of nonzero weight entries per conv/linear layer (biases not counted), by module name."""
    return {name: torch.count_nonzero(w).item() / w.numel() for name, w in _layers(model)}


def channel_density(model: nn.Module) -> dict[str, float]:
    """Fraction of output channels with at least one nonzero weight, per conv/linear layer.

    A channel whose weights are all zero only outputs its bias, a constant map that a compact model can
    fold into the next layer, so the bias does not keep a channel alive.
    """
    out = {}
    for name, w in _layers(model):
        alive = (w.reshape(w.shape[0], -1) != 0).any(dim=1)
        out[name] = alive.sum().item() / w.shape[0]
    return out


def default_block_name(layer_name: str) -> str:
    """Block of a layer name: ``body.3.body.0 -> body.3``, ``layers.2.a.b -> layers.2``, ``head.0 -> head.0``.

    A numbered child of a top-level container is a block (EDSR's ``body.i``, SwinIR's ``layers.i``); any
    other layer is grouped under its top-level module. A lone numbered conv is a group of its own too
    (the zoo EDSR's final body conv is ``body.16``), so callers counting residual blocks pass prefixes.
    """
    parts = layer_name.split(".")
    if len(parts) >= 2 and parts[1].isdigit():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def repeated_blocks(model: nn.Module) -> tuple[str, ...]:
    """Names of the model's outermost repeated blocks, in module order.

    A candidate is a module class (not a container or a single layer) with two or more instances holding
    two or more conv/linear layers each (a lone conv with an activation is a layer, not a block); the blocks
    are the instances of the candidates not nested inside another candidate's instance (EDSR's ``ResBlock``,
    IMDN's ``IMDModule``, RLFN's ``RLFB``, CARN's cascading ``Block``, SwinIR's ``RSTB``; FMEN's ``ERB`` and
    ``HFAB`` together). Empty when nothing repeats.
    """
    with_layers = {
        name: module
        for name, module in model.named_modules()
        if name
        and not isinstance(module, (*_CONTAINERS, *_LAYER_TYPES))
        and sum(isinstance(m, _LAYER_TYPES) for m in module.modules()) >= 2
    }
    by_class: dict[type, list[str]] = {}
    for name, module in with_layers.items():
        by_class.setdefault(type(module), []).append(name)
    candidates = [n for names in by_class.values() if len(names) >= 2 for n in names]

    def inside(name: str, other: str) -> bool:
        return name.startswith(other + ".")

    outer = [n for n in candidates if not any(inside(n, o) for o in candidates if o != n)]
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    return tuple(sorted(outer, key=order.__getitem__))


def block_density(model: nn.Module, block_prefixes: Sequence[str] | None = None) -> dict[str, float]:
    """Fraction of nonzero conv/linear weights per block.

    With ``block_prefixes``, a layer belongs to the first prefix equal to its name or followed by ``.`` in
    it (``"body.1"`` does not take ``body.10``); layers under no prefix are ignored, and a prefix that
    matches no layer is a ValueError. Without it, layers are grouped by :func:`default_block_name`. The
    order is that of the prefixes, or of first appearance.
    """
    nonzero: dict[str, int] = {}
    total: dict[str, int] = {}
    if block_prefixes is not None:
        for prefix in block_prefixes:
            nonzero[prefix] = total[prefix] = 0
    for name, w in _layers(model):
        if block_prefixes is None:
            block = default_block_name(name)
        else:
            block = next((p for p in block_prefixes if name == p or name.startswith(p + ".")), None)
            if block is None:
                continue
        nonzero[block] = nonzero.get(block, 0) + int(torch.count_nonzero(w).item())
        total[block] = total.get(block, 0) + w.numel()
    empty = [b for b, n in total.items() if n == 0]
    if empty:
        raise ValueError(f"block prefixes with no conv/linear layer under them: {empty}")
    return {b: nonzero[b] / total[b] for b in total}


def released_weight_density(model: nn.Module, name_contains: str) -> float:
    """The density the released pruning loop logs: nonzero / total over every parameter whose name contains
    both ``"weight"`` and ``name_contains`` (``"body"`` for EDSR, ``"layers"`` for SwinIR).

    Normalisation weights (SwinIR's LayerNorms) are included, as in the released ``get_density``.
    """
    weights = [p.detach() for n, p in model.named_parameters() if "weight" in n and name_contains in n]
    numel = sum(w.numel() for w in weights)
    if numel == 0:
        raise ValueError(f"no parameter name contains both 'weight' and {name_contains!r}")
    return sum(int(torch.count_nonzero(w).item()) for w in weights) / numel


@dataclass(frozen=True)
class CompactConfig:
    """Proposed student size and the evidence it came from."""

    channels: int
    blocks: int
    kept_blocks: tuple[str, ...]
    max_channel_fraction: float


# Densities are ratios k/n; multiplying back by a width can land a hair above an integer.
_ROUNDING_SLACK = 1e-9


def propose_compact_config(
    channel_densities: Mapping[str, float],
    block_densities: Mapping[str, float],
    base_channels: int,
    *,
    channel_multiple: int = 4,
    block_threshold: float = 0.05,
) -> CompactConfig:
    """Turn per-layer channel densities and per-block densities into a student width and block count.

    Rule (ours; the paper chose by hand):

    - ``channels = ceil(max_l f_l · base_channels)`` rounded up to a multiple of ``channel_multiple``, at least
      ``channel_multiple`` and at most ``base_channels``, where ``f_l`` are the values of
      ``channel_densities`` (normally :func:`channel_density` restricted to the layers that carry the
      shared feature width, e.g. EDSR's ``body.*`` convs). The maximum is used because residual
      connections force one width on every layer they join, so the widest surviving layer decides.
    - ``blocks = #{b : block_densities[b] > block_threshold}``: a block whose weights are almost all zero
      contributes (nearly) only its skip connection and is dropped; ``kept_blocks`` lists the survivors.
    """
    if base_channels < 1:
        raise ValueError(f"base_channels must be >= 1, got {base_channels}")
    if channel_multiple < 1:
        raise ValueError(f"channel_multiple must be >= 1, got {channel_multiple}")
    if not channel_densities:
        raise ValueError("channel_densities is empty: nothing to size the width from")
    bad = {k: v for k, v in [*channel_densities.items(), *block_densities.items()] if not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"densities must lie in [0, 1], got {bad}")
    max_fraction = max(channel_densities.values())
    needed = math.ceil(max_fraction * base_channels - _ROUNDING_SLACK)
    channels = channel_multiple * math.ceil(needed / channel_multiple)
    channels = min(base_channels, max(channel_multiple, channels))
    kept = tuple(b for b, d in block_densities.items() if d > block_threshold)
    return CompactConfig(channels=channels, blocks=len(kept), kept_blocks=kept, max_channel_fraction=max_fraction)
