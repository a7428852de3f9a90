"""Forward-pass transferability metrics on 2,000 x 1,024 features of 10 classes, each beside its peer.

One candidate model's features on one target task: what a baseline costs per model in a
zoo. Each fennec metric sits in a group with the computation the field would otherwise
run, written here in the form of the authors' releases or taken from scikit-learn/scipy,
and each benchmark asserts that both agree:

logme       per-class loop after an SVD of F^T F (the released algorithm), and a
            scikit-learn logistic-regression linear probe (what a user would fit instead)
nleep       scikit-learn PCA(0.8) + GaussianMixture(diag); a different EM start, so the
            two agree loosely
hscore(_reg) numpy covariance + pinv; scikit-learn Ledoit-Wolf + pinv
sfda        generalized eigenproblem (S_b, S_w') over all D axes, as released
gbc         scikit-learn PCA(64) + a loop over class pairs
transrate   D x D log-determinants per class
parc        scikit-learn PCA(32) + numpy corrcoef + scipy spearmanr
knn         scikit-learn brute-force cosine neighbours
leep, nce   one-hot matmul; scikit-learn mutual information (1,000 source classes)

Features have a decaying spectrum (as real ones do) so that PCA axes are well defined,
and the peers' PCA uses an exact solver (scikit-learn's default would pick a randomized
one here). BLAS runs on one thread on both sides (threadpoolctl): on a shared 2-core
machine a second BLAS thread makes dense eigensolvers many times slower, not faster.
Each benchmark stores the process (CPU) time per call in extra_info; the ratios to the
peers are printed with the session's table (bench/conftest.py).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import linalg as sla
from scipy.special import softmax
from scipy.stats import spearmanr

from fennec import metrics

sklearn = pytest.importorskip("sklearn")
threadpoolctl = pytest.importorskip("threadpoolctl")
from sklearn.covariance import LedoitWolf  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import mutual_info_score  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.neighbors import NearestNeighbors  # noqa: E402

N, D, C, Z = 2000, 1024, 10, 1000
ROUNDS = 3

_MEDIANS: dict[str, float] = {}
_CPU: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    labels = np.arange(N) % C
    rng.shuffle(labels)
    scale = 1.0 / (1.0 + np.arange(D) / 16.0)
    features = ((rng.standard_normal((C, D)) * 0.12)[labels] + rng.standard_normal((N, D))) * scale
    source_probs = softmax(features @ rng.standard_normal((D, Z)) * 0.2, axis=1)
    return features, labels, source_probs


def run(benchmark, name, fn, args, rounds=ROUNDS, kwargs=None):
    start = time.process_time()
    result = benchmark.pedantic(fn, args=args, kwargs=kwargs or {}, rounds=rounds, warmup_rounds=0)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None under --benchmark-disable, which runs fn once and times nothing
        _CPU[name] = benchmark.extra_info["cpu_s_per_call"] = (time.process_time() - start) / rounds
        _MEDIANS[name] = stats.stats.median
    return result


def report(extra_report, what, peer, ours):
    if peer in _MEDIANS and ours in _MEDIANS:
        extra_report[f"metrics: {what}"] = (
            f"{_MEDIANS[peer] / _MEDIANS[ours]:5.1f}x  (fennec {_MEDIANS[ours]:.3f} s wall, "
            f"{_CPU[ours]:.3f} s CPU; peer {_MEDIANS[peer]:.3f} s wall)")


def flip_to_largest_positive(pca, scores):
    """fennec's PCA sign convention (largest loading of each axis positive)."""
    comps = pca.components_
    signs = np.sign(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)])
    return scores * signs


