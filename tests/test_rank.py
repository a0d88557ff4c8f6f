"""rank: LogME against a per-class transcription of the reference algorithm, LEEP/NCE against their
definitions, every score ordering separable above noise features, and the command end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from transferlab.rank.scores import leep, logme, nce
from wiring import wires


def reference_logme(f: np.ndarray, y: np.ndarray) -> float:
    """A straightforward per-class numpy transcription of the authors' fixed-point LogME (thuml/LogME,
    ``LogME._fit_fixed_point``): SVD of the features, then for each class alpha and beta until t settles."""
    f = f.astype(np.float64)
    n, d = f.shape
    u, s, vh = np.linalg.svd(f, full_matrices=False)
    s = s[s > 1e-10]
    u = u[:, : len(s)]
    sigma = (s**2).reshape(-1, 1)
    evidences = []
    for c in range(int(y.max()) + 1):
        y_ = (y == c).astype(np.float64).reshape(-1, 1)
        x = u.T @ y_
        x2 = x**2
        res_x2 = (y_**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
                    - beta / 2.0 * res2 - alpha / 2.0 * m2 - n / 2.0 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def reference_leep(theta: np.ndarray, y: np.ndarray) -> float:
    """LEEP by its definition, looped (Nguyen et al. 2020, eq. 2)."""
    n, z = theta.shape
    classes = int(y.max()) + 1
    joint = np.zeros((classes, z))
    for i in range(n):
        joint[y[i]] += theta[i] / n
    conditional = joint / joint.sum(0, keepdims=True)
    return float(np.mean([np.log(sum(conditional[y[i], k] * theta[i, k] for k in range(z))) for i in range(n)]))


def reference_nce(z: np.ndarray, y: np.ndarray) -> float:
    n = len(y)
    total = 0.0
    for a in set(z.tolist()):
        for b in set(y.tolist()):
            p_ab = np.sum((z == a) & (y == b)) / n
            if p_ab > 0:
                total += p_ab * np.log(p_ab / (np.sum(z == a) / n))
    return total


@pytest.mark.parametrize("shape", [(60, 12), (12, 40), (200, 30)])
def test_logme_matches_the_per_class_reference_on_a_fixed_random_matrix(shape):
    rng = np.random.default_rng(7)
    n, d = shape
    y = np.arange(n) % 4
    f = rng.normal(size=(n, d)) + 0.8 * np.eye(4)[y] @ rng.normal(size=(4, d))
    assert logme(f, y) == pytest.approx(reference_logme(f, y), rel=1e-8, abs=1e-10)


def test_logme_stops_each_class_at_its_own_iteration():
    """Classes of very different separability settle after different numbers of steps: each keeps its own."""
    rng = np.random.default_rng(11)
    y = np.arange(120) % 3
    strength = np.array([0.0, 0.3, 6.0])[y][:, None]
    f = rng.normal(size=(120, 10)) + strength * np.eye(3)[y] @ rng.normal(size=(3, 10))
    assert logme(f, y) == pytest.approx(reference_logme(f, y), rel=1e-9, abs=1e-12)


def test_leep_and_nce_match_their_definitions():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(40, 6)) * 2
    theta = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 3, 40)
    assert leep(theta, y) == pytest.approx(reference_leep(theta, y), rel=1e-10)
    assert nce(theta, y) == pytest.approx(reference_nce(theta.argmax(1), y), rel=1e-10)


def separable_and_noise(n_per_class: int = 30, classes: int = 4, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    centres = rng.normal(size=(classes, dim)) * 3
    separable = centres[y] + rng.normal(size=(len(y), dim))
    noise = rng.normal(size=(len(y), dim)) * separable.std()
    return separable, noise, y


def test_every_score_puts_separable_features_above_noise():
    separable, noise, y = separable_and_noise()
    assert logme(separable, y) > logme(noise, y) + 0.1
    # a source classifier whose top class follows the target label, against one that ignores it
    informative = np.full((len(y), 10), 0.01)
    informative[np.arange(len(y)), y * 2] = 1.0
    informative /= informative.sum(1, keepdims=True)
    rng = np.random.default_rng(3)
    uninformative = rng.dirichlet(np.ones(10), size=len(y))
    assert leep(informative, y) > leep(uninformative, y) + 0.1
    assert nce(informative, y) > nce(uninformative, y) + 0.1


def blas_threads() -> dict[str, int]:
    from threadpoolctl import threadpool_info

    return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def test_logme_runs_on_one_blas_thread_and_gives_the_threads_back(monkeypatch):
    """As the probes are timed (a busy BLAS pool beside torch's threads cost up to 50x); the limiter is taken from
    one scan of the loaded libraries, so entering it costs microseconds, not the scan's milliseconds."""
    from threadpoolctl import threadpool_limits

    import transferlab.rank.scores as scores

    seen = []
    reduce = scores._tridiagonal
    monkeypatch.setattr(scores, "_tridiagonal", lambda *a: (seen.append(blas_threads()), reduce(*a))[1])
    separable, _, y = separable_and_noise()
    with threadpool_limits(limits=2, user_api="blas"):
        logme(separable, y)
        after = blas_threads()
    assert seen and set(seen[0].values()) == {1}
    assert set(after.values()) == {2}


@wires("RankConfig.backbones", "RankConfig.layers", "RankConfig.poolings", "RankConfig.random_init")
def test_rank_orders_candidates_by_logme_and_reports_every_score(class_folders, cli):
    result = cli("rank", "--data", str(class_folders), "--backbones", "efficientnet_lite0,test_efficientnet",
                 "--random-init", "--layers", "0,1", "--pooling", "avg,max", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    candidates = record["candidates"]
    assert len(candidates) == 2 * 2 * 2  # backbones x layers x poolings
    assert {(c["backbone"], c["pooling"]) for c in candidates} == {
        (b, p) for b in ("efficientnet_lite0", "test_efficientnet") for p in ("avg", "max")}
    by_pooling = {(c["backbone"], c["layer"], c["pooling"]): c["logme"] for c in candidates}
    assert all(by_pooling[(b, layer, "avg")] != by_pooling[(b, layer, "max")] for b, layer, _ in by_pooling)
    scores = [c["logme"] for c in candidates]
    assert scores == sorted(scores, reverse=True)
    assert all(c["knn_accuracy"] is not None and c["logreg_accuracy"] is not None for c in candidates)
    assert all(c["leep"] is None for c in candidates)  # random-init: no ImageNet head
    assert any("LEEP and NCE skipped" in note for note in record["notes"])
    assert record["val_images"] > 0 and "logme" in record["kendall_tau_vs_logreg"]
    assert all(set(c["seconds"]) == {"logme", "knn_accuracy", "logreg_accuracy"} for c in candidates)


@wires("RankConfig.probes")
def test_rank_reads_the_imagenet_head_of_a_pretrained_backbone(class_folders, cli):
    result = cli("rank", "--data", str(class_folders), "--backbones", "efficientnet_lite0", "--layers", "blocks.6",
                 "--no-probes", "--json")
    assert result.returncode == 0, result.stderr
    (candidate,) = json.loads(result.stdout)["candidates"]
    assert candidate["leep"] is not None and candidate["nce"] is not None
    assert candidate["leep"] < 0 and candidate["knn_accuracy"] is None


def test_rank_scores_match_the_features_a_probe_extracts(class_folders, lite0):
    """The layer-set extractor's columns are the single-layer extractor's features."""
    from transferlab.features import FeatureExtractor
    from transferlab.rank.layers import LayerSetExtractor

    paths = sorted(class_folders.rglob("*.png"))[:8]
    both = LayerSetExtractor(lite0, ["1", "3"], pooling="max", logits=True, cache=False)
    blocks = both.split(both.extract(paths))
    for layer in ("1", "3"):
        single = FeatureExtractor(lite0, layer=layer, pooling="max", cache=False).extract(paths).features
        name = lite0.find_feature_layer(layer).name
        np.testing.assert_allclose(blocks[name], single, rtol=1e-4, atol=1e-4)
    logits = FeatureExtractor(lite0, layer="logits", cache=False).extract(paths).features
    np.testing.assert_allclose(blocks["logits"], logits, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("args, message", [
    (["--backbones", ""], "at least one backbone"),
    (["--pooling", "flatten"], "unknown pooling"),
    (["--layers", "99"], "unknown layer"),
    (["--k", "0"], "k"),
])
def test_rank_bad_input_is_one_error_line(class_folders, cli, args, message):
    result = cli("rank", "--data", str(class_folders), "--random-init", "--backbones", "test_efficientnet", *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr


@wires("RankConfig.k", "RankConfig.C")
def test_rank_options_reach_the_probes(class_folders, cli, monkeypatch):
    """--k and --C are what the kNN and logreg probes are built with (observed where the loop builds them)."""
    from transferlab.heads import sklearn_heads

    built = []
    real_knn, real_logreg = sklearn_heads.knn_head, sklearn_heads.logreg_head
    monkeypatch.setattr(sklearn_heads, "knn_head", lambda k=5: built.append(("knn", k)) or real_knn(k))
    monkeypatch.setattr(sklearn_heads, "logreg_head",
                        lambda C=0.1, seed=0: built.append(("logreg", C, seed)) or real_logreg(C, seed))
    result = cli("rank", "--data", str(class_folders), "--backbones", "test_efficientnet", "--random-init",
                 "--layers", "0", "--k", "3", "--C", "2.5", "--seed", "4", "--json")
    assert result.returncode == 0, result.stderr
    assert built == [("knn", 3), ("logreg", 2.5, 4)]
