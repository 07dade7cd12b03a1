"""FID and KID between two sets of Inception features (numpy/scipy only).

* FID (Heusel et al. 2017, "GANs trained by a two time-scale update rule converge to a local Nash
  equilibrium", eq. 6): ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` over the mean ``mu`` and covariance
  ``S`` (``np.cov(rowvar=False)``, unbiased, N - 1, float64) of each set, computed exactly as pytorch-fid's
  ``calculate_frechet_distance`` (``scipy.linalg.sqrtm``; when the result is not finite, eps = 1e-6 is added
  to both diagonals and the root recomputed; an imaginary part with any diagonal entry above 1e-3 raises,
  otherwise the real part is kept). ``method="fast"`` gives the same value (to ~1e-7 relative) from the
  singular values of the centred features' cross-Gram matrix, in milliseconds instead of the 10-70 s that
  sqrtm of a 2048x2048 product takes on 2 CPU cores; figures quoted as FID use the default ``sqrtm``.
* KID (Binkowski et al. 2018, "Demystifying MMD GANs", sec. 4 / appendix): the unbiased MMD^2 estimator
  with the cubic polynomial kernel ``k(x, y) = (x . y / d + 1)^3``, d = 2048, averaged over random subsets;
  defaults follow the paper and torch-fidelity (``kid_subsets=100``, ``kid_subset_size=1000``,
  ``rng_seed=2020``; torch-fidelity's ``metric_kid.mmd2`` with ``mmd_est="unbiased"``), except that the subset
  size is ``min(1000, N1, N2)`` instead of an error when a set is smaller. Note: the unbiased estimator
  assumes two independent samples; a set compared with itself gives a small *negative* value of order
  ``-(2/m) (mean k(x, x) - mean k(x, y))``, not exactly 0.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.linalg

from compress.errors import InputError

log = logging.getLogger("coronetgan.evaluate.metrics")  # under the CLI's logger: its lines reach RUN/log.txt

#: KID defaults (Binkowski et al. 2018; torch-fidelity ``KID_SUBSETS``, ``KID_SUBSET_SIZE``, ``rng_seed``).
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020


def as_features(f, what: str, min_rows: int = 2) -> np.ndarray:
    """``f`` as a float64 (N, D) feature array, checked.

    Raises:
        InputError: not 2-d, fewer than ``min_rows`` rows, or NaN/inf values (``what`` names the set).
    """
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise InputError(f"{what}: expected features of shape (N, D), got {f.shape}")
    if f.shape[0] < min_rows:
        raise InputError(f"{what}: {f.shape[0]} feature row(s); at least {min_rows} images are needed")
    if not np.isfinite(f).all():
        raise InputError(f"{what}: features contain NaN or inf")
    return f


def compute_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of features, as pytorch-fid (``np.mean(axis=0)``, ``np.cov(rowvar=False)``).

    Args:
        features: (N, D) array, N >= 2 (D = 2048 for the Inception).

    Returns:
        ``(mu, sigma)``: (D,) and (D, D) float64; sigma is the unbiased (N - 1) covariance.

    Raises:
        InputError: fewer than 2 rows, not 2-d, or non-finite values.
    """
    f = as_features(features, "compute_statistics")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_statistics(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, eq. 6).

    ``d^2 = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))``, computed as pytorch-fid's
    ``calculate_frechet_distance``: ``scipy.linalg.sqrtm(sigma1 @ sigma2)``; if that is not finite, ``eps``
    is added to both diagonals and the root recomputed; a complex result whose diagonal has an imaginary part
    above 1e-3 raises, otherwise its real part is used. Units: squared feature units (the usual FID scale).

    Args:
        mu1, mu2: (D,) means. sigma1, sigma2: (D, D) covariances.

    Raises:
        InputError: shapes differ.
        ValueError: the square root has a significant imaginary component (pytorch-fid's error).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise InputError(f"FID: mean vectors have different lengths {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise InputError(f"FID: covariances have shapes {sigma1.shape} and {sigma2.shape}, expected "
                         f"({mu1.shape[0]}, {mu1.shape[0]})")
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        log.warning("fid calculation produces singular product; adding %s to diagonal of cov estimates", eps)
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"Imaginary component {m}")
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


#: FID methods: ``sqrtm`` is pytorch-fid's computation (the reference), ``fast`` an exact rewrite (see below).
FID_METHODS = ("sqrtm", "fast")