def logme_released(f, y, tol=1e-5, max_iter=100):
    """LogME as in the authors' ICML release: an SVD of F^T F, then a loop over classes."""
    n, d = f.shape
    v, s, _ = np.linalg.svd(f.T @ f)
    evidences = []
    for c in range(int(y.max()) + 1):
        target = (y == c).astype(np.float64)
        proj = v.T @ (f.T @ target)
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            t_old = alpha / beta
            gamma = np.sum(s / (s + t_old))
            m = v @ (proj / (t_old + s))
            m2 = m @ m
            res2 = np.sum((f @ m - target) ** 2)
            alpha, beta = gamma / m2, (n - gamma) / res2
            if abs(alpha / beta - t_old) <= tol * t_old:
                break
        t = alpha / beta
        m = v @ (proj / (t + s))
        m2, res2 = m @ m, np.sum((f @ m - target) ** 2)
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * s))
                    - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def linear_probe(f, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 100 lbfgs steps, as a quick probe
        return LogisticRegression(max_iter=100).fit(f, y).score(f, y)


def nleep_sklearn(f, y):
    reduced = PCA(n_components=0.8, svd_solver="covariance_eigh").fit_transform(f)
    posteriors = GaussianMixture(5 * C, covariance_type="diag", random_state=0).fit(reduced).predict_proba(reduced)
    return metrics.leep(posteriors, y)


def class_mean_rows(f, y):
    g = np.empty_like(f)
    for c in range(C):
        g[y == c] = f[y == c].mean(axis=0)
    return g


def hscore_released(f, y):
    cov_g = np.cov(class_mean_rows(f, y), rowvar=False)
    return float(np.trace(np.linalg.pinv(np.cov(f, rowvar=False), rcond=1e-15) @ cov_g))


def hscore_reg_released(f, y):
    estimator = LedoitWolf().fit(f)
    cov_g = np.cov(class_mean_rows(f, y), rowvar=False, bias=True)
    return float(np.trace(np.linalg.pinv(estimator.covariance_, rcond=1e-15) @ ((1 - estimator.shrinkage_) * cov_g)))


def sfda_released(f, y):
    """Fisher axes from the generalized eigenproblem over all D axes, then ConfMix and a refit."""

    def fit_predict(x, shrinkage):
        n, d = x.shape
        priors = np.bincount(y) / n
        means = np.array([x[y == c].mean(axis=0) for c in range(C)])
        s_w = sum(p * np.cov(x[y == c], rowvar=False, bias=True) for c, p in enumerate(priors))
        if shrinkage is None:
            shrinkage = max(np.exp(-5 * sla.eigh(s_w, eigvals_only=True, subset_by_index=[d - 1, d - 1])[0]), 1e-10)
        s_w = (1 - shrinkage) * s_w + shrinkage * np.trace(s_w) / d * np.eye(d)
        s_b = np.cov(x, rowvar=False, bias=True) - sum(p * np.cov(x[y == c], rowvar=False, bias=True)
                                                      for c, p in enumerate(priors))
        _, axes = sla.eigh(s_b, s_w)
        coef = means @ axes @ axes.T
        logits = x @ coef.T - 0.5 * np.sum(means * coef, axis=1) + np.log(priors)
        return softmax(logits, axis=1), means, shrinkage

    probs, means, shrinkage = fit_predict(f, None)
    confidence = softmax(probs, axis=1)[np.arange(len(y)), y][:, None]
    others = (means.sum(axis=0) - means) / (C - 1)
    probs, _, _ = fit_predict(confidence * f + (1 - confidence) * others[y], shrinkage)
    return float(np.mean(probs[np.arange(len(y)), y]))


def gbc_sklearn(f, y):
    x = PCA(n_components=64, svd_solver="covariance_eigh").fit_transform(f)
    means = [x[y == c].mean(axis=0) for c in range(C)]
    variances = [np.maximum(x[y == c].var(axis=0), 1e-4) for c in range(C)]
    total = 0.0
    for i in range(C):
        for j in range(C):
            if i != j:
                avg = (variances[i] + variances[j]) / 2
                distance = (np.sum((means[i] - means[j]) ** 2 / avg) / 8 + 0.5 * (
                    np.sum(np.log(avg)) - 0.5 * np.sum(np.log(variances[i])) - 0.5 * np.sum(np.log(variances[j]))))
                total += np.exp(-distance)
    return -total


def transrate_released(f, y, eps=1e-4):
    def rate(z):
        return 0.5 * np.linalg.slogdet(np.eye(z.shape[1]) + z.T @ z / (len(z) * eps))[1]

    z = f - f.mean(axis=0)
    return rate(z) - np.mean([rate(z[y == c]) for c in range(C)])


def parc_scipy(f, y):
    standardized = (f - f.mean(axis=0)) / f.std(axis=0)
    pca = PCA(n_components=32, svd_solver="covariance_eigh").fit(standardized)
    reduced = flip_to_largest_positive(pca, pca.transform(standardized))
    upper = np.triu_indices(len(y), 1)
    onehot = np.eye(C)[y]
    # rounded: corrcoef leaves last-bit differences between equal label dissimilarities
    return spearmanr((1 - np.corrcoef(reduced))[upper], np.round(1 - np.corrcoef(onehot), 12)[upper])[0]


def knn_sklearn(f, y, k=10):
    sims, idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(f).kneighbors(f)
    sims, idx = 1 - sims[:, 1:], idx[:, 1:]  # the first neighbour is the sample itself
    correct = 0
    for i in range(len(y)):
        votes = np.bincount(y[idx[i]], minlength=C)
        weight = np.bincount(y[idx[i]], weights=sims[i], minlength=C)
        correct += np.argmax(np.where(votes == votes.max(), weight, -np.inf)) == y[i]
    return correct / len(y)


def leep_onehot_matmul(probs, y):
    onehot = np.eye(C)[y]
    joint = onehot.T @ probs / len(y)
    conditional = joint / joint.sum(axis=0)
    return float(np.mean(np.log((probs @ conditional.T)[np.arange(len(y)), y])))


def nce_sklearn(probs, y):
    z = np.argmax(probs, axis=1)
    label_entropy = -np.sum(np.bincount(y) / len(y) * np.log(np.bincount(y) / len(y)))
    return mutual_info_score(y, z) - label_entropy


@dataclass(frozen=True)
class Peer:
    bench: str  # benchmark name
    fn: Callable
    label: str  # "logme vs <label>" in the ratio table
    agree: dict | None  # pytest.approx tolerances against fennec's value ({}: equal); None: not the same quantity
    rounds: int = 1
    check: Callable[[float], bool] = lambda value: True


@dataclass(frozen=True)
class Case:
    name: str
    fn: Callable
    check: Callable[[float], bool]  # a sanity bound on fennec's value
    peers: tuple[Peer, ...]
    probs: bool = False  # source-model probabilities (leep, nce) instead of features


CASES = [
    Case("logme", metrics.logme, np.isfinite,
         (Peer("released_logme", logme_released, "released per-class loop", {"rel": 1e-6}),
          Peer("linear_probe", linear_probe, "fitting a linear probe", None, check=lambda v: v > 1.5 / C))),
    # different k-means starts: the same quantity, a different local optimum of the mixture
    Case("nleep", metrics.nleep, lambda v: np.log(1 / C) < v <= 0,
         (Peer("sklearn_nleep", nleep_sklearn, "scikit-learn PCA + GaussianMixture", {"abs": 0.1}),)),
    Case("hscore", metrics.hscore, lambda v: v > 0,
         (Peer("numpy_hscore", hscore_released, "numpy cov + pinv", {"rel": 1e-6}),)),
    Case("hscore_reg", metrics.hscore_regularized, lambda v: v > 0,
         (Peer("sklearn_hscore_reg", hscore_reg_released, "scikit-learn Ledoit-Wolf + pinv", {"rel": 1e-6}),)),
    Case("sfda", metrics.sfda, lambda v: 1 / C < v <= 1,
         (Peer("released_sfda", sfda_released, "generalized eigenproblem", {"rel": 1e-6}),)),
    Case("gbc", metrics.gbc, lambda v: -C * (C - 1) < v <= 0,
         (Peer("sklearn_gbc", gbc_sklearn, "scikit-learn PCA + pair loop", {"rel": 1e-6}),)),
    Case("transrate", metrics.transrate, lambda v: v > 0,
         (Peer("released_transrate", transrate_released, "D x D log-determinants", {"rel": 1e-9}),)),
    Case("parc", metrics.parc, lambda v: 0 < v <= 1,
         (Peer("scipy_parc", parc_scipy, "scikit-learn PCA + scipy spearmanr", {"rel": 1e-6}),)),
    Case("knn", metrics.knn_probe, lambda v: 1 / C < v <= 1,
         (Peer("sklearn_knn", knn_sklearn, "scikit-learn brute-force neighbours", {}),)),
    Case("leep", metrics.leep, lambda v: np.log(1 / C) - 0.1 < v < 0,
         (Peer("numpy_leep", leep_onehot_matmul, "one-hot matmul", {"rel": 1e-9}, rounds=ROUNDS),), probs=True),
    Case("nce", metrics.nce, lambda v: v < 0,
         (Peer("sklearn_nce", nce_sklearn, "scikit-learn mutual information", {"rel": 1e-9}, rounds=ROUNDS),),
         probs=True),
]


def _inputs(case, task):
    features, labels, probs = task
    return (probs if case.probs else features, labels)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fennec_metric(benchmark, task, case):
    benchmark.group = f"metric-{case.name}"
    assert case.check(run(benchmark, f"fennec_{case.name}", case.fn, _inputs(case, task)))


@pytest.mark.parametrize("case, peer", [pytest.param(c, p, id=p.bench) for c in CASES for p in c.peers])
def test_peer_metric(benchmark, task, extra_report, case, peer):
    benchmark.group = f"metric-{case.name}"
    args = _inputs(case, task)
    value = run(benchmark, peer.bench, peer.fn, args, rounds=peer.rounds)
    assert peer.check(value)
    if peer.agree is not None:
        assert case.fn(*args) == (pytest.approx(value, **peer.agree) if peer.agree else value)
    report(extra_report, f"{case.name} vs {peer.label}", peer.bench, f"fennec_{case.name}")


@pytest.mark.benchmark(group="metric-all")
def test_fennec_score_all(benchmark, task, extra_report):
    features, labels, _ = task
    start = time.process_time()
    scores = benchmark.pedantic(metrics.score_all, args=(features, labels), rounds=1, warmup_rounds=0)
    if getattr(benchmark, "stats", None) is not None:  # None under --benchmark-disable
        extra_report["metrics: score_all, 9 feature metrics, 2,000 x 1,024"] = (
            f"{benchmark.stats.stats.median:.2f} s wall, {time.process_time() - start:.2f} s CPU")
    assert list(scores) == list(metrics.METRICS) and all(np.isfinite(list(scores.values())))
