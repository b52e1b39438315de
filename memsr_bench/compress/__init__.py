"""Model compression of "Compressing Deep Image SR Models" (Jiang et al., 2024): sparse OBProxSG training
and the read-outs that size a compact student."""

from typing import Any

from memsr_bench.compress.density import (
    CompactConfig,
    block_density,
    channel_density,
    layer_density,
    propose_compact_config,
    released_weight_density,
)
from memsr_bench.compress.obproxsg import OBProxSG, released_prune_schedule

# The trainers pull in the data pipeline and the zoo: imported on first use, so the read-outs stay cheap.
_LAZY_TRAIN = ("DistillConfig", "DistillResult", "PruneConfig", "PruneResult", "distill", "prune")

__all__ = [
    "CompactConfig",
    "DistillConfig",
    "DistillResult",
    "OBProxSG",
    "PruneConfig",
    "PruneResult",
    "block_density",
    "channel_density",
    "distill",
    "layer_density",
    "propose_compact_config",
    "prune",
    "released_prune_schedule",
    "released_weight_density",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY_TRAIN:
        from memsr_bench.compress import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
