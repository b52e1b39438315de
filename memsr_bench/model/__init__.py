"""The model stage of the pipeline: reference -> module + metadata + fingerprint (+ weights, deploy form).

Every command gets its model through :func:`load_model`; see :mod:`.refs` for the references
accepted, :mod:`.fingerprint` for what keys a result, :mod:`.deploy` for the deploy form.
"""

from memsr_bench.model.deploy import DEPLOY_METHODS, deploy_form
from memsr_bench.model.fingerprint import architecture_fingerprint
from memsr_bench.model.loading import RANDOM_INIT, LoadedModel, load_model, parse_config
from memsr_bench.model.refs import (
    DEFAULT_CHANNELS,
    DEFAULT_INPUT_RANGE,
    ENTRY_POINT_GROUP,
    ModelEntry,
    entry_point_models,
    resolve_model,
)

__all__ = [
    "DEFAULT_CHANNELS",
    "DEFAULT_INPUT_RANGE",
    "DEPLOY_METHODS",
    "ENTRY_POINT_GROUP",
    "RANDOM_INIT",
    "LoadedModel",
    "ModelEntry",
    "architecture_fingerprint",
    "deploy_form",
    "entry_point_models",
    "load_model",
    "parse_config",
    "resolve_model",
]
