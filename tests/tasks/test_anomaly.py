"""Anomaly scores and metrics: AUROC/AUPR agree with scikit-learn, the likelihood ratio cancels a shared
background term, typicality batches, OOD data specs, and a toy detection."""

import math

import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

import dgm
from dgm.core.errors import ConfigError, DataError
from dgm.data.dataset import Dataset
from dgm.tasks.anomaly import (
    average_precision,
    detect,
    fpr_at_tpr,
    likelihood_ratio,
    nll_scores,
    ood_metrics,
    perturb,
    roc_auc,
    typicality_scores,
)
from dgm.tasks.sources import load_source, parse_labels, select_labels


@pytest.mark.parametrize("ties", [False, True])
def test_auroc_and_aupr_agree_with_scikit_learn(ties):
    n = int(torch.randint(20, 200, ()))
    labels = torch.randint(2, (n,))
    labels[:2] = torch.tensor([0, 1])
    scores = torch.randn(n) + 0.7 * labels
    if ties:
        scores = scores.round()  # many tied scores
    assert math.isclose(roc_auc(labels, scores), roc_auc_score(labels, scores), abs_tol=1e-12)
    assert math.isclose(
        average_precision(labels, scores), average_precision_score(labels, scores), abs_tol=1e-12
    )
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    assert math.isclose(fpr_at_tpr(labels, scores), fpr[(tpr >= 0.95).argmax()], abs_tol=1e-12)


def test_separable_scores_give_perfect_metrics():
    scores_in, scores_out = torch.rand(50), 2 + torch.rand(30)
    m = ood_metrics(scores_in, scores_out)
    assert m == {"auroc": 1.0, "aupr": 1.0, "fpr95": 0.0}
    assert ood_metrics(scores_out, scores_in)["auroc"] == 0.0


def test_metrics_refuse_bad_input():
    with pytest.raises(DataError, match="both"):
        roc_auc(torch.ones(5), torch.rand(5))
    with pytest.raises(DataError, match="0 .* or 1"):
        average_precision(torch.tensor([0, 2]), torch.rand(2))
    with pytest.raises(DataError, match="NaN"):
        roc_auc(torch.tensor([0, 1]), torch.tensor([0.0, float("nan")]))


def test_likelihood_ratio_cancels_a_shared_background_term():
    D, S = 8, 3  # the first S values differ between the two models; the rest is a shared term
    model = dgm.build("independent", event_shape=(D,))
    background = dgm.build("independent", event_shape=(D,))
    with torch.no_grad():
        model.logits.copy_(torch.randn(D))
        background.logits.copy_(torch.randn(D))
        background.logits[S:] = model.logits[S:]
    x = torch.randint(2, (20, D)).float()
    llr = likelihood_ratio(model, background, x)
    changed = x.clone()
    changed[:, S:] = torch.randint(2, (20, D - S)).float()
    assert torch.allclose(likelihood_ratio(model, background, changed), llr, atol=1e-5)
    # And it is the log-ratio of the differing factors only.
    part = torch.distributions.Bernoulli(logits=model.logits[:S]).log_prob(x[:, :S]).sum(1)
    part -= torch.distributions.Bernoulli(logits=background.logits[:S]).log_prob(x[:, :S]).sum(1)
    assert torch.allclose(llr.float(), part, atol=1e-5)
    with pytest.raises(DataError, match="event shape"):
        likelihood_ratio(model, dgm.build("independent", event_shape=(D + 1,)), x)


def test_a_background_may_model_the_same_values_in_another_layout():
    # A flat model against an image background (the local-PixelCNN background of the benchmark): the
    # flat rows are scored as the images they are, value for value.
    flat = dgm.build("independent", event_shape=(4,))
    image = dgm.build("pixelcnn", event_shape=(1, 2, 2), channels=4, num_layers=0, first_kernel_size=3)
    x = torch.randint(2, (6, 4)).float()
    expected = flat.log_prob(x) - image.log_prob(x.reshape(6, 1, 2, 2))
    assert torch.allclose(likelihood_ratio(flat, image, x).float(), expected.detach(), atol=1e-5)
    report = detect(flat, x, 1 - x, background=image)
    assert "-llr (vs background)" in report.rows


def test_typicality_scores():
    nll = torch.rand(40) * 10
    assert torch.allclose(typicality_scores(nll, 5.0), (nll.double() - 5.0).abs())
    batched = typicality_scores(nll, 5.0, batch_size=8, generator=torch.Generator().manual_seed(0))
    assert batched.shape == (5,)
    # Batch means average the same 40 values: with Ĥ = 0 their mean is the overall mean NLL.
    assert math.isclose(
        float(typicality_scores(nll, 0.0, 8).mean()), float(nll.double().mean()), rel_tol=1e-9
    )
    with pytest.raises(DataError, match="one typicality batch"):
        typicality_scores(nll, 5.0, batch_size=41)


