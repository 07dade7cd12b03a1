"""CoroNetGAN's pruning machinery: hypernetwork (eqs. 1-4), proximal step (eq. 5), masks, materialisation."""
from compress.hyper.hypernetwork import EMBEDDING_SIZE, HyperConvWeights
from compress.hyper.materialize import materialize
from compress.hyper.network import HyperNetwork
from compress.hyper.proximal import (MASK_THRESHOLD, MIN_CHANNELS, REGULARIZATION, channel_floor, channel_mask,
                                     proximal_step)

__all__ = ["EMBEDDING_SIZE", "HyperConvWeights", "HyperNetwork", "materialize", "MASK_THRESHOLD",
           "MIN_CHANNELS", "REGULARIZATION", "channel_floor", "channel_mask", "proximal_step"]
