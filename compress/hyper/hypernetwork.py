"""The hypernetwork of CoroNetGAN (paper 3.1, eqs. 1-4), after DHP's ``conv_dhp`` (Li et al., ECCV 2020).

For a convolution with n input channels, c output channels and a k x k kernel, with input latent vector
z_in (n,) and output latent vector z_out (c,):

    eq. 1-2  V = z_in z_out^T + B0                       (n, c)         latent matrix
    eq. 3    S = V[..., None] * W1 + B1                   (n, c, m)      embedding, m = 8 by default
    eq. 4    F = W2 . S + B2                              (n, c, k^2)    weights, W2 (n, c, k^2, m)

F is reshaped to (n, c, k, k) and permuted to (c, n, k, k) for ``conv2d`` (kept as is for
``conv_transpose2d``). Output channel j of the layer depends on the latent entries only through column j of V,
so zeroing z_out[j] with the biases at their zero init removes exactly that channel's weights (and the same
entry of the next layer's z_in removes exactly that input channel): the covariance the paper relies on.

Output layer (the convolution that produces the image, or the discriminator's logit): nothing after it
normalises its output, so the scale of its weights is the scale of the image. Eq. 5 shrinks *every* entry of a
latent vector by lambda * lr per step, the kept ones too, and the output layer's weights are linear in its input
vector, so without a correction the image's contrast shrinks with them (measured: a DCGAN generator searched to
50% with the small preset produced outputs of std 0.02 instead of 0.3, and its discriminator, BatchNorm after a
bias-free conv and a LeakyReLU, is invariant to the scale of a fake-only batch, so the converging stage gets no
gradient to restore it). The output layer therefore uses z_in / rms(z_in) in eq. 1 (``normalize_input``):
zeroed entries stay zero, so the channel covariance is unchanged, and the sum of squared input weights, which
sets the output variance, no longer depends on how far eq. 5 has shrunk the vector. Layers followed by a
normalisation are invariant to that scale anyway and use eq. 1 as published.

Initialisation follows DHP: B0, B1, B2 zeros; W1 ~ U(-sqrt(3), sqrt(3)); W2 ~ U(+-sqrt(3 / (m n k^2))) (a
hyper-fan-in init that gives the generated weights unit-variance-per-fan-in like Kaiming-uniform).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

#: Embedding size m of the hypernetwork (paper 3.1 / DHP default).
EMBEDDING_SIZE = 8


class _Eq4(torch.autograd.Function):
    """Eq. 4, F = W2 . S + B2, as one batched matrix-vector product per (input, output) channel pair, with a
    hand-written backward.

    Same values and gradients as ``torch.einsum("nckm,ncm->nck", W2, S) + B2``; the backward is about twice
    as fast on the CPU (``python -m compress.benchmarks step-cost``): autograd's einsum backward runs two
    batched GEMMs with a unit dimension, here dF/dW2 is one broadcast product (the one tensor of W2's size
    that the backward must write) and dF/dS one batched (1 x k^2) @ (k^2 x m) product.
    """

    @staticmethod
    def forward(ctx, W2: torch.Tensor, S: torch.Tensor, B2: torch.Tensor) -> torch.Tensor:
        n, c, kk, m = W2.shape
        ctx.save_for_backward(W2, S)
        # (n c, k^2, m) @ (n c, m, 1) + B2  ->  (n, c, k^2)
        return torch.baddbmm(B2.reshape(n * c, kk, 1), W2.reshape(n * c, kk, m), S.reshape(n * c, m, 1)).reshape(n, c, kk)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_f: torch.Tensor):
        W2, S = ctx.saved_tensors
        n, c, kk, m = W2.shape
        grad_w2 = grad_s = grad_b2 = None
        if ctx.needs_input_grad[0]:
            grad_w2 = grad_f.unsqueeze(-1) * S.unsqueeze(2)                           # (n, c, k^2, m)
        if ctx.needs_input_grad[1]:
            grad_s = torch.bmm(grad_f.reshape(n * c, 1, kk), W2.reshape(n * c, kk, m)).reshape(n, c, m)
        if ctx.needs_input_grad[2]:
            grad_b2 = grad_f
        return grad_w2, grad_s, grad_b2


def eq4(W2: torch.Tensor, S: torch.Tensor, B2: torch.Tensor) -> torch.Tensor:
    """Eq. 4, F = W2 . S + B2: W2 (n, c, k^2, m), S (n, c, m), B2 (n, c, k^2) -> F (n, c, k^2).

    On the CPU :class:`_Eq4` (batched matrix-vector products, hand-written backward). On CUDA the broadcast
    product summed over m, with autograd's backward: 26-30% less GPU time for the forward and backward of every
    layer of U-Net-256 and ResNet-9 on an H200 than :class:`_Eq4`, whose backward's (1 x k^2) @ (k^2 x m) batched
    products run poorly there (``make gpu-profile``, docs/compress.md "GPU"). The two agree to ~1e-7 relative
    (fp32 summation order)."""
    return _eq4_elementwise(W2, S, B2) if W2.device.type == "cuda" else _Eq4.apply(W2, S, B2)


def _eq4_elementwise(W2: torch.Tensor, S: torch.Tensor, B2: torch.Tensor) -> torch.Tensor:
    """Eq. 4 as the broadcast product (n, c, k^2, m) summed over m, with autograd's backward (:func:`eq4`)."""
    return (W2 * S.unsqueeze(2)).sum(-1) + B2


