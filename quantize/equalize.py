"""Function-preserving rewrites of a PyTorch generator that make its int8 file accurate (before ONNX export).

int8 activations have one scale per tensor (the TFLite full-integer scheme), so a tensor whose channels differ a lot
in range wastes the 256 levels on its loudest channel. Three rewrites change the weights without changing the
float function (each is exact algebra; float rounding aside):

1. **BatchNorm folding** (:func:`fold_batch_norms`): an eval-mode ``BatchNorm2d`` after a convolution is the
   per-output-channel affine map ``y = g_c (x - mu_c) / sqrt(var_c + eps) + b_c``; it goes into the convolution's
   weight (output channel ``c``: dim 0 of a ``Conv2d`` weight, dim 1 of a ``ConvTranspose2d`` weight) and bias, and
   the norm becomes ``Identity``. Nothing of it is left for the converter to keep as float MUL/ADD ops.
2. **InstanceNorm-input equalisation** (:func:`equalise_instance_norm_inputs`): an InstanceNorm without affine
   parameters removes each channel's spatial mean and divides by its spatial spread, so for ``s_c > 0`` and any
   ``b_c`` it gives the same output for ``s_c x_c + b_c`` with epsilon ``eps s_c^2`` as for ``x_c`` with ``eps``.
   The convolution feeding it gets bias 0 (a constant per channel is removed by the mean anyway) and output
   channel ``c`` scaled by ``s_c = A / a_c`` (``a_c`` the channel's largest ``|value|`` over the representative
   inputs, ``A`` the largest ``a_c``), so every channel spans the same range; the norm becomes a
   :class:`ChannelEpsInstanceNorm` with ``eps_c = eps s_c^2``, which makes the rewrite exact rather than "up to
   eps" (an InstanceNorm has one eps for all channels, and the quiet channels are where eps matters).
3. **Cross-layer equalisation** (:func:`cross_layer_equalise`; Nagel et al. 2019, "Data-Free Quantization
   through Weight Equalization and Bias Correction", section 4.1): between a convolution whose output is not
   normalised per instance (no norm, or a folded BatchNorm) and the convolutions that read it through
   positively homogeneous operations only (ReLU, LeakyReLU: ``f(s x) = s f(x)`` for ``s > 0``; concatenation;
   dropout, the identity in eval mode), output channel ``c`` of the producer is divided by ``s_c`` and input
   channel ``c`` of every consumer multiplied by it, with ``s_c = sqrt(r1_c / r2_c)`` where ``r1_c`` is the range
   of the producer's output-channel weights and ``r2_c`` the largest range of that input channel's weights over
   the consumers, so that both become ``sqrt(r1_c r2_c)``; repeated over all links until the scales settle.
4. **Concatenation range matching** (:func:`match_concatenation_ranges`): TFLite's int8 CONCATENATION takes its
   inputs and output at one scale and zero point (TFLite 8-bit quantization specification), so the quantizer gives
   every part of a skip concatenation the union of the parts' ranges, and the quieter part is rounded on the
   louder part's grid. Where a part is written by a convolution with a cross-layer link (rewrite 3: read only
   through positively homogeneous operations), that convolution's output is multiplied by one positive scalar
   ``alpha_p`` and every input channel that reads it divided by it, so that the parts' largest ``|value|`` over the
   representative inputs meet (their geometric mean; the largest fixed part's where a part cannot be scaled, such
   as the model input). Run after rewrite 3, whose weight-range balance a scalar would otherwise undo.

:func:`equalise_for_int8` applies the four to a copy of the generator and reports what it did.
"""
from __future__ import annotations

import copy
import logging

import numpy as np
import torch
import torch.nn as nn

from compress.families import FAMILIES

LOGGER = logging.getLogger("coronetgan.quantize")

#: Cross-layer equalisation sweeps at most (Nagel et al. iterate until the scales stop changing). Measured on the
#: generators of docs/export.md: after 8 sweeps the next one would still move a range by at most 7% on the U-Nets
#: (their skip concatenations couple the links) and by under 1% on DCGAN; the first sweep moves them by up to 7x.
CLE_SWEEPS = 8
#: Channels whose largest |value| is below this fraction of the tensor's loudest channel are treated as dead
#: (constant): they are left unscaled, since scaling them up would only amplify float rounding.
DEAD_CHANNEL_FRACTION = 1e-6