def _trace_sqrt_product_fast(f1: np.ndarray, f2: np.ndarray) -> tuple[float, float, float]:
    """``(Tr S1, Tr S2, Tr (S1 S2)^(1/2))`` without a general matrix square root.

    With centred features A_i (n_i, D) and S_i = A_i^T A_i / (n_i - 1), the non-zero eigenvalues of S1 S2 are
    the squared singular values of C = A1 A2^T / sqrt((n1 - 1)(n2 - 1)) (n1, n2), so Tr (S1 S2)^(1/2) is the
    nuclear norm of C. When the sets are larger than D it is cheaper to use the symmetric form
    Tr (S1^(1/2) S2 S1^(1/2))^(1/2) with eigh. Both are exact for PSD covariances.
    """
    n1, n2, d = f1.shape[0], f2.shape[0], f1.shape[1]
    a1 = f1 - f1.mean(axis=0)
    a2 = f2 - f2.mean(axis=0)
    tr1 = float(np.einsum("ij,ij->", a1, a1) / (n1 - 1))
    tr2 = float(np.einsum("ij,ij->", a2, a2) / (n2 - 1))
    if n1 * n2 * min(n1, n2) <= d ** 3:
        c = (a1 @ a2.T) / np.sqrt((n1 - 1) * (n2 - 1))
        return tr1, tr2, float(scipy.linalg.svdvals(c).sum())
    s1 = a1.T @ a1 / (n1 - 1)
    s2 = a2.T @ a2 / (n2 - 1)
    w, u = np.linalg.eigh(s1)
    r = (u * np.sqrt(np.clip(w, 0.0, None))) @ u.T
    ev = np.linalg.eigvalsh(r @ s2 @ r)
    return tr1, tr2, float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def fid_from_features(features1, features2, eps: float = 1e-6, method: str = "sqrtm") -> float:
    """FID between two feature sets (N1, D) and (N2, D), N >= 2 (D = 2048 pool3 features, float64).

    Args:
        method: ``"sqrtm"`` (default): :func:`compute_statistics` on each set, then :func:`fid_from_statistics`,
            i.e. exactly pytorch-fid. ``"fast"``: the same quantity without ``scipy.linalg.sqrtm`` on a
            rank-deficient 2048x2048 product (which takes 10-30 s on 2 CPU cores): the trace of the square
            root comes from the singular values of the (N1, N2) cross-Gram matrix of the centred features (or
            from symmetric eigendecompositions when the sets are larger than D). Agrees with ``sqrtm`` to
            numerical precision; use it for many evaluations, ``sqrtm`` for figures quoted as "FID".

    Raises:
        InputError: fewer than 2 rows, different D, non-finite values, unknown method.
    """
    if method not in FID_METHODS:
        raise InputError(f"FID method {method!r} is not one of {', '.join(FID_METHODS)}")
    f1 = as_features(features1, "FID (first set)")
    f2 = as_features(features2, "FID (second set)")
    if f1.shape[1] != f2.shape[1]:
        raise InputError(f"FID: feature sizes differ ({f1.shape[1]} vs {f2.shape[1]})")
    if method == "sqrtm":
        mu1, s1 = compute_statistics(f1)
        mu2, s2 = compute_statistics(f2)
        return fid_from_statistics(mu1, s1, mu2, s2, eps=eps)
    diff = f1.mean(axis=0) - f2.mean(axis=0)
    tr1, tr2, tr_covmean = _trace_sqrt_product_fast(f1, f2)
    return float(diff.dot(diff) + tr1 + tr2 - 2.0 * tr_covmean)


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None,
                      coef0: float = 1.0) -> np.ndarray:
    """``(gamma x . y + coef0)^degree`` for all row pairs; gamma defaults to 1 / D. (n, D), (m, D) -> (n, m)."""
    if gamma is None:
        gamma = 1.0 / x.shape[1]
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 of Binkowski et al. 2018 (torch-fidelity ``mmd2``, ``mmd_est="unbiased"``).

    ``(sum_{i!=j} k(x_i, x_j) + sum_{i!=j} k(y_i, y_j)) / (m (m - 1)) - 2 sum_{i,j} k(x_i, y_j) / m^2``.
    """
    m = k_xx.shape[0]
    kt_xx = k_xx.sum() - np.trace(k_xx)
    kt_yy = k_yy.sum() - np.trace(k_yy)
    return float((kt_xx + kt_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid_from_features(features1, features2, *, subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                      degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                      seed: int = KID_SEED) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018) between (N1, D) and (N2, D) features.

    For each of ``subsets`` draws, ``m = min(subset_size, N1, N2)`` rows are taken without replacement from
    each set (``numpy.random.RandomState(seed).choice``, first from set 1 then from set 2, as
    torch-fidelity) and the unbiased MMD^2 with ``k(x, y) = (x . y / D + 1)^3`` is computed.
    Units: those of k (dimensionless for pool3 features); papers often quote KID x 1000.

    Returns:
        ``(mean, std)`` over the subsets (``np.std``, population std, as torch-fidelity).

    Raises:
        InputError: fewer than 2 rows in a set, different D, or ``subsets``/``subset_size`` < 1/2.
    """
    f1 = as_features(features1, "KID (first set)")
    f2 = as_features(features2, "KID (second set)")
    if f1.shape[1] != f2.shape[1]:
        raise InputError(f"KID: feature sizes differ ({f1.shape[1]} vs {f2.shape[1]})")
    if int(subsets) < 1 or int(subset_size) < 2:
        raise InputError(f"KID: need subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(int(subset_size), f1.shape[0], f2.shape[0])
    rng = np.random.RandomState(seed)
    mmds = np.empty(int(subsets))
    for i in range(int(subsets)):
        x = f1[rng.choice(f1.shape[0], m, replace=False)]
        y = f2[rng.choice(f2.shape[0], m, replace=False)]
        mmds[i] = mmd2_unbiased(polynomial_kernel(x, x, degree, gamma, coef0),
                                polynomial_kernel(x, y, degree, gamma, coef0),
                                polynomial_kernel(y, y, degree, gamma, coef0))
    return float(mmds.mean()), float(mmds.std())
