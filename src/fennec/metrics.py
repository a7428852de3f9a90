"""Forward-pass transferability metrics: score a candidate model from its features on the target task.

Each metric reads what one forward pass of the candidate model gives on the target's
training images and returns one float, higher meaning "predicted to transfer better".
They are the field's alternative to fennec (which needs no forward pass of the candidates)
and serve as baselines in ``fennec eval`` and as a way to fill a zoo's history.

Feature-only metrics take ``features`` (N x D, the penultimate-layer features) and
``labels`` (N integers in 0..C-1) and are listed in ``METRICS``:

=============  ==============================================================
``logme``      You et al., ICML 2021: Bayesian evidence of a linear model per class
``nleep``      Li et al., CVPR 2021: LEEP with Gaussian-mixture pseudo source labels
``hscore``     Bao et al., ICIP 2019: tr(cov(f)^-1 cov(E[f|y]))
``hscore_reg`` Ibrahim et al., ICLR 2023 (arXiv 2021): H-score with Ledoit-Wolf shrinkage
``sfda``       Shao et al., ECCV 2022: self-challenging Fisher discriminant analysis
``gbc``        Pandy et al., CVPR 2022: Bhattacharyya overlap of per-class Gaussians
``transrate``  Huang et al., ICML 2022: coding rate of features minus that given the label
``parc``       Bolya et al., NeurIPS 2021: Spearman correlation of feature and label RDMs
``knn``        leave-one-out k-nearest-neighbour accuracy, cosine similarity
=============  ==============================================================

``leep`` and ``nce`` need the source model's classifier output instead of features:
``source_probs`` (N x Z probabilities over the Z source classes, e.g. ImageNet's 1000),
and for ``nce`` equally the hard source labels (their argmax).

Metrics quadratic in N (``parc``, ``knn``) run on a class-stratified random subset of at
most ``max_samples`` rows, drawn with ``seed``; the others use every row. All arithmetic
is float64 whatever the input dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numpy.typing import ArrayLike
from scipy import linalg as sla
from scipy.special import softmax

from ._checks import integer, real

__all__ = [
    "METRICS",
    "gbc",
    "hscore",
    "hscore_regularized",
    "knn_probe",
    "leep",
    "logme",
    "nce",
    "nleep",
    "parc",
    "score_all",
    "sfda",
    "transrate",
]


def _as_features(features: ArrayLike, name: str = "features") -> np.ndarray:
    try:
        x = np.asarray(features)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a 2-D numeric array (N x D): {exc}") from None
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise TypeError(f"{name} must be a 2-D numeric array (N x D), got dtype {x.dtype}")
    if np.iscomplexobj(x):
        raise TypeError(f"{name} must be real, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N x D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows (samples), got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} needs at least 1 column, got shape {x.shape}")
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _as_labels(labels: ArrayLike, n: int, name: str = "labels", min_classes: int = 2,
               against: str = "features") -> tuple[np.ndarray, int]:
    """Integer labels of length n, compacted to 0..C-1 over the classes present."""
    try:
        y = np.asarray(labels)
    except Exception as exc:
        raise TypeError(f"{name} must be a 1-D array of integers: {exc}") from None
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries but {against} has {n} rows")
    if y.dtype.kind in "iub":
        y = y.astype(np.int64)
    elif y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise ValueError(f"{name} must hold integer class indices, got non-integer values")
        y = y.astype(np.int64)
    else:
        raise TypeError(f"{name} must be integer class indices, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise ValueError(f"{name} must be class indices in 0..C-1, got {int(y.min())}")
    classes, inverse = np.unique(y, return_inverse=True)
    if len(classes) < min_classes:
        raise ValueError(f"{name} must contain at least {min_classes} classes, got {len(classes)}")
    return inverse.astype(np.int64), len(classes)


def _as_probs(source_probs: ArrayLike, name: str = "source_probs", normalize: bool = True) -> np.ndarray:
    p = _as_features(source_probs, name)
    if p.min() < 0:
        raise ValueError(f"{name} must be probabilities (non-negative); apply a softmax to logits")
    sums = p.sum(axis=1)
    if np.max(np.abs(sums - 1.0)) > 1e-3:
        raise ValueError(f"{name} rows must sum to 1 (probabilities over source classes); "
                         "apply a softmax to logits")
    # softmax outputs are already normalised to rounding; only rescale rows that are not
    probs: np.ndarray = p / sums[:, None] if normalize and np.max(np.abs(sums - 1.0)) > 1e-9 else p
    return probs


def _class_sums(x: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Row sums of x per class (C x D); every class in 0..C-1 is present."""
    if n_classes <= 64:  # a thin one-hot matmul beats sorting and copying x
        onehot = np.zeros((n_classes, len(y)))
        onehot[y, np.arange(len(y))] = 1.0
        sums: np.ndarray = onehot @ x
        return sums
    order = np.argsort(y, kind="stable")
    starts = np.concatenate(([0], np.cumsum(np.bincount(y, minlength=n_classes))[:-1]))
    return np.add.reduceat(x[order], starts, axis=0)