class ChannelEpsInstanceNorm(nn.Module):
    """InstanceNorm without affine parameters, with one epsilon per channel.

    ``y[n, c] = (x[n, c] - mean_c) / sqrt(var_c + eps_c)``, mean and (biased) variance over H, W of each
    instance, as ``nn.InstanceNorm2d(affine=False)`` computes with a scalar eps. Input/output (N, C, H, W).
    Written as ``(x - mean) / sqrt(var + eps)``: onnx2tf 1.29.24 turns it into MEAN, SUB, MUL, MEAN, ADD, SQRT, DIV
    (measured; the ``rsqrt`` form gets two RESHAPE ops around an RSQRT, which the quantizer would put in int8).

    Args:
        eps: per-channel epsilon, shape (C,), > 0.
    """

    def __init__(self, eps: torch.Tensor):
        super().__init__()
        self.register_buffer("eps", eps.detach().reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=(2, 3), keepdim=True)
        return centred / torch.sqrt(var + self.eps)


def _modules(net: nn.Module) -> dict[str, nn.Module]:
    return dict(net.named_modules())


def _set_module(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(_modules(net)[parent] if parent else net, leaf, module)


def _out_dim(conv: nn.Module) -> int:
    """Dim of the weight that indexes output channels: 0 for Conv2d (out, in, k, k), 1 for ConvTranspose2d
    (in, out, k, k)."""
    return 1 if isinstance(conv, nn.ConvTranspose2d) else 0


def _in_dim(conv: nn.Module) -> int:
    return 0 if isinstance(conv, nn.ConvTranspose2d) else 1


def _shape_for(dim: int, n: int) -> tuple[int, ...]:
    return tuple(n if d == dim else 1 for d in range(4))


def _ensure_bias(conv: nn.Module) -> torch.Tensor:
    if conv.bias is None:
        out = conv.weight.shape[_out_dim(conv)] * (conv.groups if isinstance(conv, nn.ConvTranspose2d) else 1)
        conv.bias = nn.Parameter(torch.zeros(out, dtype=conv.weight.dtype))
    return conv.bias


def _scale_output_channels(conv: nn.Module, scale: torch.Tensor, bias_too: bool = True) -> None:
    dim = _out_dim(conv)
    with torch.no_grad():
        conv.weight.mul_(scale.reshape(_shape_for(dim, len(scale))))
        if bias_too and conv.bias is not None:
            conv.bias.mul_(scale)


def _scale_input_channels(conv: nn.Module, offset: int, scale: torch.Tensor) -> None:
    dim = _in_dim(conv)
    with torch.no_grad():
        sl = [slice(None)] * 4
        sl[dim] = slice(offset, offset + len(scale))
        conv.weight[tuple(sl)] *= scale.reshape(_shape_for(dim, len(scale)))


def fold_batch_norms(generator: nn.Module) -> list[str]:
    """Fold every eval-mode ``BatchNorm2d`` that follows a prunable convolution into it, in place.

    Uses ``generator.prunable_convs()`` (:class:`compress.models.base.PrunableConv`: convolution and the norm on
    its output). The norm module is replaced by ``nn.Identity``; a convolution without bias gets one. Grouped
    convolutions are not folded (none in ``compress.models``).

    Returns:
        the module names of the folded norms.
    """
    mods = _modules(generator)
    folded = []
    for pc in generator.prunable_convs():
        norm = mods.get(pc.norm) if pc.norm else None
        conv = mods[pc.name]
        if not isinstance(norm, nn.BatchNorm2d) or conv.groups != 1:
            continue
        with torch.no_grad():
            std = torch.sqrt(norm.running_var + norm.eps)
            gamma = norm.weight if norm.affine else torch.ones_like(std)
            beta = norm.bias if norm.affine else torch.zeros_like(std)
            scale = gamma / std
            bias = _ensure_bias(conv)
            _scale_output_channels(conv, scale, bias_too=False)
            bias.copy_((bias - norm.running_mean) * scale + beta)
        _set_module(generator, pc.norm, nn.Identity())
        folded.append(pc.norm)
    return folded


def _channel_amplitudes(generator: nn.Module, names: list[str], inputs: np.ndarray,
                        batch: int = 8) -> dict[str, torch.Tensor]:
    """Largest |value| of each output channel of the named modules over ``inputs`` (N, C, H, W), NCHW."""
    amps: dict[str, torch.Tensor] = {}
    mods = _modules(generator)

    def hook(name):
        def fn(_module, _inp, out):
            a = out.detach().abs().amax(dim=(0, 2, 3))
            amps[name] = a if name not in amps else torch.maximum(amps[name], a)
        return fn

    handles = [mods[n].register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            x = _as_input(generator, inputs)
            for i in range(0, len(x), batch):
                generator(x[i:i + batch])
    finally:
        for h in handles:
            h.remove()
    return amps


def _as_input(generator: nn.Module, inputs: np.ndarray) -> torch.Tensor:
    """``inputs`` as a tensor of the generator's parameter dtype (float32 for export; float64 where a test checks
    that the rewrites are exact)."""
    return torch.from_numpy(np.ascontiguousarray(inputs)).to(next(generator.parameters()).dtype)


def _spread(values: torch.Tensor) -> float:
    """max/min of the live channels' ranges: 1 means every channel has the same range."""
    live = values[values > 0]
    return float(live.max() / live.min()) if len(live) else 1.0


def equalise_instance_norm_inputs(generator: nn.Module, inputs: np.ndarray) -> list[dict]:
    """Equalise every convolution that feeds an ``InstanceNorm2d`` without affine parameters (module docstring,
    rewrite 2), in place.

    Args:
        generator: a ``compress.models`` network (``prunable_convs()``), eval mode.
        inputs: representative inputs (N, C, H, W) float32 in the generator's input scaling.
    Returns:
        one record per convolution: {"conv", "norm", "channels", "range_spread_before", "range_spread_after"}
        (largest/smallest channel range of its output, bias removed, over ``inputs``).
    """
    mods = _modules(generator)
    targets = [pc for pc in generator.prunable_convs()
               if pc.norm and isinstance(mods.get(pc.norm), nn.InstanceNorm2d)
               and not mods[pc.norm].affine and not mods[pc.norm].track_running_stats]
    if not targets:
        return []
    before = _channel_amplitudes(generator, [pc.name for pc in targets], inputs)
    for pc in targets:  # a per-channel constant is removed by the norm's mean: the bias only widens the range
        if mods[pc.name].bias is not None:
            with torch.no_grad():
                mods[pc.name].bias.zero_()
    amps = _channel_amplitudes(generator, [pc.name for pc in targets], inputs)
    report = []
    for pc in targets:
        conv, norm, a = mods[pc.name], mods[pc.norm], amps[pc.name].double()
        live = a > DEAD_CHANNEL_FRACTION * float(a.max()) if float(a.max()) > 0 else torch.zeros_like(a, dtype=bool)
        scale = torch.ones_like(a)
        if live.any():
            scale[live] = a[live].max() / a[live]
        _scale_output_channels(conv, scale.to(conv.weight.dtype))
        eps = torch.full_like(scale, float(norm.eps)) * scale ** 2
        _set_module(generator, pc.norm, ChannelEpsInstanceNorm(eps.to(conv.weight.dtype)))
        report.append({"conv": pc.name, "norm": pc.norm, "channels": int(len(a)),
                       "range_spread_before": _spread(before[pc.name]), "bias_removed": conv.bias is not None,
                       "range_spread_after": _spread((a * scale)[live]) if live.any() else 1.0})
    return report


def _cle_links(generator: nn.Module) -> list[tuple[str, list[tuple[str, int]]]]:
    """(producer conv, [(consumer conv, input-channel offset)]) for every latent written by exactly one
    convolution whose output is not normalised per instance and read only through the family's positively
    homogeneous activations (the family's ``between_convs``, :class:`compress.families.Family`; a family without
    it gets no cross-layer equalisation, while folding and InstanceNorm equalisation do not depend on it)."""
    family = FAMILIES.get(getattr(generator, "family", None))
    if family is None or family.between_convs is None:
        return []
    mods = _modules(generator)
    convs = generator.prunable_convs()
    links = []
    for latent in {pc.out_latent for pc in convs}:
        producers = [pc for pc in convs if pc.out_latent == latent]
        if len(producers) != 1:  # a residual trunk: several convolutions are summed into the same channels
            continue
        prod = producers[0]
        norm = mods.get(prod.norm) if prod.norm else None
        if norm is not None and not isinstance(norm, nn.Identity):
            continue
        consumers = []
        for pc in convs:
            offset = 0
            for name in pc.in_latents:
                if name == latent:
                    consumers.append((pc.name, offset))
                offset += generator.channels[name]
        if consumers and mods[prod.name].groups == 1 and all(mods[c].groups == 1 for c, _ in consumers):
            links.append((prod.name, consumers))
    return sorted(links)


def _weight_ranges(conv: nn.Module, dim: int) -> torch.Tensor:
    """Largest |weight| of each slice of ``conv.weight`` along ``dim`` (output or input channels), float64."""
    w = conv.weight.detach().abs().double().transpose(0, dim)
    return w.reshape(w.shape[0], -1).amax(dim=1)


def cross_layer_equalise(generator: nn.Module, inputs: np.ndarray | None = None,
                         sweeps: int = CLE_SWEEPS) -> list[dict]:
    """Cross-layer equalisation (module docstring, rewrite 3), in place; run after :func:`fold_batch_norms`.

    Data-free as in Nagel et al. 2019 (section 4.1): ``r1_c`` is the range of the producer's output-channel
    weights, ``r2_c`` the largest range of input channel ``c`` over the consumers' weights, ``s_c = sqrt(r1_c /
    r2_c)``; the sweeps repeat it over all links until no scale moves by more than 0.1%. (Measured on a
    CoroNetGAN-75% pix2pix U-Net, docs/export.md: ranges taken from activations instead fit the representative
    images and left photos 5 dB worse than the data-free ranges.)

    Args:
        generator: a ``compress.models`` network, eval mode.
        inputs: optional inputs (N, C, H, W) float32 on which the report measures the producers' activation
            ranges before and after (not used by the equalisation itself).
        sweeps: largest number of passes over all links.
    Returns:
        one record per link: {"producer", "consumers", "channels", "weight_range_spread_before",
        "weight_range_spread_after"} (largest/smallest channel range of the producer's output-channel weights)
        plus, with ``inputs``, "activation_range_spread_before"/"_after".
    """
    links = _cle_links(generator)
    if not links:
        return []
    mods = _modules(generator)
    names = [p for p, _ in links]
    first_w = {p: _weight_ranges(mods[p], _out_dim(mods[p])) for p in names}
    first_a = _channel_amplitudes(generator, names, inputs) if inputs is not None else None
    for _ in range(sweeps):
        worst = 0.0
        for prod, consumers in links:
            r1 = _weight_ranges(mods[prod], _out_dim(mods[prod]))
            n = len(r1)
            r2 = torch.zeros(n, dtype=torch.float64)
            for name, off in consumers:
                r2 = torch.maximum(r2, _weight_ranges(mods[name], _in_dim(mods[name]))[off:off + n])
            ok = (r1 > 0) & (r2 > 0)
            s = torch.ones(n, dtype=torch.float64)
            s[ok] = torch.sqrt(r1[ok] / r2[ok])
            worst = max(worst, float(s.log().abs().max()))
            _scale_output_channels(mods[prod], (1.0 / s).to(mods[prod].weight.dtype))
            for name, off in consumers:
                _scale_input_channels(mods[name], off, s.to(mods[name].weight.dtype))
        if worst < 1e-3:
            break
    last_a = _channel_amplitudes(generator, names, inputs) if inputs is not None else None
    report = []
    for p, cons in links:
        rec = {"producer": p, "consumers": [c for c, _ in cons], "channels": int(len(first_w[p])),
               "weight_range_spread_before": _spread(first_w[p]),
               "weight_range_spread_after": _spread(_weight_ranges(mods[p], _out_dim(mods[p])))}
        if first_a is not None:
            rec["activation_range_spread_before"] = _spread(first_a[p])
            rec["activation_range_spread_after"] = _spread(last_a[p])
        report.append(rec)
    return report


def _latent_amplitudes(generator: nn.Module, inputs: np.ndarray) -> dict[str, float]:
    """Largest |value| of each latent over ``inputs`` (N, C, H, W), all channels together: the model input's, and
    each prunable convolution's output under its ``out_latent``."""
    convs = generator.prunable_convs()
    amps = _channel_amplitudes(generator, [pc.name for pc in convs], inputs)
    return {"input": float(np.abs(inputs).max()), **{pc.out_latent: float(amps[pc.name].max()) for pc in convs}}


def match_concatenation_ranges(generator: nn.Module, inputs: np.ndarray) -> list[dict]:
    """Concatenation range matching (module docstring, rewrite 4), in place; run after :func:`cross_layer_equalise`.

    For every convolution that reads a concatenation of several latents (``in_latents``), each part written by the
    producer of a cross-layer link (:func:`_cle_links`; each producer is scaled once, by the first concatenation
    that reads it) is scaled by ``alpha_p = A / a_p``: ``a_p`` the largest ``|value|`` of the producer's output
    over ``inputs``, ``A`` the geometric mean of the scalable parts' ``a_p``, or the largest ``a_p`` of the parts
    that cannot be scaled (the model input, a residual trunk) when there are any. The producer's weights and bias
    are multiplied by ``alpha_p``, the matching input channels of every reader of its output divided by it: the float
    function is unchanged (positive homogeneity of what lies between).

    Args:
        generator: a ``compress.models`` network, eval mode.
        inputs: representative inputs (N, C, H, W) in the generator's input scaling.
    Returns:
        one record per concatenation: {"reader", "parts": [{"latent", "producer" (None: not scalable),
        "amplitude" (before, units of the activation), "scale"}], "amplitude_spread_before",
        "amplitude_spread_after"} (largest/smallest part amplitude); empty when the family has no cross-layer
        links or no concatenation.
    """
    links = dict(_cle_links(generator))
    if not links:
        return []
    mods = _modules(generator)
    producer = {pc.out_latent: pc.name for pc in generator.prunable_convs() if pc.name in links}
    readers = [pc for pc in generator.prunable_convs() if len(pc.in_latents) > 1]
    by_latent = _latent_amplitudes(generator, inputs)
    scaled: set[str] = set()
    plans = []
    for reader in readers:
        parts = []
        for latent in reader.in_latents:
            name = producer.get(latent)
            ok = name is not None and name not in scaled and by_latent.get(latent, 0.0) > 0
            parts.append({"latent": latent, "producer": name if ok else None, "amplitude": by_latent.get(latent)})
        free = [p["amplitude"] for p in parts if p["producer"]]
        fixed = [p["amplitude"] for p in parts if not p["producer"] and p["amplitude"] is not None]
        if not free or len(free) + len(fixed) < 2:
            continue
        target = max(fixed) if fixed else float(np.exp(np.mean(np.log(free))))
        for p in parts:
            p["scale"] = target / p["amplitude"] if p["producer"] else 1.0
            if p["producer"]:
                scaled.add(p["producer"])
                by_latent[p["latent"]] = target  # what a later concatenation of the same latent sees
                alpha = torch.full((generator.channels[p["latent"]],), p["scale"], dtype=torch.float64)
                _scale_output_channels(mods[p["producer"]], alpha.to(mods[p["producer"]].weight.dtype))
                for name, off in links[p["producer"]]:
                    _scale_input_channels(mods[name], off, (1.0 / alpha).to(mods[name].weight.dtype))
        plans.append((reader.name, parts))
    if not plans:
        return []
    after_latent = _latent_amplitudes(generator, inputs)
    report = []
    for reader, parts in plans:
        amps = [p["amplitude"] for p in parts if p["amplitude"] is not None]
        amps_after = [after_latent[p["latent"]] for p in parts if p["latent"] in after_latent]
        report.append({"reader": reader, "parts": parts,
                       "amplitude_spread_before": max(amps) / min(amps),
                       "amplitude_spread_after": max(amps_after) / min(amps_after)})
    return report


def equalise_for_int8(generator: nn.Module, inputs: np.ndarray,
                      match_concatenations: bool = True) -> tuple[nn.Module, dict]:
    """A copy of ``generator`` with BatchNorm folded, InstanceNorm inputs equalised, cross-layer equalisation applied
    and concatenation ranges matched (module docstring); the original is not modified.

    Args:
        generator: a ``compress.models`` network (eval mode is set on the copy).
        inputs: representative inputs (N, C, H, W) float32 in the generator's input scaling.
        match_concatenations: apply rewrite 4 (:func:`match_concatenation_ranges`); the export makes the int8 file
            with and without it and keeps the one that measures better (:mod:`export.int8_file`).
    Returns:
        (equalised copy in eval mode, report {"folded_batch_norms": [...], "instance_norm_inputs": [...],
        "cross_layer": [...], "concatenations": [...], "max_abs_change": largest |output change| on ``inputs``}).
    Raises:
        ValueError: empty ``inputs``.
    """
    if len(inputs) == 0:
        raise ValueError("equalisation needs representative inputs; got none")
    out = copy.deepcopy(generator).eval()
    folded = fold_batch_norms(out)
    norms = equalise_instance_norm_inputs(out, inputs)
    cle = cross_layer_equalise(out, inputs)
    concatenations = match_concatenation_ranges(out, inputs) if match_concatenations else []
    with torch.no_grad():
        x = _as_input(out, inputs[:8])
        change = float((generator.eval()(x) - out(x)).abs().max())
    LOGGER.info("equalisation: %d BatchNorm folded, %d InstanceNorm inputs, %d cross-layer links, %d concatenations "
                "matched; max |output change| %.2g", len(folded), len(norms), len(cle), len(concatenations), change)
    return out, {"folded_batch_norms": folded, "instance_norm_inputs": norms, "cross_layer": cle,
                 "concatenations": concatenations, "max_abs_change": change}
