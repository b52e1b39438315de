"""Architecture fingerprints: a short hash of what a module computes, for result keys.

The fingerprint covers the module tree (every submodule's name, class and ``extra_repr()``, i.e. its
hyper-parameters), every parameter and buffer (name, shape, dtype) and the source code of every
class in the tree that is not PyTorch's own, so that an edit to a ``forward`` (a functional call
added, a skip removed) changes it as well. Weights are not part of it: the key records their sha256
separately. Two modules with equal fingerprints compute the same function of their weights.
"""

from __future__ import annotations

import functools
import hashlib
import inspect

from torch import nn

__all__ = ["architecture_fingerprint"]

_LENGTH = 16  # hex digits kept: 64 bits, plenty to tell the versions of one model apart


@functools.cache  # a class object's source is read once per process (a reloaded user file is a new class)
def _class_source(cls: type) -> str:
    if cls.__module__.startswith("torch."):
        return ""  # PyTorch's own classes: the torch version is part of every key
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):  # defined interactively: fall back to the qualified name only
        return ""


def _class_label(cls: type) -> str:
    # A file imported by path gets a module name with its mtime in it (memsr_bench.model.refs): leave it out.
    module = "<file>" if cls.__module__.startswith("memsr_user_model_") else cls.__module__
    return f"{module}.{cls.__qualname__}"


def architecture_fingerprint(model: nn.Module) -> str:
    """Hex digest of the module tree, tensor names/shapes/dtypes and non-PyTorch class sources."""
    digest = hashlib.sha256()
    classes: dict[str, type] = {}
    for name, module in model.named_modules():
        cls = type(module)
        qualname = _class_label(cls)
        classes.setdefault(qualname, cls)
        digest.update(f"module {name} {qualname} {module.extra_repr()}\n".encode())
    for kind, tensors in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, tensor in tensors:
            digest.update(f"{kind} {name} {tuple(tensor.shape)} {tensor.dtype}\n".encode())
    for qualname in sorted(classes):
        digest.update(f"class {qualname}\n{_class_source(classes[qualname])}\n".encode())
    return digest.hexdigest()[:_LENGTH]