def _gram_eigh(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Eigen-decomposition of the smaller Gram matrix of x, largest first.

    Returns (eigenvalues >= 0, eigenvectors, feature_side): the vectors are right singular
    vectors of x (D-side, x^T x) when feature_side, else left ones (N-side, x x^T).
    """
    n, d = x.shape
    feature_side = n >= d
    gram = x.T @ x if feature_side else x @ x.T
    lam, vec = np.linalg.eigh(gram)
    return np.clip(lam[::-1], 0.0, None), vec[:, ::-1], feature_side


def _eigen_coordinates(sym: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of a symmetric matrix (largest first) and the coordinates of the columns
    of rhs in its eigenbasis, without forming the eigenvectors of the full matrix.

    Householder tridiagonalisation Q^T A Q = T, Q^T applied to rhs, then T's eigenvectors
    by MRRR (O(n^2)): about half the work of a full eigen-decomposition when rhs is thin.
    """
    from scipy.linalg import lapack

    n = sym.shape[0]
    try:
        if n <= 2:
            raise np.linalg.LinAlgError("too small for the tridiagonal path")
        lwork, info = lapack.dsytrd_lwork(n, lower=1)
        packed, diag, offdiag, tau, info = lapack.dsytrd(sym, lower=1, lwork=int(lwork))
        if info != 0:
            raise np.linalg.LinAlgError(f"dsytrd info {info}")
        # with lower storage Q = H(1)...H(n-1), reflectors below the subdiagonal: a QR-shaped Q on rows 2..n
        coords = np.array(rhs, dtype=np.float64, order="F", copy=True)
        lwork = int(lapack.dormqr("L", "T", packed[1:, :-1], tau, coords[1:], lwork=-1)[1][0])
        applied, _, info = lapack.dormqr("L", "T", packed[1:, :-1], tau, coords[1:], lwork=max(lwork, 1))
        if info != 0:
            raise np.linalg.LinAlgError(f"dormqr info {info}")
        coords[1:] = applied
        lam, vec = sla.eigh_tridiagonal(diag, offdiag, lapack_driver="stemr")
        coords = vec.T @ coords
    except (np.linalg.LinAlgError, ValueError):
        lam, vec = np.linalg.eigh(sym)
        coords = vec.T @ rhs
    return np.clip(lam[::-1], 0.0, None), coords[::-1]


def _rank_cutoff(lam: np.ndarray, shape: tuple[int, int]) -> float:
    # Gram eigenvalues below this are rounding noise of zero singular values.
    return float(lam[0]) * max(shape) * np.finfo(np.float64).eps if len(lam) else 0.0


def _top_gram_eigh(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """The k leading eigenpairs of the smaller Gram matrix of x, largest first (Lanczos)."""
    from scipy.sparse.linalg import ArpackError, eigsh

    n, d = x.shape
    feature_side = n >= d
    gram = x.T @ x if feature_side else x @ x.T
    try:  # a fixed start vector keeps the result deterministic
        lam, vec = eigsh(gram, k=k, which="LA", v0=np.ones(gram.shape[0]))
    except ArpackError:  # includes no convergence: fall back to the dense solver
        lam, vec = np.linalg.eigh(gram)
        lam, vec = lam[-k:], vec[:, -k:]
    return np.clip(lam[::-1], 0.0, None), vec[:, ::-1], feature_side


def _pca(x: np.ndarray, n_components: int | float) -> np.ndarray:
    """Scores of x on its leading principal axes.

    An int keeps that many axes (at most the rank); a float in (0, 1] keeps the fewest
    axes that explain at least that fraction of the variance. Each axis is signed so that
    its largest loading is positive, so the result does not depend on the solver's signs.
    A few axes out of many come from Lanczos iterations instead of a full eigensolver.
    """
    xc = x - x.mean(axis=0)
    side = min(xc.shape)
    if isinstance(n_components, int) and side >= 128 and n_components <= side // 4:
        lam, vec, feature_side = _top_gram_eigh(xc, n_components)
    else:
        lam, vec, feature_side = _gram_eigh(xc)
    rank = int(np.sum(lam > _rank_cutoff(lam, xc.shape)))
    if rank == 0:
        return np.zeros((x.shape[0], 1))
    if isinstance(n_components, float):
        explained = np.cumsum(lam[:rank]) / lam[:rank].sum()
        k = int(np.searchsorted(explained, n_components - 1e-12, side="left")) + 1
    else:
        k = n_components
    k = min(k, rank)
    if feature_side:
        loadings = vec[:, :k]
        scores = xc @ loadings
    else:
        s = np.sqrt(lam[:k])
        loadings = (xc.T @ vec[:, :k]) / s
        scores = vec[:, :k] * s
    biggest = np.argmax(np.abs(loadings), axis=0)
    signs = np.sign(loadings[biggest, np.arange(k)])
    signs[signs == 0] = 1.0
    signed: np.ndarray = scores * signs
    return signed


def _subsample(y: np.ndarray, max_samples: int, seed: int) -> np.ndarray | None:
    """A class-stratified random subset of about max_samples rows (None: keep all)."""
    n = len(y)
    if n <= max_samples:
        return None
    rng = np.random.default_rng(seed)
    counts = np.bincount(y)
    # every class keeps at least one row, so the subset has the same label set
    take = np.maximum(1, np.floor(counts * (max_samples / n)).astype(np.int64))
    order = np.argsort(y, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    chosen = [order[s + rng.choice(c, t, replace=False)] for s, c, t in zip(starts, counts, take)]
    return np.sort(np.concatenate(chosen))


def _subsampled(features: ArrayLike, labels: ArrayLike, max_samples: int,
                seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Checked features and labels (with the class count), on a class-stratified subset of
    ``max_samples`` rows when there are more."""
    f = _as_features(features)
    y, n_classes = _as_labels(labels, f.shape[0])
    idx = _subsample(y, integer(max_samples, "max_samples", low=1), seed)
    return (f, y, n_classes) if idx is None else (f[idx], y[idx], n_classes)


def _leep_from_probs(probs: np.ndarray, y: np.ndarray, n_classes: int) -> float:
    n = len(y)
    joint = _class_sums(probs, y, n_classes) / n  # P(y, z)
    marginal = joint.sum(axis=0)  # P(z)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    # expected empirical prediction: sum_z P(y_i | z) theta_z(x_i); > 0 whenever theta(x_i) is
    if n_classes <= 64:
        eep = (probs @ conditional.T)[np.arange(n), y]
    else:
        eep = np.einsum("nz,nz->n", probs, conditional[y])
    return float(np.mean(np.log(eep)))


def logme(features: ArrayLike, labels: ArrayLike, *, tol: float = 1e-5, max_iter: int = 100) -> float:
    """LogME: mean over classes of the maximised log evidence per sample (You et al., ICML 2021).

    For each class c, y_c (the 0/1 indicator) is modelled as F w + noise with
    w ~ N(0, alpha^-1 I), noise ~ N(0, beta^-1); alpha and beta are found by MacKay's
    fixed point (gamma = sum beta s_i / (alpha + beta s_i), alpha = gamma / |m|^2,
    beta = (N - gamma) / |F m - y|^2), starting from alpha = beta = 1 and stopping when
    alpha / beta changes by less than ``tol`` (relatively) for every class. One
    eigen-decomposition of the smaller Gram matrix (the SVD of F) serves every class, and
    the iteration runs on all classes at once: O(N D min(N, D) + min(N, D)^3) once, then
    O(min(N, D) C) per step. The eigenvectors themselves are never formed: only the
    coordinates of F^T y_c in the eigenbasis are needed (see ``_eigen_coordinates``).
    No feature normalisation is applied, as in the paper.
    """
    f = _as_features(features)
    y, n_classes = _as_labels(labels, f.shape[0])
    max_iter = integer(max_iter, "max_iter", low=1)
    tol = real(tol, "tol", low=0)
    n, d = f.shape
    if n >= d:
        # w_i = v_i^T F^T y, so |u_i^T y|^2 = w_i^2 / s_i without dividing by small s_i
        lam, w = _eigen_coordinates(f.T @ f, _class_sums(f, y, n_classes).T)
        w2 = np.square(w)
    else:
        onehot = np.zeros((n, n_classes))
        onehot[np.arange(n), y] = 1.0
        lam, z = _eigen_coordinates(f @ f.T, onehot)
        w2 = lam[:, None] * np.square(z)
    keep = lam > _rank_cutoff(lam, f.shape)
    sigma, w2 = lam[keep][:, None], w2[keep]
    y2 = np.bincount(y, minlength=n_classes).astype(np.float64)  # |y_c|^2
    # alpha / beta grows without bound for a class the features say nothing about (the
    # evidence is maximal at w = 0); past this ratio the features' share is below 1e-12
    t_cap = 1e12 * float(sigma.max()) if len(sigma) else 1.0

    def fit_terms(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        inv = 1.0 / (t + sigma)
        gamma = np.sum(sigma * inv, axis=0)
        m2 = np.sum(w2 * inv**2, axis=0)
        # |F m - y|^2 = |y|^2 - sum w_i^2 (2t + s_i) / (t + s_i)^2
        res2 = np.maximum(y2 - np.sum(w2 * (2 * t + sigma) * inv**2, axis=0), 1e-12 * y2)
        return gamma, m2, res2

    alpha = np.ones(n_classes)
    beta = np.ones(n_classes)
    for _ in range(max_iter):
        t_old = alpha / beta
        gamma, m2, res2 = fit_terms(t_old)
        beta = (n - gamma) / res2
        # with no feature direction at all (gamma = 0) alpha keeps its value: it cancels
        t = np.where(gamma > 0, gamma / np.maximum(m2, np.finfo(np.float64).tiny), alpha) / beta
        t = np.minimum(t, t_cap)
        alpha = t * beta
        if np.all(np.abs(t - t_old) <= tol * t_old):
            break
    t = alpha / beta
    gamma, m2, res2 = fit_terms(t)
    # D/2 log alpha - 1/2 log|alpha I + beta F^T F| = -1/2 sum_i log(1 + s_i / t): the D - rank
    # zero singular values cancel, and nothing overflows as t grows
    evidence = (n / 2 * np.log(beta) - 0.5 * np.sum(np.log1p(sigma / t), axis=0)
                - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
    return float(np.mean(evidence / n))


def leep(source_probs: ArrayLike, labels: ArrayLike) -> float:
    """LEEP: log expected empirical prediction (Nguyen et al., ICML 2020).

    ``source_probs`` is the source model's classifier output on the target images,
    N x Z probabilities over its Z source classes (softmax of its logits), not features.
    With P(y, z) = (1/N) sum_{i: y_i = y} theta_z(x_i), LEEP is
    (1/N) sum_i log sum_z P(y_i | z) theta_z(x_i).
    """
    probs = _as_probs(source_probs)
    y, n_classes = _as_labels(labels, probs.shape[0], against="source_probs")
    return _leep_from_probs(probs, y, n_classes)


def nce(source_labels_or_probs: ArrayLike, labels: ArrayLike) -> float:
    """NCE: negative conditional entropy -H(Y | Z) of target given source labels (Tran et al., ICCV 2019).

    Takes either the source model's hard predictions on the target images (N integers,
    its argmax) or its probabilities (N x Z, reduced to their argmax, since NCE is defined
    on hard source labels). Natural log; the maximum, 0, means Z determines Y.
    """
    arr = np.asarray(source_labels_or_probs)
    if arr.ndim == 2:
        z = np.argmax(_as_probs(arr, "source_labels_or_probs", normalize=False), axis=1)
        n = len(z)
        z = np.unique(z, return_inverse=True)[1]
    elif arr.ndim == 1:
        if len(arr) < 2:
            raise ValueError(f"source_labels_or_probs needs at least 2 samples, got {len(arr)}")
        z, _ = _as_labels(arr, len(arr), "source_labels_or_probs", min_classes=1)
        n = len(z)
    else:
        raise ValueError("source_labels_or_probs must be N source labels or N x Z probabilities, "
                         f"got shape {arr.shape}")
    y, n_classes = _as_labels(labels, n, against="source_labels_or_probs")
    counts = np.bincount(z * n_classes + y, minlength=(z.max() + 1) * n_classes)
    joint = counts.reshape(-1, n_classes) / n
    marginal = joint.sum(axis=1, keepdims=True)
    seen = joint > 0
    return float(np.sum(joint[seen] * np.log((joint / np.where(marginal > 0, marginal, 1.0))[seen])))


def _kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    centers = np.empty((k, x.shape[1]))
    centers[0] = x[rng.integers(n)]
    closest = np.sum((x - centers[0]) ** 2, axis=1)
    for j in range(1, k):
        total = closest.sum()
        pick = rng.integers(n) if total <= 0 else rng.choice(n, p=closest / total)
        centers[j] = x[pick]
        closest = np.minimum(closest, np.sum((x - centers[j]) ** 2, axis=1))
    return centers


def _gmm_estep(x: np.ndarray, x2: np.ndarray, weights: np.ndarray, means: np.ndarray,
               variances: np.ndarray) -> tuple[np.ndarray, float]:
    """Responsibilities and mean log-likelihood of a diagonal Gaussian mixture (x2 = x**2)."""
    precisions = 1.0 / variances
    # log N(x | mu, diag var) + log w, expanded so that the N x K work is two matmuls
    weighted = x @ (means * precisions).T
    weighted -= 0.5 * (x2 @ precisions.T)
    weighted += np.log(weights) - 0.5 * (x.shape[1] * np.log(2 * np.pi) + np.sum(np.log(variances), axis=1)
                                        + np.sum(np.square(means) * precisions, axis=1))
    top = weighted.max(axis=1, keepdims=True)
    np.subtract(weighted, top, out=weighted)
    np.exp(weighted, out=weighted)
    total = weighted.sum(axis=1, keepdims=True)
    weighted /= total
    return weighted, float(np.mean(np.log(total) + top))


def _gmm_mstep(x: np.ndarray, x2: np.ndarray, resp: np.ndarray,
               reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nk = resp.sum(axis=0) + 10 * np.finfo(np.float64).eps
    means = (resp.T @ x) / nk[:, None]
    variances = (resp.T @ x2) / nk[:, None] - np.square(means) + reg_covar
    return nk / len(x), means, np.maximum(variances, reg_covar)


def _gmm_diag_em(x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray, *,
                 max_iter: int = 100, tol: float = 1e-3,
                 reg_covar: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """EM for a diagonal-covariance Gaussian mixture from given parameters; returns
    (weights, means, variances, posteriors of the final parameters, iterations run)."""
    x2 = np.square(x)
    lower = -np.inf
    it = 0
    for it in range(1, max_iter + 1):
        resp, ll = _gmm_estep(x, x2, weights, means, variances)
        weights, means, variances = _gmm_mstep(x, x2, resp, reg_covar)
        if abs(ll - lower) < tol:
            break
        lower = ll
    resp, _ = _gmm_estep(x, x2, weights, means, variances)
    return weights, means, variances, resp, it


def _gmm_diag(x: np.ndarray, k: int, seed: int, *, max_iter: int = 100, tol: float = 1e-3, reg_covar: float = 1e-6,
              kmeans_iter: int = 10) -> np.ndarray:
    """Posteriors of a k-component diagonal Gaussian mixture fitted to x.

    Initialised in the manner of scikit-learn's default: k-means (k-means++ seeding from
    ``seed``, up to ``kmeans_iter`` Lloyd steps), then one M-step on the hard assignment.
    """
    rng = np.random.default_rng(seed)
    centers = _kmeans_plusplus(x, k, rng)
    sq = np.einsum("ij,ij->i", x, x)
    for _ in range(kmeans_iter):
        dist = sq[:, None] - 2 * x @ centers.T + np.einsum("ij,ij->i", centers, centers)
        assign = np.argmin(dist, axis=1)
        counts = np.bincount(assign, minlength=k)
        filled = counts > 0
        onehot = np.zeros((len(x), k))
        onehot[np.arange(len(x)), assign] = 1.0
        sums = onehot.T @ x
        new = centers.copy()
        new[filled] = sums[filled] / counts[filled, None]  # an empty cluster keeps its center
        if np.array_equal(new, centers):
            break
        centers = new
    resp = np.zeros((len(x), k))
    resp[np.arange(len(x)), assign] = 1.0
    weights, means, variances = _gmm_mstep(x, np.square(x), resp, reg_covar)
    return _gmm_diag_em(x, weights, means, variances, max_iter=max_iter, tol=tol, reg_covar=reg_covar)[3]


def nleep(features: ArrayLike, labels: ArrayLike, n_components: int | None = None, seed: int = 0, *,
          variance: float = 0.8,
          max_iter: int = 100, tol: float = 1e-3) -> float:
    """N-LEEP: LEEP with a Gaussian mixture's posteriors as source labels (Li et al., CVPR 2021).

    Features are reduced by PCA to the fewest axes explaining ``variance`` of the variance
    (80% in the paper), a diagonal-covariance Gaussian mixture with ``n_components``
    components (default 5 x C as in the paper, at most N // 2) is fitted by EM
    (k-means++ initialisation from ``seed``), and LEEP is computed on its posteriors.
    """
    f = _as_features(features)
    y, n_classes = _as_labels(labels, f.shape[0])
    variance = real(variance, "variance")  # a float: _pca reads it as a fraction of the variance
    if not 0 < variance <= 1:
        raise ValueError(f"variance must be a finite number in (0, 1], got {variance!r}")
    if n_components is None:
        k = max(1, min(5 * n_classes, f.shape[0] // 2))
    else:
        k = integer(n_components, "n_components", low=1)
        if k > f.shape[0]:
            raise ValueError(f"n_components ({k}) cannot exceed the number of samples ({f.shape[0]})")
    reduced = _pca(f, variance)
    posteriors = _gmm_diag(reduced, k, seed, max_iter=max_iter, tol=tol)
    return _leep_from_probs(posteriors, y, n_classes)


def _between_rows(xc: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows sqrt(n_c) (mu_c - mu) of centered features: M^T M = N cov(E[f | y]) (biased)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    means = _class_sums(xc, y, n_classes) / counts[:, None]
    return means * np.sqrt(counts)[:, None]


def hscore(features: ArrayLike, labels: ArrayLike, *, rcond: float = 1e-15) -> float:
    """H-score: tr(cov(f)^+ cov(E[f | y])) (Bao et al., ICIP 2019).

    cov(f)^+ is the pseudo-inverse with relative cutoff ``rcond`` (as in the authors'
    code), raised to the rounding level of the eigenvalues so that numerically-zero
    directions (there is at least one when N <= D) are dropped rather than amplified;
    both covariances use 1/(N-1). Unstable when N is not well above D: the regularised
    form below is the remedy.
    """
    f = _as_features(features)
    y, n_classes = _as_labels(labels, f.shape[0])
    xc = f - f.mean(axis=0)
    between = _between_rows(xc, y, n_classes)  # C x D
    n, d = xc.shape
    if n - 1 >= d:
        gram = xc.T @ xc
        try:  # well-conditioned full rank: a Cholesky solve is the pseudo-inverse
            factor = sla.cho_factor(gram, lower=True, check_finite=False)
            pivots = np.square(np.diag(factor[0]))
            if pivots.min() > 1e3 * max(n, d) * np.finfo(np.float64).eps * np.max(np.diag(gram)):
                return float(np.sum(between.T * sla.cho_solve(factor, between.T, check_finite=False)))
        except np.linalg.LinAlgError:
            pass
    lam, vec, feature_side = _gram_eigh(xc)
    keep = lam > max(rcond * lam[0], _rank_cutoff(lam, xc.shape)) if len(lam) else np.zeros(0, bool)
    if not keep.any():
        return 0.0
    if feature_side:
        proj2 = np.square(vec[:, keep].T @ between.T)  # (v_i^T m_c)^2
        return float(np.sum(proj2 / lam[keep, None]))
    # v_i = xc^T u_i / sqrt(lam_i), so (v_i^T m)^2 / lam_i = (u_i^T xc m)^2 / lam_i^2
    proj2 = np.square(vec[:, keep].T @ (xc @ between.T))
    return float(np.sum(proj2 / np.square(lam[keep])[:, None]))


def _ledoit_wolf_shrinkage(xc: np.ndarray, gram: np.ndarray | None = None) -> float:
    """Ledoit-Wolf (2004) shrinkage of the biased covariance of centered xc toward mu I.

    ``gram`` may pass in the smaller Gram matrix of xc (either side has the same |.|_F).
    """
    n, d = xc.shape
    if gram is None:
        gram = xc.T @ xc if n >= d else xc @ xc.T
    s_fro2 = np.sum(np.square(gram)) / n**2  # |S|_F^2, S = xc^T xc / n
    mu = np.sum(np.square(xc)) / (n * d)  # tr(S) / d
    delta = s_fro2 / d - mu**2  # |S - mu I|^2 in the normalised norm
    beta = (np.sum(np.square(np.einsum("ij,ij->i", xc, xc))) / n**2 - s_fro2 / n) / (d * 1.0)
    beta = min(beta, delta)
    return 0.0 if delta <= 0 else float(beta / delta)


def hscore_regularized(features: ArrayLike, labels: ArrayLike) -> float:
    """Regularised H-score: tr(S_a^-1 (1 - a) cov(E[f | y])) (Ibrahim et al., ICLR 2023).

    S_a = (1 - a) S + a (tr S / D) I is the Ledoit-Wolf shrinkage of the biased feature
    covariance S with its own optimal a; cov(E[f | y]) is biased too. Stable for N < D.
    """
    f = _as_features(features)
    y, n_classes = _as_labels(labels, f.shape[0])
    xc = f - f.mean(axis=0)
    n, d = xc.shape
    between = _between_rows(xc, y, n_classes)  # M^T M / n = cov(E[f | y])
    gram = xc.T @ xc if n >= d else xc @ xc.T
    shrink = _ledoit_wolf_shrinkage(xc, gram)
    mu = np.sum(np.square(xc)) / (n * d)
    ridge = shrink * mu
    if shrink >= 1.0:
        return 0.0
    if ridge <= 0:  # no shrinkage: the plain H-score (its 1/(N-1) factors cancel)
        return hscore(f, y)
    # S_a = ridge I + c xc^T xc with c = (1 - a) / n; trace term is (1 - a)/n sum_c m_c^T S_a^-1 m_c
    c = (1.0 - shrink) / n
    if n >= d:
        s_a = c * gram
        s_a.flat[:: d + 1] += ridge
        solved = sla.cho_solve(sla.cho_factor(s_a, lower=True, check_finite=False), between.T,
                               check_finite=False)
        quad = np.sum(between.T * solved)
    else:
        # Woodbury on the N x N side: S_a^-1 = (I - xc^T (ridge/c I + xc xc^T)^-1 xc) / ridge
        inner = gram
        inner.flat[:: n + 1] += ridge / c
        proj = xc @ between.T
        solved = sla.cho_solve(sla.cho_factor(inner, lower=True, check_finite=False), proj,
                               check_finite=False)
        quad = (np.sum(np.square(between)) - np.sum(proj * solved)) / ridge
    return float(c * quad)


def _largest_eigenvalue(sym: np.ndarray) -> float:
    if sym.shape[0] <= 16:
        return float(np.linalg.eigvalsh(sym)[-1])
    from scipy.sparse.linalg import ArpackNoConvergence, eigsh

    try:  # Lanczos from a fixed start: exact to rounding and deterministic
        return float(eigsh(sym, k=1, which="LA", v0=np.ones(sym.shape[0]), return_eigenvectors=False)[0])
    except ArpackNoConvergence:
        return float(sla.eigh(sym, eigvals_only=True, subset_by_index=[sym.shape[0] - 1] * 2)[0])


def _shrunk_lda_probs(x: np.ndarray, y: np.ndarray, n_classes: int,
                      shrinkage: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Class posteriors of the Bayes classifier in the regularised Fisher space.

    With within-class scatter S_w (priors-weighted, biased) regularised as
    S_w' = (1 - l) S_w + l (tr S_w / D) I, projecting onto the generalized eigenvectors of
    (S_b, S_w') and classifying with identity covariance there gives the logits
    x^T S_w'^-1 mu_c - mu_c^T S_w'^-1 mu_c / 2 + log pi_c (the class-mean differences lie
    in the span of the C - 1 Fisher axes), computed here with one Cholesky solve.
    """
    n, d = x.shape
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    priors = counts / n
    means = _class_sums(x, y, n_classes) / counts[:, None]
    within = x - means[y]
    s_w = within.T @ within / n
    if shrinkage is None:
        shrinkage = max(float(np.exp(-5.0 * _largest_eigenvalue(s_w))), 1e-10)
    mu = np.trace(s_w) / d
    s_w *= 1.0 - shrinkage
    s_w.flat[:: d + 1] += shrinkage * mu
    try:
        coef = sla.cho_solve(sla.cho_factor(s_w, lower=True, check_finite=False), means.T, check_finite=False)
    except np.linalg.LinAlgError:
        coef = np.linalg.pinv(s_w, hermitian=True) @ means.T
    logits = x @ coef - 0.5 * np.sum(means.T * coef, axis=0) + np.log(priors)
    return softmax(logits, axis=1), means, shrinkage


def sfda(features: ArrayLike, labels: ArrayLike, *, self_challenging: bool = True, log: bool = False) -> float:
    """SFDA: self-challenging Fisher discriminant analysis (Shao et al., ECCV 2022).

    1. Regularised FDA: S_w' = (1 - l) S_w + l (tr S_w / D) I with l = exp(-5 lambda_max(S_w))
       (floored at 1e-10), and the Bayes classifier in the Fisher space (see above).
    2. ConfMix (``self_challenging``): each x_i is moved toward the mean of the other
       classes' means, x_i <- p_i x_i + (1 - p_i) mean_{c != y_i} mu_c, with p_i the
       softened (softmax of the posteriors, as in the authors' release) confidence in y_i.
    3. The same classifier, same l, refitted on the mixed features; the score is the mean
       posterior of the true class, as the authors' release computes it (the paper writes
       a log, which ``log=True`` applies: mean log-likelihood).
    """
    f = _as_features(features)
    y, n_classes = _as_labels(labels, f.shape[0])
    probs, means, shrinkage = _shrunk_lda_probs(f, y, n_classes, None)
    if self_challenging:
        soft = softmax(probs, axis=1)
        confidence = soft[np.arange(len(y)), y][:, None]
        others = (means.sum(axis=0) - means) / (n_classes - 1)
        mixed = confidence * f + (1.0 - confidence) * others[y]
        probs, _, _ = _shrunk_lda_probs(mixed, y, n_classes, shrinkage)
    true = probs[np.arange(len(y)), y]
    if log:
        return float(np.mean(np.log(np.maximum(true, np.finfo(np.float64).tiny))))
    return float(np.mean(true))


def gbc(features: ArrayLike, labels: ArrayLike, *, n_components: int = 64, var_floor: float = 1e-4) -> float:
    """GBC: minus the summed Bhattacharyya coefficients between class Gaussians (Pandy et al., CVPR 2022).

    Features are reduced by PCA to ``n_components`` axes (64 in the paper) when wider;
    each class is a Gaussian with diagonal covariance (variances floored at ``var_floor``,
    as in the authors' code); GBC = -sum_{i != j} exp(-D_B(c_i, c_j)). Its maximum, 0,
    means fully separated classes; -C (C - 1) means identical ones.
    """
    f = _as_features(features)
    y, n_classes = _as_labels(labels, f.shape[0])
    n_components = integer(n_components, "n_components", low=1)
    x = _pca(f, n_components) if f.shape[1] > n_components else f
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)[:, None]
    means = _class_sums(x, y, n_classes) / counts
    variances = np.maximum(_class_sums(np.square(x), y, n_classes) / counts - np.square(means), var_floor)
    log_var = np.log(variances).sum(axis=1)
    total = 0.0
    chunk = max(1, 2_000_000 // (n_classes * x.shape[1]))
    for start in range(0, n_classes, chunk):
        a = slice(start, start + chunk)
        avg = (variances[a, None, :] + variances[None, :, :]) / 2
        distance = (np.sum(np.square(means[a, None, :] - means[None, :, :]) / avg, axis=2) / 8
                    + 0.5 * (np.sum(np.log(avg), axis=2) - 0.5 * log_var[a, None] - 0.5 * log_var[None, :]))
        coeff = np.exp(-distance)
        rows = np.arange(start, min(start + chunk, n_classes))
        coeff[rows - start, rows] = 0.0
        total += coeff.sum()
    return float(-total)


def _coding_rate(z: np.ndarray, eps: float) -> float:
    """R(Z, eps) = 1/2 logdet(I + Z^T Z / (n eps)), through the smaller Gram matrix."""
    n, d = z.shape
    gram = z.T @ z if n >= d else z @ z.T
    gram /= n * eps
    gram.flat[:: gram.shape[0] + 1] += 1.0
    try:
        factor = np.linalg.cholesky(gram)
        return float(np.sum(np.log(np.diag(factor))))
    except np.linalg.LinAlgError:  # rounding made it indefinite: eigenvalues are >= 1 in exact arithmetic
        return float(0.5 * np.sum(np.log(np.maximum(np.linalg.eigvalsh(gram), 1.0))))


def transrate(features: ArrayLike, labels: ArrayLike, eps: float = 1e-4) -> float:
    """TransRate: R(Z, eps) - (1/C) sum_c R(Z_c, eps) on centered features (Huang et al., ICML 2022).

    R(Z, eps) = 1/2 logdet(I + Z^T Z / (n eps)) is the coding rate; Z_c are the rows of
    class c (centered with the overall mean). This is the authors' released form.
    """
    f = _as_features(features)
    y, n_classes = _as_labels(labels, f.shape[0])
    eps = real(eps, "eps")
    if eps <= 0:
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    z = f - f.mean(axis=0)
    order = np.argsort(y, kind="stable")
    bounds = np.cumsum(np.bincount(y, minlength=n_classes))[:-1]
    per_class = [_coding_rate(block, eps) for block in np.split(z[order], bounds)]
    return _coding_rate(z, eps) - float(np.mean(per_class))


def _average_ranks_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks (1-based, ties averaged) in sorted order, and the sorting permutation: one sort."""
    order = np.argsort(values)
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    if len(starts) == len(values):
        return np.arange(1, len(values) + 1, dtype=np.float64), order
    ends = np.append(starts[1:], len(values))
    return np.repeat((starts + ends + 1) / 2.0, ends - starts), order


def parc(features: ArrayLike, labels: ArrayLike, *, n_components: int = 32, max_samples: int = 2000,
         seed: int = 0) -> float:
    """PARC: Spearman correlation of the feature and label dissimilarity matrices (Bolya et al., NeurIPS 2021).

    Features are standardised per dimension and reduced by PCA to ``n_components`` axes
    (32, as in the paper's release) when wider; the dissimilarity of two samples is
    1 - Pearson correlation of their rows, for features and for one-hot labels; the
    score is the Spearman correlation of the two upper triangles, in [-1, 1] (the release
    multiplies it by 100). Runs on a class-stratified subset of ``max_samples`` rows.
    """
    n_components = integer(n_components, "n_components", low=1)
    f, y, _ = _subsampled(features, labels, max_samples, seed)
    std = f.std(axis=0)
    x = (f - f.mean(axis=0)) / np.where(std > 0, std, 1.0)
    if x.shape[1] > n_components:
        x = _pca(x, n_components)
    x = x - x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    n = len(y)
    upper = np.triu_indices(n, 1)
    feature_rdm = 1.0 - (x @ x.T)[upper]
    # one-hot rows correlate 1 within a class and -1/(C-1) across: the label RDM is binary
    different = y[upper[0]] != y[upper[1]]
    n_diff = int(different.sum())
    n_same = len(different) - n_diff
    if n_same == 0 or n_diff == 0:
        raise ValueError("parc needs pairs of samples from the same class and from different classes")
    ranks_sorted, order = _average_ranks_sorted(feature_rdm)
    spread = ranks_sorted.std()
    if spread == 0:
        return 0.0
    # Pearson correlation of the ranks with a two-valued variable (its ranks are two-valued
    # too): (mean rank across classes - mean rank within) sqrt(p (1 - p)) / std(ranks)
    across = different[order]
    mean_across = ranks_sorted[across].mean()
    mean_within = ranks_sorted[~across].mean()
    share = n_diff / len(different)
    return float((mean_across - mean_within) * np.sqrt(share * (1 - share)) / spread)


_KNN_BLOCK = 16_000_000  # similarities held at once by knn_probe


def knn_probe(features: ArrayLike, labels: ArrayLike, k: int = 10, seed: int = 0, *,
              max_samples: int = 5000) -> float:
    """Leave-one-out k-nearest-neighbour accuracy under cosine similarity.

    Each sample is classified by majority vote of its k most similar other samples; a
    tied vote goes to the tied class with the larger summed similarity, then the smaller
    label. ``k`` is capped at N - 1. Runs on a class-stratified subset of ``max_samples`` rows.
    """
    k = integer(k, "k", low=1)
    f, y, n_classes = _subsampled(features, labels, max_samples, seed)
    n = len(y)
    k = min(k, n - 1)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    x = f / np.where(norms > 0, norms, 1.0)
    correct = 0
    # one block of n x n is x x^T, a symmetric product BLAS halves; else blocks of rows
    chunk = n if n * n <= _KNN_BLOCK else max(1, _KNN_BLOCK // (4 * n))
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        sim = x @ x.T if chunk == n else x[rows] @ x.T
        sim[np.arange(len(rows)), rows] = -np.inf
        nearest = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        near_sim = np.take_along_axis(sim, nearest, axis=1)
        slot = (np.arange(len(rows))[:, None] * n_classes + y[nearest]).ravel()
        votes = np.bincount(slot, minlength=len(rows) * n_classes).reshape(len(rows), n_classes)
        weight = np.bincount(slot, weights=near_sim.ravel(), minlength=len(rows) * n_classes)
        weight = weight.reshape(len(rows), n_classes)
        tied = votes == votes.max(axis=1, keepdims=True)
        predicted = np.argmax(np.where(tied, weight, -np.inf), axis=1)
        correct += int(np.sum(predicted == y[rows]))
    return correct / n


METRICS: dict[str, Callable[..., float]] = {
    "logme": logme,
    "nleep": nleep,
    "hscore": hscore,
    "hscore_reg": hscore_regularized,
    "sfda": sfda,
    "gbc": gbc,
    "transrate": transrate,
    "parc": parc,
    "knn": knn_probe,
}


def score_all(features: ArrayLike, labels: ArrayLike, names: Iterable[str] | None = None) -> dict[str, float]:
    """Every feature-only metric named in ``names`` (default: all of ``METRICS``), in that order."""
    if names is None:
        chosen = list(METRICS)
    else:
        if isinstance(names, str):
            raise TypeError("names must be a list of metric names, not a single string")
        chosen = list(names)
        unknown = [name for name in chosen if name not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")
    f = _as_features(features)
    _as_labels(labels, f.shape[0])
    y = np.asarray(labels)
    return {name: METRICS[name](f, y) for name in chosen}
