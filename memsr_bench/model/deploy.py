"""Deploy form: the re-parameterised inference structure, through the methods NTIRE entries define.

Supported methods, looked up on the model and then on its submodules, top-down (a module that has
one is converted and not descended into): ``to_deploy()`` (the zoo's FMEN blocks: returns the new
module), and ``switch_to_deploy()`` (RepVGG, ECBSR and many NTIRE entries), ``reparameterize()``,
``fuse()``, ``deploy()`` (in place; a returned module replaces the old one).
"""

from __future__ import annotations

import copy

from torch import nn

from memsr_bench.errors import MemsrInputError

__all__ = ["DEPLOY_METHODS", "deploy_form"]

DEPLOY_METHODS = ("to_deploy", "switch_to_deploy", "reparameterize", "fuse", "deploy")


def _method(module: nn.Module) -> str | None:
    return next((m for m in DEPLOY_METHODS if callable(getattr(module, m, None))), None)


def _convert(module: nn.Module, path: str, used: list[str]) -> nn.Module:
    method = _method(module)
    if method is not None:
        result = getattr(module, method)()
        used.append(f"{path or '<model>'}.{method}()")
        return result.train(module.training) if isinstance(result, nn.Module) else module
    for name, child in list(module.named_children()):
        new = _convert(child, f"{path}.{name}" if path else name, used)
        if new is not child:
            setattr(module, name, new)
    return module


def deploy_form(model: nn.Module, what: str = "--deploy") -> tuple[nn.Module, list[str]]:
    """A converted deep copy of ``model`` and the calls made (``"body.0.switch_to_deploy()"``, ...).

    A model with none of :data:`DEPLOY_METHODS` anywhere is an error naming ``what``.
    """
    converted = copy.deepcopy(model)
    used: list[str] = []
    converted = _convert(converted, "", used)
    if not used:
        raise MemsrInputError(
            what, f"{type(model).__name__} defines none of {', '.join(m + '()' for m in DEPLOY_METHODS)}"
        )
    for attr in ("zoo_spec", "scale", "weights_sha256"):
        if hasattr(model, attr):
            setattr(converted, attr, getattr(model, attr))
    return converted.eval(), used
