"""Forward-pass transferability metrics against independent references.

Each reference is written here from the paper's equations, in the plainest form (loops
over classes and samples, explicit inverses and determinants), or is a peer library run
here (scipy, scikit-learn); none shares code with fennec.metrics.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy import linalg as sla
from scipy.stats import spearmanr

from fennec import metrics
from fennec.metrics import (
    METRICS,
    gbc,
    hscore,
    hscore_regularized,
    knn_probe,
    leep,
    logme,
    nce,
    nleep,
    parc,
    score_all,
    sfda,
    transrate,
)


def clustered(rng, n=300, d=20, c=4, separation=1.5):
    """Features with class-dependent means (informative) and pure noise of the same shape."""
    y = np.arange(n) % c
    rng.shuffle(y)
    centers = rng.standard_normal((c, d)) * separation
    informative = centers[y] + rng.standard_normal((n, d))
    noise = rng.standard_normal((n, d))
    return informative, noise, y


def onehot(y, c=None):
    c = int(y.max()) + 1 if c is None else c
    out = np.zeros((len(y), c))
    out[np.arange(len(y)), y] = 1.0
    return out


def softmax_rows(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def logme_reference(f, y, tol, max_iter):
    """Per-class evidence maximisation as written in the paper: A = alpha I + beta F^T F,
    m = beta A^-1 F^T y, gamma = D - alpha tr(A^-1), explicit inverse and log-determinant."""
    n, d = f.shape
    ftf = f.T @ f
    evidences = []
    for c in range(int(y.max()) + 1):
        target = (y == c).astype(float)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            a_inv = np.linalg.inv(alpha * np.eye(d) + beta * ftf)
            m = beta * a_inv @ f.T @ target
            gamma = d - alpha * np.trace(a_inv)
            t_old = alpha / beta
            alpha = gamma / (m @ m)
            beta = (n - gamma) / np.sum((f @ m - target) ** 2)
            if abs(alpha / beta - t_old) <= tol * t_old:
                break
        a = alpha * np.eye(d) + beta * ftf
        m = beta * np.linalg.solve(a, f.T @ target)
        _, logdet = np.linalg.slogdet(a)
        evidence = (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - logdet / 2
                    - beta / 2 * np.sum((f @ m - target) ** 2) - alpha / 2 * (m @ m)
                    - n / 2 * math.log(2 * math.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


@pytest.mark.parametrize("n,d,c", [(150, 12, 3), (40, 60, 4), (64, 64, 2), (200, 30, 7)])
def test_logme_matches_direct_evidence(n, d, c):
    rng = np.random.default_rng(n + d)
    y = np.arange(n) % c
    f = rng.standard_normal((c, d))[y] * 0.7 + rng.standard_normal((n, d))
    expected = logme_reference(f, y, tol=1e-12, max_iter=1000)
    assert logme(f, y, tol=1e-12, max_iter=1000) == pytest.approx(expected, rel=1e-7, abs=1e-9)
    # the default stopping rule changes the value only in the last digits
    assert logme(f, y) == pytest.approx(expected, rel=1e-3)


def test_logme_rank_deficient_features_match_reference():
    """Duplicated columns: zero singular values, handled through the log-determinant term."""
    rng = np.random.default_rng(3)
    y = np.arange(90) % 3
    base = rng.standard_normal((3, 8))[y] + rng.standard_normal((90, 8))
    f = np.hstack([base, base[:, :4]])
    expected = logme_reference(f, y, tol=1e-12, max_iter=1000)
    assert logme(f, y, tol=1e-12, max_iter=1000) == pytest.approx(expected, rel=1e-6)


def test_logme_separable_features_beat_noise_and_more_separation_scores_higher():
    rng = np.random.default_rng(0)
    y = np.arange(400) % 5
    noise = rng.standard_normal((400, 32))
    scores = [logme(rng.standard_normal((5, 32))[y] * s + noise, y) for s in (0.0, 0.5, 2.0)]
    assert scores[0] < scores[1] < scores[2]


def leep_reference(theta, y):
    n, z_count = theta.shape
    c_count = int(y.max()) + 1
    joint = np.zeros((c_count, z_count))
    for i in range(n):
        joint[y[i]] += theta[i] / n
    cond = joint / joint.sum(axis=0)
    return sum(math.log(sum(cond[y[i], z] * theta[i, z] for z in range(z_count))) for i in range(n)) / n


def entropy(counter, n):
    return -sum(v / n * math.log(v / n) for v in counter.values())


def test_leep_matches_the_paper_equations():
    rng = np.random.default_rng(1)
    theta = softmax_rows(rng.standard_normal((60, 7)) * 2)
    y = rng.integers(0, 3, 60)
    assert leep(theta, y) == pytest.approx(leep_reference(theta, y), rel=1e-12)


def test_leep_with_uninformative_source_is_minus_label_entropy():
    """theta constant: P(y | z) = P(y), so LEEP = (1/N) sum_i log P(y_i) = -H(Y)."""
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    theta = np.full((10, 4), 0.25)
    assert leep(theta, y) == pytest.approx(-entropy(Counter(y.tolist()), 10), rel=1e-12)


def test_leep_with_one_hot_source_equals_nce():
    """Hard source predictions make EEP = P(y_i | z_i): LEEP reduces to NCE (Nguyen et al.)."""
    rng = np.random.default_rng(2)
    z = rng.integers(0, 5, 80)
    y = (z + rng.integers(0, 2, 80)) % 3
    assert leep(onehot(z, 5), y) == pytest.approx(nce(z, y), rel=1e-12)


def test_nce_on_hand_tables():
    assert nce([0, 0, 1, 1], [0, 0, 1, 1]) == pytest.approx(0.0, abs=1e-15)  # Z determines Y
    assert nce([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-math.log(2))  # Z says nothing
    # z=0 -> y in {0, 0, 1}, z=1 -> y = 1: H(Y|Z) = 3/4 H(2/3, 1/3)
    expected = -0.75 * -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert nce([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(expected)


def test_nce_is_mutual_information_minus_label_entropy():
    rng = np.random.default_rng(4)
    z = rng.integers(0, 6, 200)
    y = (z // 2 + (rng.random(200) < 0.3)) % 4
    n = len(y)
    h_y = entropy(Counter(y.tolist()), n)
    h_z = entropy(Counter(z.tolist()), n)
    h_yz = entropy(Counter(zip(y.tolist(), z.tolist())), n)
    mutual_information = h_y + h_z - h_yz
    assert nce(z, y) == pytest.approx(mutual_information - h_y, rel=1e-12)


def test_nce_accepts_probabilities_through_their_argmax():
    rng = np.random.default_rng(5)
    theta = softmax_rows(rng.standard_normal((50, 9)))
    y = rng.integers(0, 3, 50)
    assert nce(theta, y) == nce(np.argmax(theta, axis=1), y)
    # source labels need not be contiguous
    assert nce(np.argmax(theta, axis=1) * 10 + 3, y) == pytest.approx(nce(theta, y), rel=1e-15)


def test_leep_and_nce_rank_an_informative_source_above_a_random_one():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 4, 300)
    informative = softmax_rows(3 * onehot(y, 4) @ rng.standard_normal((4, 10)) + rng.standard_normal((300, 10)))
    random = softmax_rows(rng.standard_normal((300, 10)))
    assert leep(informative, y) > leep(random, y)
    assert nce(informative, y) > nce(random, y)


def hscore_reference(f, y, rcond=1e-15):
    cov_f = np.cov(f, rowvar=False)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    cov_g = np.cov(g, rowvar=False)
    return float(np.trace(np.linalg.pinv(cov_f, rcond=rcond) @ cov_g))


@pytest.mark.parametrize("n,d", [(300, 20), (100, 99)])
def test_hscore_matches_pinv_closed_form(n, d):
    rng = np.random.default_rng(n)
    f, _, y = clustered(rng, n=n, d=d, c=5, separation=0.5)
    assert hscore(f, y) == pytest.approx(hscore_reference(f, y), rel=1e-8)


def test_hscore_with_fewer_samples_than_dimensions_matches_pinv():
    """N < D: cov(f) has rank N - 1; with a cutoff well above rounding both agree."""
    rng = np.random.default_rng(8)
    f, _, y = clustered(rng, n=40, d=70, c=3)
    assert hscore(f, y, rcond=1e-10) == pytest.approx(hscore_reference(f, y, rcond=1e-10), rel=1e-7)


def test_hscore_rank_deficient_features_use_the_pseudo_inverse():
    rng = np.random.default_rng(9)
    f, _, y = clustered(rng, n=200, d=10, c=3)
    wide = np.hstack([f, f[:, :3] * 2.0])  # rank 10 in 13 columns
    assert hscore(wide, y, rcond=1e-10) == pytest.approx(hscore_reference(wide, y, rcond=1e-10), rel=1e-7)


def test_hscore_is_invariant_to_invertible_linear_maps():
    rng = np.random.default_rng(10)
    f, _, y = clustered(rng, n=250, d=15, c=4)
    mixing = rng.standard_normal((15, 15)) + 3 * np.eye(15)
    assert hscore(f @ mixing + 5.0, y) == pytest.approx(hscore(f, y), rel=1e-8)


@pytest.mark.parametrize("n,d", [(300, 20), (50, 120)])
def test_hscore_regularized_matches_ledoit_wolf_peer(n, d):
    sk_cov = pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(d)
    f, _, y = clustered(rng, n=n, d=d, c=4, separation=0.7)
    estimator = sk_cov.LedoitWolf().fit(f)
    shrink = estimator.shrinkage_
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    cov_g = np.cov(g, rowvar=False, bias=True)
    expected = np.trace(np.linalg.inv(estimator.covariance_) @ ((1 - shrink) * cov_g))
    assert metrics._ledoit_wolf_shrinkage(f - f.mean(axis=0)) == pytest.approx(shrink, rel=1e-10)
    assert hscore_regularized(f, y) == pytest.approx(expected, rel=1e-8)


def test_hscore_regularized_is_finite_and_informative_when_n_is_below_d():
    rng = np.random.default_rng(11)
    informative, noise, y = clustered(rng, n=60, d=200, c=3, separation=0.5)
    assert np.isfinite(hscore_regularized(informative, y))
    assert hscore_regularized(informative, y) > hscore_regularized(noise, y)


def sfda_reference(f, y, self_challenging=True, log=False):
    """Fisher projection from the generalized eigenproblem (S_b, S_w'), truncated to C - 1
    axes, a Gaussian classifier with identity covariance in that space, ConfMix, refit."""
    classes = np.unique(y)
    c = len(classes)

    def fit_predict(x, shrinkage):
        n, d = x.shape
        priors = np.array([np.mean(y == k) for k in classes])
        means = np.array([x[y == k].mean(axis=0) for k in classes])
        s_w = sum(p * np.cov(x[y == k], rowvar=False, bias=True) for p, k in zip(priors, classes))
        if shrinkage is None:
            shrinkage = max(math.exp(-5 * np.linalg.eigvalsh(s_w)[-1]), 1e-10)
        s_w = (1 - shrinkage) * s_w + shrinkage * np.trace(s_w) / d * np.eye(d)
        mean = x.mean(axis=0)
        s_b = sum(p * np.outer(m - mean, m - mean) for p, m in zip(priors, means))
        evals, evecs = sla.eigh(s_b, s_w)
        axes = evecs[:, np.argsort(evals)[::-1][: c - 1]]
        projected, projected_means = x @ axes, means @ axes
        logits = np.array([[-0.5 * np.sum((row - mu) ** 2) + math.log(p) for mu, p in zip(projected_means, priors)]
                           for row in projected])
        return softmax_rows(logits), means, shrinkage

    probs, means, shrinkage = fit_predict(f, None)
    if self_challenging:
        soft = softmax_rows(probs)
        mixed = f.copy()
        for i in range(len(y)):
            others = np.mean([means[k] for k in range(c) if k != y[i]], axis=0)
            mixed[i] = soft[i, y[i]] * f[i] + (1 - soft[i, y[i]]) * others
        probs, _, _ = fit_predict(mixed, shrinkage)
    true = probs[np.arange(len(y)), y]
    return float(np.mean(np.log(true)) if log else np.mean(true))


@pytest.mark.parametrize("scale", [0.05, 1.0])  # small features: shrinkage well above its floor
@pytest.mark.parametrize("self_challenging", [True, False])
def test_sfda_matches_fisher_space_reference(scale, self_challenging):
    rng = np.random.default_rng(12)
    f, _, y = clustered(rng, n=200, d=10, c=4, separation=0.6)
    f = f * scale
    expected = sfda_reference(f, y, self_challenging)
    assert sfda(f, y, self_challenging=self_challenging) == pytest.approx(expected, rel=1e-8)
    assert sfda(f, y, self_challenging=self_challenging, log=True) == pytest.approx(
        sfda_reference(f, y, self_challenging, log=True), rel=1e-8)


def test_sfda_largest_eigenvalue_uses_lanczos_on_wide_features():
    rng = np.random.default_rng(13)
    a = rng.standard_normal((80, 40))
    sym = a.T @ a / 80
    assert metrics._largest_eigenvalue(sym) == pytest.approx(np.linalg.eigvalsh(sym)[-1], rel=1e-10)


def gbc_reference(f, y):
    stats = []
    for c in np.unique(y):
        rows = f[y == c]
        stats.append((rows.mean(axis=0), np.diag(np.maximum(rows.var(axis=0), 1e-4))))
    total = 0.0
    for i, (mu1, s1) in enumerate(stats):
        for j, (mu2, s2) in enumerate(stats):
            if i == j:
                continue
            s = (s1 + s2) / 2
            diff = mu1 - mu2
            distance = diff @ np.linalg.inv(s) @ diff / 8 + 0.5 * math.log(
                np.linalg.det(s) / math.sqrt(np.linalg.det(s1) * np.linalg.det(s2)))
            total += math.exp(-distance)
    return -total


def test_gbc_matches_bhattacharyya_reference():
    rng = np.random.default_rng(14)
    f, _, y = clustered(rng, n=240, d=12, c=4, separation=0.4)
    assert gbc(f, y) == pytest.approx(gbc_reference(f, y), rel=1e-10)


def test_gbc_of_identical_classes_is_minimal_and_separated_classes_near_zero():
    rng = np.random.default_rng(15)
    rows = rng.standard_normal((50, 6))
    same = np.vstack([rows, rows, rows])
    y = np.repeat([0, 1, 2], 50)
    assert gbc(same, y) == pytest.approx(-6.0, rel=1e-12)  # C (C - 1) ordered pairs, each BC = 1
    apart = same + 100.0 * np.repeat(np.eye(3, 6), 50, axis=0)
    assert gbc(apart, y) == pytest.approx(0.0, abs=1e-12)


def test_gbc_reduces_wide_features_with_pca_like_the_peer():
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(16)
    y = np.arange(300) % 3
    # a decaying spectrum, so the 64 leading axes are well defined
    f = (rng.standard_normal((3, 90))[y] * 0.3 + rng.standard_normal((300, 90))) * np.linspace(3, 0.2, 90)
    scores = decomposition.PCA(n_components=64).fit_transform(f)
    assert gbc(f, y) == pytest.approx(gbc_reference(scores, y), rel=1e-8)


def coding_rate_reference(z, eps):
    n, d = z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + z.T @ z / (n * eps))[1]


@pytest.mark.parametrize("n,d,eps", [(200, 10, 1e-4), (60, 40, 1e-4), (90, 5, 0.5)])
def test_transrate_matches_logdet_formula(n, d, eps):
    rng = np.random.default_rng(n * d)
    f, _, y = clustered(rng, n=n, d=d, c=3)
    z = f - f.mean(axis=0)
    expected = coding_rate_reference(z, eps) - np.mean([coding_rate_reference(z[y == c], eps) for c in range(3)])
    assert transrate(f, y, eps=eps) == pytest.approx(expected, rel=1e-9)


def test_parc_matches_spearman_on_upper_triangles():
    rng = np.random.default_rng(17)
    f, _, y = clustered(rng, n=120, d=8, c=4, separation=0.5)
    standardized = (f - f.mean(axis=0)) / f.std(axis=0)
    feature_rdm = 1 - np.corrcoef(standardized)
    # rounded: corrcoef leaves last-bit differences between equal dissimilarities, which
    # would split tied ranks
    label_rdm = np.round(1 - np.corrcoef(onehot(y)), 12)
    upper = np.triu_indices(len(y), 1)
    expected = spearmanr(feature_rdm[upper], label_rdm[upper])[0]
    assert parc(f, y) == pytest.approx(expected, rel=1e-9)


def test_parc_reduces_wide_features_to_the_signed_principal_axes():
    rng = np.random.default_rng(18)
    f, _, y = clustered(rng, n=150, d=50, c=3)
    standardized = (f - f.mean(axis=0)) / f.std(axis=0)
    reduced = metrics._pca(standardized, 32)
    upper = np.triu_indices(len(y), 1)
    label_rdm = np.round(1 - np.corrcoef(onehot(y)), 12)
    expected = spearmanr((1 - np.corrcoef(reduced))[upper], label_rdm[upper])[0]
    assert parc(f, y) == pytest.approx(expected, rel=1e-9)


def test_parc_is_invariant_to_per_dimension_affine_scaling():
    rng = np.random.default_rng(19)
    f, _, y = clustered(rng, n=100, d=40, c=3)
    scaled = f * rng.uniform(0.5, 5.0, 40) + rng.standard_normal(40)
    assert parc(scaled, y) == pytest.approx(parc(f, y), rel=1e-9)


def test_parc_subsamples_large_inputs_deterministically():
    rng = np.random.default_rng(20)
    f, _, y = clustered(rng, n=500, d=8, c=5)
    chosen = metrics._subsample(y, 200, seed=3)
    assert np.array_equal(np.unique(y[chosen]), np.arange(5))
    assert abs(len(chosen) - 200) <= 5
    assert parc(f, y, max_samples=200, seed=3) == pytest.approx(parc(f[chosen], y[chosen]), rel=1e-12)
    assert parc(f, y, max_samples=200, seed=3) == parc(f, y, max_samples=200, seed=3)


def test_pca_matches_peer_up_to_sign():
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(21)
    for shape in [(300, 200), (150, 400)]:  # feature-side and sample-side Gram, Lanczos path
        f = rng.standard_normal(shape) * np.linspace(4, 0.1, shape[1])
        ours = metrics._pca(f, 20)
        peer = decomposition.PCA(n_components=20).fit_transform(f)
        assert np.allclose(np.abs(ours), np.abs(peer), atol=1e-7)
        full = metrics._pca(f, 0.8)  # dense path, variance fraction
        ratio = decomposition.PCA().fit(f).explained_variance_ratio_
        assert full.shape[1] == int(np.searchsorted(np.cumsum(ratio), 0.8)) + 1


def knn_reference(f, y, k):
    x = f / np.linalg.norm(f, axis=1, keepdims=True)
    correct = 0
    for i in range(len(y)):
        sims = sorted(((float(x[i] @ x[j]), j) for j in range(len(y)) if j != i), reverse=True)[:k]
        votes = Counter(int(y[j]) for _, j in sims)
        weight = Counter()
        for s, j in sims:
            weight[int(y[j])] += s
        top = max(votes.values())
        tied = [c for c in votes if votes[c] == top]
        best = max(tied, key=lambda c: (weight[c], -c))
        correct += best == y[i]
    return correct / len(y)


@pytest.mark.parametrize("k", [1, 4, 7])
def test_knn_matches_brute_force_loop(k):
    rng = np.random.default_rng(22 + k)
    f, _, y = clustered(rng, n=150, d=6, c=3, separation=0.6)
    assert knn_probe(f, y, k=k) == knn_reference(f, y, k)


def test_knn_is_invariant_to_scaling_each_sample():
    rng = np.random.default_rng(23)
    f, _, y = clustered(rng, n=200, d=10, c=4, separation=0.5)
    assert knn_probe(f * rng.uniform(0.1, 10, (200, 1)), y) == knn_probe(f, y)


def test_gmm_em_matches_peer_from_the_same_start():
    mixture = pytest.importorskip("sklearn.mixture")
    exceptions = pytest.importorskip("sklearn.exceptions")
    rng = np.random.default_rng(24)
    x = np.vstack([rng.standard_normal((100, 3)) * s + m for s, m in [(0.5, 0), (1.0, 4), (0.3, -3)]])
    weights = np.full(3, 1 / 3)
    means = x[[0, 150, 250]]
    variances = np.ones((3, 3))
    ours = metrics._gmm_diag_em(x, weights, means, variances, max_iter=15, tol=0.0, reg_covar=1e-6)
    peer = mixture.GaussianMixture(3, covariance_type="diag", max_iter=15, tol=0.0, reg_covar=1e-6,
                                   weights_init=weights, means_init=means, precisions_init=1 / variances)
    with pytest.warns(exceptions.ConvergenceWarning):
        peer.fit(x)
    assert ours[4] == 15
    assert np.allclose(ours[1], peer.means_, rtol=1e-9, atol=1e-9)
    assert np.allclose(ours[2], peer.covariances_, rtol=1e-9, atol=1e-9)
    assert np.allclose(ours[3], peer.predict_proba(x), atol=1e-9)


def test_nleep_is_leep_on_mixture_posteriors_and_deterministic():
    rng = np.random.default_rng(25)
    f, _, y = clustered(rng, n=200, d=12, c=4)
    reduced = metrics._pca(f, 0.8)
    posteriors = metrics._gmm_diag(reduced, 20, 7)
    assert np.allclose(posteriors.sum(axis=1), 1.0)
    assert nleep(f, y, seed=7) == pytest.approx(leep(posteriors, y), rel=1e-12)
    assert nleep(f, y, seed=7) == nleep(f, y, seed=7)
    assert nleep(f, y, n_components=3, seed=1) <= 0.0


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_ranks_informative_features_above_noise(name):
    rng = np.random.default_rng(26)
    informative, noise, y = clustered(rng, n=240, d=16, c=4, separation=0.8)
    assert METRICS[name](informative, y) > METRICS[name](noise, y)


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_is_deterministic_and_invariant_to_relabelling(name):
    rng = np.random.default_rng(27)
    f, _, y = clustered(rng, n=180, d=12, c=4, separation=0.6)
    first = METRICS[name](f, y)
    assert METRICS[name](f, y) == first
    permuted = np.array([2, 0, 3, 1])[y]
    assert METRICS[name](f, permuted) == pytest.approx(first, rel=1e-8, abs=1e-12)
    # the class indices present, not their values, define the classes
    assert METRICS[name](f, (permuted * 5 + 1).astype(float)) == pytest.approx(first, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_accepts_float32_features_and_list_labels(name):
    rng = np.random.default_rng(28)
    f, _, y = clustered(rng, n=120, d=8, c=3)
    f32 = f.astype(np.float32)
    assert METRICS[name](f32, y.tolist()) == pytest.approx(METRICS[name](f32.astype(np.float64), y), rel=1e-12)


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_survives_degenerate_features(name):
    """Constant and duplicated features: a finite number, not a crash or a warning."""
    y = np.arange(60) % 3
    constant = np.ones((60, 5))
    assert np.isfinite(METRICS[name](constant, y))
    rng = np.random.default_rng(29)
    column = rng.standard_normal((60, 1))
    assert np.isfinite(METRICS[name](np.hstack([column] * 4), y))


def test_score_all_runs_every_metric_in_order():
    rng = np.random.default_rng(30)
    f, _, y = clustered(rng, n=100, d=8, c=3)
    scores = score_all(f, y)
    assert list(scores) == list(METRICS)
    assert all(isinstance(v, float) for v in scores.values())
    assert scores["logme"] == logme(f, y)
    assert score_all(f, y, names=["knn", "gbc"]) == {"knn": knn_probe(f, y), "gbc": gbc(f, y)}


FEATURE_METRICS = [pytest.param(fn, id=name) for name, fn in METRICS.items()]


@pytest.mark.parametrize("fn", FEATURE_METRICS)
@pytest.mark.parametrize("features,labels,error,match", [
    (np.array([[0.0, np.nan], [1.0, 2.0], [3.0, 4.0]]), [0, 1, 1], ValueError, "features contains NaN"),
    (np.array([[0.0, np.inf], [1.0, 2.0], [3.0, 4.0]]), [0, 1, 1], ValueError, "features contains NaN or inf"),
    (np.ones(6), [0, 1, 0, 1, 0, 1], ValueError, "features must be 2-D"),
    (np.ones((1, 3)), [0], ValueError, "features needs at least 2 rows"),
    (np.ones((4, 2)), [0, 1, 1], ValueError, "labels has 3 entries but features has 4"),
    (np.ones((4, 2)), [1, 1, 1, 1], ValueError, "at least 2 classes"),
    (np.ones((4, 2)), [0, -1, 1, 1], ValueError, "labels must be class indices"),
    (np.ones((4, 2)), [0, 0.5, 1, 1], ValueError, "labels must hold integer"),
    (np.ones((4, 2)), [[0, 1], [1, 0]], ValueError, "labels must be 1-D"),
    (np.ones((4, 2)), ["a", "b", "a", "b"], TypeError, "labels must be integer"),
    (np.array([["a", "b"], ["c", "d"]]), [0, 1], TypeError, "features must be a 2-D numeric"),
])
def test_metric_rejects_bad_input(fn, features, labels, error, match):
    with pytest.raises(error, match=match):
        fn(features, labels)


def test_source_output_metrics_reject_bad_input():
    y = [0, 1, 0, 1]
    with pytest.raises(ValueError, match="source_probs rows must sum to 1"):
        leep(np.ones((4, 3)), y)
    with pytest.raises(ValueError, match="source_probs must be probabilities"):
        leep(np.array([[1.5, -0.5]] * 4), y)
    with pytest.raises(ValueError, match="labels has 3 entries but source_probs has 4 rows"):
        leep(np.full((4, 2), 0.5), [0, 1, 0])
    with pytest.raises(ValueError, match="source_labels_or_probs must be N source labels"):
        nce(np.zeros((4, 2, 2)), y)
    with pytest.raises(ValueError, match="source_labels_or_probs must be class indices"):
        nce([0, -2, 1, 1], y)
    with pytest.raises(ValueError, match="labels has 4 entries but source_labels_or_probs has 3"):
        nce([0, 1, 1], y)


def test_parameters_are_checked():
    rng = np.random.default_rng(31)
    f, _, y = clustered(rng, n=60, d=5, c=3)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        transrate(f, y, eps=0.0)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        logme(f, y, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        logme(f, y, max_iter=0)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        knn_probe(f, y, k=0)
    with pytest.raises(ValueError, match="n_components .* cannot exceed"):
        nleep(f, y, n_components=61)
    with pytest.raises(ValueError, match=r"variance must be a finite number in \(0, 1\]"):
        nleep(f, y, variance=2.0)
    with pytest.raises(ValueError, match="max_samples must be an integer >= 1"):
        parc(f, y, max_samples=-1)
    with pytest.raises(TypeError, match="k must be an integer >= 1, got 2.0"):
        knn_probe(f, y, k=2.0)
    with pytest.raises(TypeError, match="max_iter must be an integer"):
        logme(f, y, max_iter=True)
    with pytest.raises(TypeError, match="eps must be a number"):
        transrate(f, y, eps="small")
    with pytest.raises(ValueError, match="unknown metric"):
        score_all(f, y, names=["logme", "leep"])
    with pytest.raises(TypeError, match="names must be a list"):
        score_all(f, y, names="logme")
    with pytest.raises(ValueError, match="same class and from different classes"):
        parc(f[:3], [0, 1, 2])


def test_average_ranks_match_scipy_rankdata_with_ties():
    from scipy.stats import rankdata

    rng = np.random.default_rng(32)
    for values in [rng.standard_normal(50), rng.integers(0, 6, 80).astype(float)]:
        ranks_sorted, order = metrics._average_ranks_sorted(values)
        ranks = np.empty_like(ranks_sorted)
        ranks[order] = ranks_sorted
        assert np.array_equal(ranks, rankdata(values))


@pytest.mark.parametrize("n", [1, 2, 3, 40])
def test_eigen_coordinates_match_a_full_eigendecomposition(n):
    rng = np.random.default_rng(33 + n)
    a = rng.standard_normal((n + 5, n))
    sym = a.T @ a
    if n == 40:
        sym = sym @ np.diag([1.0] * 30 + [0.0] * 10) @ sym  # rank deficient
    rhs = rng.standard_normal((n, 3))
    lam, coords = metrics._eigen_coordinates(sym, rhs)
    ref_lam, ref_vec = np.linalg.eigh(sym)
    assert np.allclose(lam, np.clip(ref_lam[::-1], 0, None), atol=1e-9 * ref_lam.max())
    # coordinates are defined up to the sign of each eigenvector; squared, they are not
    strong = ref_lam[::-1] > 1e-6 * ref_lam.max()
    assert np.allclose(np.square(coords)[strong], np.square(ref_vec[:, ::-1].T @ rhs)[strong], rtol=1e-6, atol=1e-9)
    assert np.allclose(np.square(coords).sum(axis=0), np.square(rhs).sum(axis=0))


def test_leep_with_many_target_classes_takes_the_gather_path():
    rng = np.random.default_rng(34)
    y = np.arange(400) % 80  # more classes than the matmul path handles
    theta = softmax_rows(rng.standard_normal((400, 12)))
    assert leep(theta, y) == pytest.approx(leep_reference(theta, y), rel=1e-12)


def test_knn_in_row_blocks_matches_brute_force(monkeypatch):
    monkeypatch.setattr(metrics, "_KNN_BLOCK", 4 * 150 * 7)  # blocks of 7 rows
    rng = np.random.default_rng(35)
    f, _, y = clustered(rng, n=150, d=6, c=3, separation=0.6)
    assert knn_probe(f, y, k=5) == knn_reference(f, y, 5)


def test_many_classes_take_the_sorted_class_sums_path():
    rng = np.random.default_rng(36)
    f, _, y = clustered(rng, n=700, d=5, c=70, separation=1.0)
    assert gbc(f, y) == pytest.approx(gbc_reference(f, y), rel=1e-10)
    assert hscore(f, y) == pytest.approx(hscore_reference(f, y), rel=1e-8)
