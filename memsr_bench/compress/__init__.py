"""Model compression of "Compressing Deep Image SR Models" (Jiang et al., 2024): sparse OBProxSG training
and the read-outs that size a compact student."""

from memsr_bench.compress.density import (
    CompactConfig,
    block_density,
    channel_density,
    layer_density,
    propose_compact_config,
    released_weight_density,
)
from memsr_bench.compress.obproxsg import OBProxSG, released_prune_schedule

__all__ = [
    "CompactConfig",
    "OBProxSG",
    "block_density",
    "channel_density",
    "layer_density",
    "propose_compact_config",
    "released_prune_schedule",
    "released_weight_density",
]
