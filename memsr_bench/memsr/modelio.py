"""Self-describing model files: the architecture travels with the weights.

A memsr-bench model file is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``):
``format`` ("memsr-bench/model-v1", or "memsr-bench/train-v1" for training checkpoints, which add the
optimizer, RNG and history), ``arch`` (how to rebuild the module: an EDSR configuration or a PlainSR's
widths/activations/tail), ``model`` (the state dict), optionally ``bridges_arch`` + ``bridges`` (the
distillation bridges of a student) and ``report`` (JSON-like metadata). Because the weights sit under
``model``, ``zoo.create(..., checkpoint=FILE)`` can read a teacher file too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from memsr_bench.errors import MemsrInputError
from memsr_bench.torch_files import load_weights_only
from zoo.edsr import EDSR
from zoo.plain import ConstChannelConv, PlainSR

__all__ = [
    "FORMATS",
    "arch_of",
    "bridges_arch",
    "build_bridges",
    "build_model",
    "is_memsr_file",
    "load_model_file",
    "save_model_file",
]

MODEL_FORMAT = "memsr-bench/model-v1"
TRAIN_FORMAT = "memsr-bench/train-v1"
FORMATS = (MODEL_FORMAT, TRAIN_FORMAT)


def arch_of(model: nn.Module) -> dict[str, Any]:
    """A JSON-like description from which :func:`build_model` rebuilds ``model``'s structure."""
    if type(model) is PlainSR:
        first = model.convs[0]
        out_conv = [m for m in model.tail.modules() if isinstance(m, nn.Conv2d)][-1]
        return {
            "kind": "plain",
            "scale": int(model.scale),
            "widths": list(model.widths),
            "acts": list(model.acts),
            "bias": list(model.biases),
            "kernel_sizes": list(model.kernel_sizes),
            "in_channels": first.in_channels - (1 if isinstance(first, ConstChannelConv) else 0),
            "out_channels": out_conv.out_channels // (model.scale**2 if model.tail_kind == "pixelshuffle" else 1),
            "tail": model.tail_kind,
            "sub_mean": model.sub_mean is not None,
            "add_mean": model.add_mean is not None,
            "const_channel": bool(model.const_channel),
        }
    if type(model) is EDSR:
        head = model.head[0]
        arch = {
            "kind": "edsr",
            "scale": int(model.scale),
            "n_resblocks": len(model.body) - 1,
            "n_feats": head.out_channels,
            "res_scale": float(model.body[0].res_scale) if len(model.body) > 1 else 1.0,
            "n_colors": head.in_channels,
            "kernel_size": head.kernel_size[0],
        }
        rebuilt = build_model(arch)
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if own != {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} or any(
            getattr(b, "res_scale", arch["res_scale"]) != arch["res_scale"] for b in model.body[:-1]
        ):
            raise MemsrInputError("model", "a modified EDSR cannot be saved as an EDSR configuration")
        return arch
    raise MemsrInputError("model", f"cannot describe a {type(model).__name__} (EDSR or PlainSR only)")


def build_model(arch: dict[str, Any]) -> nn.Module:
    """The module described by ``arch`` (random weights, eval mode, with a ``zoo_spec``)."""
    from zoo.registry import get_spec

    kind = arch.get("kind")
    cfg = {k: v for k, v in arch.items() if k != "kind"}
    try:
        if kind == "edsr":
            model: nn.Module = EDSR(**cfg)
            model.zoo_spec = get_spec("edsr-baseline")
        elif kind == "plain":
            model = PlainSR(**cfg)
            model.zoo_spec = get_spec("plain")
        else:
            raise MemsrInputError("arch", f"unknown model kind {kind!r}")
    except (TypeError, ValueError) as err:
        raise MemsrInputError("arch", f"invalid architecture {arch}: {err}") from None
    return model.eval()


def bridges_arch(bridges: nn.ModuleList) -> list[list]:
    out: list[list] = []
    for b in bridges:
        if isinstance(b, nn.Conv2d):
            out.append(["conv", b.in_channels, b.out_channels])
        elif isinstance(b, nn.Identity):
            out.append(["identity"])
        else:
            raise MemsrInputError("bridges", f"unsupported bridge {type(b).__name__}")
    return out


def build_bridges(arch: list[list]) -> nn.ModuleList:
    return nn.ModuleList([nn.Conv2d(a[1], a[2], 1) if a[0] == "conv" else nn.Identity() for a in arch])


def save_model_file(
    path: str | Path,
    model: nn.Module,
    *,
    bridges: nn.ModuleList | None = None,
    report: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    fmt: str = MODEL_FORMAT,
) -> Path:
    """Write a self-describing model file atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "format": fmt,
        "arch": arch_of(model),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "report": report or {},
    }
    if bridges is not None:
        payload["bridges_arch"] = bridges_arch(bridges)
        payload["bridges"] = {k: v.detach().cpu() for k, v in bridges.state_dict().items()}
    payload.update(extra or {})
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise MemsrInputError(path, "model file not found")
    return load_weights_only(path, "model file")


def is_memsr_file(path: str | Path) -> bool:
    """True for a file written by :func:`save_model_file` or the trainer."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        obj = load_weights_only(path, "model file")
    except MemsrInputError:
        return False
    return isinstance(obj, dict) and obj.get("format") in FORMATS


def load_model_file(path: str | Path) -> tuple[nn.Module, nn.ModuleList | None, dict[str, Any]]:
    """``(model, bridges or None, payload)`` from a memsr-bench model or training file."""
    path = Path(path)
    obj = _read(path)
    if not isinstance(obj, dict) or obj.get("format") not in FORMATS:
        raise MemsrInputError(path, f"not a memsr-bench model file (expected format {' or '.join(FORMATS)})")
    model = build_model(obj["arch"])
    try:
        model.load_state_dict(obj["model"], strict=True)
    except RuntimeError as err:
        raise MemsrInputError(path, f"weights do not fit the stored architecture: {str(err).splitlines()[0]}") from None
    bridges = None
    if obj.get("bridges_arch") is not None:
        bridges = build_bridges(obj["bridges_arch"])
        bridges.load_state_dict(obj["bridges"], strict=True)
    return model.eval(), bridges, obj
