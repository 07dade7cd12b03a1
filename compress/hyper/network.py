"""A prunable network driven by a hypernetwork: latent vectors, generated weights, masks, MACs.

:class:`HyperNetwork` wraps any :class:`compress.models.PrunableNetwork` (generator or discriminator of
any of the three families): each latent vector of the network becomes a learnable parameter (N(0, 1)
init, DHP), each prunable convolution gets a :class:`HyperConvWeights` that generates its weight from
the latent vectors of its input and output (eqs. 1-4), and the forward pass runs the plain network with the
generated weights (``torch.func.functional_call``).

The searched network is the pruned network: every forward pass multiplies the generated weights by the current
masks (input and output channels), so a channel whose latent entry is under tau contributes nothing, exactly as
after materialisation. DHP's own search runs the full generated weights and applies the masks only at the end;
but the hypernetwork's biases B0, B1, B2 learn, so a latent entry at zero still generates non-zero weights
(F = W2 (B0 W1 + B1) + B2), the network comes to rely on them, and pruning at the stop then removes part of what
was trained (DHP's ``resnet_dhp_share.py`` lists masking the forward pass as the third of its designs, built and
not used; we take it). The masks are a step function of |z|, so a masked entry gets no gradient from the loss
and only eq. 5 moves it (plus what Adam's momentum still carries): unlike DHP's unmasked search, a channel under
tau practically does not come back (docs/compress.md); the kept entries learn as before.

Speed (``compress.benchmarks step-cost``): the generated weights depend only on the hypernetwork parameters
and the latent vectors, so within one training step (one autograd graph) they are generated once and
reused by every call of the network (CycleGAN calls G_A three times per step: G(A), identity G(B) and the
cycle G(G_B(B))). The cache is keyed on the version counters, storage and ``requires_grad`` flags of those
parameters and on the masks (any optimizer update, proximal step, ``load_state_dict``, freezing or mask change
invalidates it) and is dropped as soon as a backward pass goes through the weights; it is only used with grad
enabled. The gradients are the same as with separate generations (autograd sums the uses).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn
from torch.func import functional_call

from compress.hyper.hypernetwork import EMBEDDING_SIZE, HyperConvWeights
from compress.hyper.proximal import (MASK_THRESHOLD, MIN_CHANNELS, channel_floor, channel_masks, mask_counts,
                                     proximal_step)
from compress.macs import MacsModel
from compress.models.base import INPUT, OUTPUT, PrunableNetwork


def _key(name: str) -> str:
    return name.replace(".", "__")


class HyperNetwork(nn.Module):
    """Hypernetwork-parameterised version of a prunable network.

    Args:
        network: the plain network; its conv weights are replaced by generated ones (they are frozen and
            never used), its other parameters (biases, norm affine) stay ordinary trainable parameters.
        input_shape: input shape used for the MACs model, e.g. (1, 3, 256, 256) or (1, 100, 1, 1).
        embedding_size: m of eq. 3 (8).
        threshold: tau of the masks (5e-3).
        min_channels: the floor of every latent vector in channels (4, DHP).
        min_channel_fraction: the floor as a fraction of each vector's channels (0: none; DHP's
            ``remain_percentage``); the floor is the larger of the two.

    The ``input`` and ``output`` latent vectors are fixed vectors of ones: neither is pruned (the proximal
    step and the masks skip them, as in DHP), the input is the image or z, and the output the image's colour
    channels (or the discriminator's logit). A learnable N(0, 1) output vector would only multiply each
    output channel's generated weights by a random factor that nothing after the last layer normalises
    (measured on a DCGAN generator, seed 0: per-channel output std 0.33 / 0.11 / 0.02 at initialisation,
    i.e. one colour channel nearly constant, against 0.29 / 0.35 / 0.28 with ones); the hypernetwork's own
    parameters (W1, W2, biases) still give every output channel its own weights.
    """

    def __init__(self, network: PrunableNetwork, input_shape, embedding_size: int = EMBEDDING_SIZE,
                 threshold: float = MASK_THRESHOLD, min_channels: int = MIN_CHANNELS,
                 min_channel_fraction: float = 0.0):
        super().__init__()
        self.network = network
        self.threshold, self.min_channels = threshold, min_channels
        self.min_channel_fraction = min_channel_fraction
        self.convs = network.prunable_convs()
        modules = dict(network.named_modules())
        ch = network.channels
        self.register_buffer("z_input", torch.ones(ch[INPUT]))
        self.register_buffer("z_output", torch.ones(ch[OUTPUT]))
        self.latent_vectors = nn.ParameterDict(
            {name: nn.Parameter(torch.randn(c)) for name, c in ch.items() if name not in (INPUT, OUTPUT)})
        self.hyper = nn.ModuleDict()
        for conv in self.convs:
            layer = modules[conv.name]
            layer.weight.requires_grad_(False)
            layer.weight._frozen_conv_weight = True  # replaced by the generated weight; never trained
            self.hyper[_key(conv.name)] = HyperConvWeights(
                network.in_channels_of(conv), ch[conv.out_latent], layer.kernel_size,
                transposed=isinstance(layer, nn.ConvTranspose2d), embedding_size=embedding_size,
                normalize_input=conv.out_latent == OUTPUT)
        self.macs_model = MacsModel(network, input_shape)
        #: masks fixed once this network reached its target (the search keeps training, the masks stay)
        self.frozen_masks: dict[str, torch.Tensor] | None = None
        #: reuse the generated weights between calls within one autograd graph (see the module docstring)
        self.reuse_weights = True
        #: run every forward pass with the masks applied (the searched network is the pruned one)
        self.apply_masks = True
        self._weights_cache: tuple[tuple, dict[str, torch.Tensor]] | None = None

    # --- latent vectors and masks -------------------------------------------------------------------
    def latent(self, name: str) -> torch.Tensor:
        """The latent vector of a latent name (the fixed ones vectors for ``input`` and ``output``)."""
        if name == INPUT:
            return self.z_input
        return self.z_output if name == OUTPUT else self.latent_vectors[name]

    def prunable_latents(self) -> dict[str, nn.Parameter]:
        """Latent vectors subject to the proximal step and the masks (all but input and output)."""
        return dict(self.latent_vectors.items())

    def floors(self) -> dict[str, int]:
        """Latent name -> the channels it keeps at least (:func:`~compress.hyper.proximal.channel_floor`)."""
        return {name: channel_floor(z.numel(), self.min_channels, self.min_channel_fraction)
                for name, z in self.latent_vectors.items()}

    def max_macs_reduction(self) -> float:
        """The largest MACs reduction the floors allow (every prunable latent vector at its floor)."""
        floors = self.floors()
        return self.macs_model.reduction({n: floors.get(n, c) for n, c in self.network.channels.items()})

    def proximal_step(self, regularization: float, lr: float) -> None:
        """Eq. 5 on every prunable latent vector, each kept at or above its floor (DHP's skip rule)."""
        floors = self.floors()
        names = list(self.latent_vectors.keys())
        proximal_step([self.latent_vectors[n] for n in names], regularization, lr, self.threshold,
                      [floors[n] for n in names])

    def masks(self) -> dict[str, torch.Tensor]:
        """Latent name -> boolean keep-mask (c,); input and output keep everything.

        Once :attr:`frozen_masks` is set (the network reached its target), those masks are returned."""
        if self.frozen_masks is not None:
            return self.frozen_masks
        floors = self.floors()
        names = list(self.latent_vectors.keys())
        searched = dict(zip(names, channel_masks([self.latent_vectors[n] for n in names], self.threshold,
                                                 [floors[n] for n in names])))
        return {name: (torch.ones(count, dtype=torch.bool, device=self.z_input.device) if name in (INPUT, OUTPUT)
                       else searched[name]) for name, count in self.network.channels.items()}

    def kept_channels(self, masks: Mapping[str, torch.Tensor] | None = None) -> dict[str, int]:
        """Latent name -> number of channels the masks keep."""
        masks = self.masks() if masks is None else masks
        return dict(zip(masks, mask_counts(list(masks.values()))))

    def macs(self, masks: Mapping[str, torch.Tensor] | None = None) -> int:
        """MACs of the masked network (published convention, see :mod:`compress.macs`)."""
        return self.macs_model(self.kept_channels(masks))

    def macs_reduction(self, masks: Mapping[str, torch.Tensor] | None = None) -> float:
        """Fraction of the unpruned network's MACs that the masks remove (0.75 = "CoroNetGAN(75%)")."""
        return self.macs_model.reduction(self.kept_channels(masks))

    # --- weights and forward -------------------------------------------------------------------------
    def _weights_key(self, masks: Mapping[str, torch.Tensor] | None) -> tuple:
        """What the generated weights depend on: every hypernetwork parameter and latent vector (identity,
        storage, version counter, requires_grad), the grad mode, and the masks applied."""
        tensors = [*self.hyper.parameters(), *self.latent_vectors.values(), self.z_input,
                   self.z_output]
        mask_key = None
        if masks is not None:     # every mask's bytes in one transfer (one GPU synchronisation, not one per mask)
            names = sorted(masks)
            flat = torch.cat([masks[n].reshape(-1) for n in names]) if names else torch.zeros(0)
            mask_key = (tuple((n, masks[n].dtype, masks[n].numel()) for n in names), flat.cpu().numpy().tobytes())
        return (torch.is_grad_enabled(), mask_key,
                *((id(t), t.data_ptr(), t._version, t.requires_grad, t.dtype) for t in tensors))

    def _drop_weights_cache(self, _grad=None):
        self._weights_cache = None
        return None

    def generated_weights(self, masks: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Module path ``<conv>.weight`` -> weight generated by eqs. 1-4; with ``masks`` the pruned input and
        output channels are zeroed (the network then computes exactly what the materialised one does).

        With grad enabled, a second call with the same masks before any parameter change or backward pass
        returns the same tensors (one generation per step; see the module docstring)."""
        cacheable = self.reuse_weights and torch.is_grad_enabled()
        if cacheable:
            key = self._weights_key(masks)
            if self._weights_cache is not None and self._weights_cache[0] == key:
                return dict(self._weights_cache[1])
        else:
            self._weights_cache = None
        with torch.autocast(self.z_input.device.type, enabled=False):   # eqs. 1-4 in fp32 (compress/accel.py)
            weights = self._generate(masks)
        if cacheable:
            for w in weights.values():
                if w.requires_grad:
                    w.register_hook(self._drop_weights_cache)   # a backward pass consumes the graph
            self._weights_cache = (key, weights)
            return dict(weights)
        return weights

    def _generate(self, masks: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        weights = {}
        for conv in self.convs:
            z_in = torch.cat([self.latent(n) for n in conv.in_latents])
            w = self.hyper[_key(conv.name)](z_in, self.latent(conv.out_latent))
            if masks is not None:
                m_in = torch.cat([masks[n] for n in conv.in_latents]).to(w.dtype)
                m_out = masks[conv.out_latent].to(w.dtype)
                transposed = self.hyper[_key(conv.name)].transposed
                m_rows, m_cols = (m_in, m_out) if transposed else (m_out, m_in)
                w = w * m_rows.view(-1, 1, 1, 1) * m_cols.view(1, -1, 1, 1)
            weights[f"{conv.name}.weight"] = w
        return weights

    def forward(self, x: torch.Tensor, masked: bool | None = None) -> torch.Tensor:
        """Run the network with generated weights. x: the network's input, e.g. (N, 3, H, W) or (N, nz, 1, 1).

        ``masked``: apply the masks (default :attr:`apply_masks`, True: what the materialised network computes);
        False runs the full generated weights (DHP's search forward)."""
        masked = self.apply_masks if masked is None else masked
        weights = self.generated_weights(self.masks() if masked else None)
        return functional_call(self.network, weights, (x,), strict=False)

    def search_parameters(self) -> list[nn.Parameter]:
        """Parameters the search optimises: hypernetworks, latent vectors, and the network's own
        non-conv-weight parameters (biases, norm affine)."""
        frozen = {id(self.network.get_submodule(c.name).weight) for c in self.convs}
        own = [p for p in self.network.parameters() if id(p) not in frozen]
        return list(self.hyper.parameters()) + list(self.latent_vectors.parameters()) + own