def test_a_fitted_model_detects_a_clearly_different_distribution():
    train = dgm.data.load("digits-binary", "train")
    held_out = dgm.data.load("digits-binary", "test")
    model = dgm.build("independent", event_shape=(64,))
    for _ in model.fit(train):
        pass
    noise = perturb(held_out.x, 0.5, "binary")  # half the pixels replaced by coin flips
    report = detect(model, held_out.x, noise, reference=train.x, typicality_batches=(1, 5), background=model)
    assert report.rows["nll (nats)"]["auroc"] > 0.95
    assert report.rows["bits/dim"]["auroc"] == report.rows["nll (nats)"]["auroc"]
    assert report.rows["-llr (vs background)"]["auroc"] == 0.5  # a model against itself: no information
    assert {"typicality(M=1)", "typicality(M=5)"} <= set(report.rows)
    assert math.isclose(report.entropy, float(nll_scores(model, train.x).mean()))
    assert "AUROC" in report.table()


def test_class_conditional_models_are_scored_by_their_class_marginal():
    model = dgm.build("fvsbn", event_shape=(5,), num_classes=3).eval()
    with torch.no_grad():
        model.bias.normal_()
    x = torch.randint(2, (4, 5)).float()
    per_class = torch.stack([model.log_prob(x, torch.full((4,), c)) for c in range(3)], 1)
    expected = per_class.logsumexp(1) - math.log(3)
    assert torch.allclose(-nll_scores(model, x).float(), expected, atol=1e-5)


# ---------------------------------------------------------------------------- data specs
def _reference():
    x = torch.randint(3, (10, 1, 2, 2)).float()
    return Dataset("toy", "test", x, y=torch.arange(10) % 5, support="categorical(3)", kind="image",
                   image_shape=(1, 2, 2), num_classes=5)  # fmt: skip


def test_transformations_of_reference_data():
    ref = _reference()
    common = {"event_shape": (1, 2, 2), "support": "categorical(3)", "reference": ref}
    inverted = load_source("inverted", **common)
    assert torch.equal(inverted.x, 2 - ref.x)
    rotated = load_source("rotated:angle=180", **common)
    assert torch.equal(rotated.x, ref.x.flip(2, 3))
    assert torch.equal(load_source("flipped", **common).x, ref.x.flip(3))
    noise = load_source("noise:n=7:seed=3", **common)
    assert (
        noise.x.shape == (7, 1, 2, 2)
        and set(noise.x.unique().tolist()) <= {0.0, 1.0, 2.0}
        and noise.y is None
    )
    shuffled = load_source("shuffled", **common)
    assert torch.equal(shuffled.x.reshape(10, -1).sort(1).values, ref.x.reshape(10, -1).sort(1).values)
    blank = load_source("constant", **common)
    assert torch.equal(blank.x, torch.zeros_like(ref.x)) and blank.y is None
    assert torch.equal(load_source("constant:value=2", **common).x, torch.full_like(ref.x, 2.0))
    with pytest.raises(ConfigError, match="constant: value must be a level"):
        load_source("constant:value=5", **common)
    subset = load_source("inverted:digits=1,3", **common)
    assert len(subset) == 4 and set(subset.y.tolist()) == {1, 3}
    flat = load_source("rotated", event_shape=(4,), support="categorical(3)", reference=ref.reshape_to((4,)),
                       image_shape=(1, 2, 2))  # fmt: skip
    assert torch.equal(flat.x, torch.rot90(ref.x, 1, (2, 3)).reshape(10, 4))


def test_dataset_specs_select_digits_and_check_shapes():
    nines = load_source("digits-binary:digits=9", event_shape=(64,), support="binary")
    assert len(nines) > 10 and (nines.y == 9).all()
    assert parse_labels("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(DataError, match="model expects"):
        load_source("digits-binary", event_shape=(784,), support="binary")
    unlabelled = Dataset("binarized-mnist", "test", torch.zeros(3, 4), support="binary")
    with pytest.raises(DataError, match="has no labels"):
        select_labels(unlabelled, [9])
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_source("nosuchdata", event_shape=(64,), support="binary")
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        load_source("digits:9", event_shape=(64,), support="binary")
    with pytest.raises(ConfigError, match="angle"):
        load_source(
            "rotated:angle=45", event_shape=(1, 2, 2), support="categorical(3)", reference=_reference()
        )