class HyperConvWeights(nn.Module):
    """Generates the weight of one Conv2d/ConvTranspose2d from its input and output latent vectors.

    Args:
        in_channels: n, input channels of the convolution.
        out_channels: c, output channels.
        kernel_size: (k_h, k_w).
        transposed: True for ConvTranspose2d (weight layout (n, c, k_h, k_w)), else (c, n, k_h, k_w).
        embedding_size: m (8).
        normalize_input: use z_in / rms(z_in) in eq. 1 (the output layer; see the module docstring).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], transposed: bool,
                 embedding_size: int = EMBEDDING_SIZE, normalize_input: bool = False):
        super().__init__()
        self.normalize_input = normalize_input
        n, c, m = in_channels, out_channels, embedding_size
        kk = kernel_size[0] * kernel_size[1]
        self.kernel_size, self.transposed = tuple(kernel_size), transposed
        self.B0 = nn.Parameter(torch.zeros(n, c))
        self.W1 = nn.Parameter(torch.empty(n, c, m).uniform_(-math.sqrt(3), math.sqrt(3)))
        self.B1 = nn.Parameter(torch.zeros(n, c, m))
        bound = math.sqrt(3.0 / (m * n * kk))
        self.W2 = nn.Parameter(torch.empty(n, c, kk, m).uniform_(-bound, bound))
        self.B2 = nn.Parameter(torch.zeros(n, c, kk))

    def forward(self, z_in: torch.Tensor, z_out: torch.Tensor) -> torch.Tensor:
        """z_in (n,), z_out (c,) -> conv weight (c, n, kh, kw), or (n, c, kh, kw) when transposed."""
        if self.normalize_input:   # output layer: scale-free in z_in (module docstring); an all-zero z_in stays 0
            z_in = z_in * torch.rsqrt(z_in.square().mean().clamp_min(1e-12))
        v = torch.outer(z_in, z_out) + self.B0                      # eq. 1-2: V = z_in z_out^T + B0
        s = torch.addcmul(self.B1, v.unsqueeze(-1), self.W1)        # eq. 3:   S = V * W1 + B1
        f = eq4(self.W2, s, self.B2)                                # eq. 4:   F = W2 . S + B2 (einsum nckm,ncm->nck)
        f = f.reshape(*f.shape[:2], *self.kernel_size)
        return f if self.transposed else f.transpose(0, 1)
