"""Probability density distillation: an IAF student trained on its own samples matches a MAF teacher."""

import math
import statistics

import pytest
import torch

import dgm
from dgm.core.errors import ConfigError
from dgm.models.flows.distill import (
    distill,
    imitate,
    pair_loss,
    sampling_speed,
    student_scores,
    teacher_entropy,
    teacher_pairs,
)
from tests.models.flows.helpers import perturb


def teacher(**options):
    torch.manual_seed(0)
    model = dgm.build("maf", event_shape=(2,), num_layers=2, hidden_sizes=[16], scale_clamp=1.0, **options)
    perturb(model, 0.3, torch.Generator().manual_seed(1))  # a fixed, non-Gaussian 2-D density
    return model


def test_student_kl_falls_and_its_samples_score_like_the_teachers_own():
    torch.manual_seed(1)
    teach = teacher()
    student = dgm.build("iaf", event_shape=(2,), num_layers=2, hidden_sizes=[32], seed=1)
    before = {k: v.detach().clone() for k, v in teach.state_dict().items()}
    result = distill(teach, student, num_steps=200, batch_size=256, lr=1e-2, teacher_samples=4000)
    history = result.history
    assert len(history) == 200 and set(history[0]) == {"step", "kl", "teacher_nll", "student_nll", "beta"}
    last = {k: statistics.mean(r[k] for r in history[-30:]) for k in ("kl", "teacher_nll", "student_nll")}
    assert last["kl"] < 0.1 and last["kl"] < 0.1 * history[0]["kl"], (history[0], last)
    # The student's samples are as likely under the teacher as the teacher's own (its entropy).
    assert last["teacher_nll"] == pytest.approx(result.teacher_self_nll, abs=0.1), (
        last,
        result.teacher_self_nll,
    )
    # The teacher is untouched and its parameters trainable again; the student is ready to sample.
    assert all(torch.equal(v, teach.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in teach.parameters()) and not student.training
    # An independent check of the final KL on fresh samples.
    with torch.no_grad():
        x, log_q = student.sample_and_log_prob(4000, generator=torch.Generator().manual_seed(9))
        assert (log_q - teach.log_prob(x)).mean().item() < 0.1


def test_conditional_teacher_and_student():
    teach = teacher(num_classes=2)
    student = dgm.build("iaf", event_shape=(2,), num_layers=1, hidden_sizes=[8], num_classes=2)
    seen = []
    result = distill(teach, student, num_steps=3, batch_size=16, teacher_samples=0, callback=seen.append)
    assert len(seen) == 3 and seen[-1] == result.final and result.teacher_self_nll != result.teacher_self_nll
    assert teacher_entropy(teach, 100) > 0


def test_sampling_speed_and_checks():
    speed = sampling_speed(dgm.build("iaf", event_shape=(8,)), dgm.build("maf", event_shape=(8,)), 50, 1)
    assert speed["student_s"] > 0 and speed["teacher_s"] > 0
    assert speed["speedup"] == pytest.approx(speed["teacher_s"] / speed["student_s"])
    maf, iaf = dgm.build("maf", event_shape=(2,)), dgm.build("iaf", event_shape=(3,))
    with pytest.raises(ConfigError, match="event shape"):
        distill(maf, iaf, num_steps=1)
    with pytest.raises(ConfigError, match="sample_and_log_prob"):
        distill(maf, dgm.build("made", event_shape=(2,)), num_steps=1)
    with pytest.raises(ConfigError, match="num_steps"):
        distill(maf, dgm.build("iaf", event_shape=(2,)), num_steps=0)
    with pytest.raises(ConfigError, match="num_classes"):
        distill(maf, dgm.build("iaf", event_shape=(2,), num_classes=3), num_steps=1)


def saturated(name: str, seed: int):
    """A flow with logit preprocessing whose samples sit far in the logit tails (|y| ≳ 17), where
    σ(y) rounds to 0 or 1 in float32 and the pixels no longer determine the point."""
    model = dgm.build(name, event_shape=(4,), num_layers=1, hidden_sizes=[8], logit_alpha=1e-6, seed=seed)
    with torch.no_grad():
        [p for n, p in model.named_parameters() if n.endswith("bias")][-1].add_(20.0)
    return model


def test_logit_flows_are_distilled_in_the_shared_logit_space():
    # Regression: samples were handed to the teacher as float32 pixels; σ(y) rounded to 1 and the
    # teacher's logit refused the point (DataError), both for the student's samples and for the teacher's
    # entropy. Both are now computed in the shared logit space, and agree with a float64 reference.
    torch.manual_seed(0)
    teach, student = saturated("maf", 0), saturated("iaf", 1)
    result = distill(teach, student, num_steps=1, batch_size=4000, lr=1e-12, teacher_samples=4000)
    first = result.history[0]
    assert all(math.isfinite(v) for v in (*first.values(), result.teacher_self_nll)), first
    with torch.no_grad():
        t64, s64 = teach.double(), student.double()
        x, log_q = s64.sample_and_log_prob(20000, generator=torch.Generator().manual_seed(3))
        log_p = t64.log_prob(x)
        entropy64 = teacher_entropy(t64, 20000, torch.Generator().manual_seed(4))
    assert first["student_nll"] == pytest.approx(-log_q.mean().item(), abs=0.15)
    assert first["teacher_nll"] == pytest.approx(-log_p.mean().item(), rel=0.05)
    assert result.teacher_self_nll == pytest.approx(entropy64, rel=0.02)  # 4000 samples: noise


def test_wall_budget_and_fresh_scores():
    teach, student = teacher(), dgm.build("iaf", event_shape=(2,), num_layers=1, hidden_sizes=[8])
    result = distill(teach, student, num_steps=50, batch_size=8, teacher_samples=0, max_minutes=0.0)
    assert len(result.history) == 1  # the budget is checked after every step
    scores = student_scores(teach, student, 500)
    assert scores["kl"] == pytest.approx(scores["teacher_nll"] - scores["student_nll"], abs=1e-4)
    assert scores["kl"] > 0 and scores["kl_se"] > 0 and not student.training
    with pytest.raises(ConfigError, match="num_samples"):
        student_scores(teach, student, 1)


def test_teacher_entropy_median_and_eval_mode():
    teacher = dgm.build("maf", event_shape=(3,), num_layers=2, hidden_sizes=[8], batch_norm=True)
    perturb(teacher)
    teacher.train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        teacher.eval()
        nll = -teacher.sample_and_log_prob(500, None, torch.Generator().manual_seed(0))[1]
        teacher.train()
    assert teacher_entropy(teacher, 500, torch.Generator().manual_seed(0)) == pytest.approx(nll.mean().item())
    median = teacher_entropy(teacher, 500, torch.Generator().manual_seed(0), reduce="median")
    assert median == pytest.approx(nll.median().item())
    assert teacher.training  # the mode it was given back
    with pytest.raises(ConfigError, match="reduce"):
        teacher_entropy(teacher, 10, g, reduce="mode")


def test_annealing_targets_the_tempered_teacher():
    # A standard-normal teacher (every MADE output zero): the annealed loss at fixed β has the minimiser
    # q ∝ p^β = N(0, I/β), so a student trained at β = 0.5 throughout has variance 2.
    teach = dgm.build("maf", event_shape=(2,), num_layers=1, hidden_sizes=[8])
    with torch.no_grad():
        for p in teach.parameters():
            p.zero_()
    student = dgm.build("iaf", event_shape=(2,), num_layers=1, hidden_sizes=[8], seed=2)
    result = distill(
        teach, student, num_steps=1000, batch_size=256, lr=3e-3, teacher_samples=0,
        anneal_steps=10**9, initial_beta=0.5,
    )  # fmt: skip
    assert result.history[0]["beta"] == 0.5 and result.history[-1]["beta"] == pytest.approx(0.5, abs=1e-6)
    with torch.no_grad():
        x = student.sample(20000, generator=torch.Generator().manual_seed(3))
    assert x.var(0).tolist() == pytest.approx([2.0, 2.0], rel=0.1), x.var(0)
    # The schedule reaches β = 1 after anneal_steps and stays there.
    result = distill(
        teach, student, num_steps=5, batch_size=8, teacher_samples=0, anneal_steps=2, initial_beta=0.2
    )
    assert [r["beta"] for r in result.history] == pytest.approx([0.2, 0.6, 1.0, 1.0, 1.0])
    for bad in ({"initial_beta": 0.0}, {"initial_beta": 1.5}, {"anneal_steps": -1}):
        with pytest.raises(ConfigError):
            distill(teach, student, num_steps=1, teacher_samples=0, **bad)


def test_imitation_on_paired_noise_matches_the_teachers_map():
    teach = teacher()
    pairs = teacher_pairs(teach, 3000, torch.Generator().manual_seed(4), batch_size=1000)
    assert (
        pairs.z.shape == pairs.target.shape == (3000, 2)
        and pairs.context is None
        and pairs.logit_alpha is None
    )
    with torch.no_grad():  # the targets are the teacher's samples of that noise
        torch.testing.assert_close(pairs.target, teach.transform.inverse(pairs.z, None))
    student = dgm.build("iaf", event_shape=(2,), num_layers=2, hidden_sizes=[32], seed=1)
    every = torch.arange(len(pairs))
    before = pair_loss(student, pairs, every).item()
    history = imitate(student, pairs, num_steps=300, batch_size=256, lr=1e-2)
    assert len(history) == 300 and not student.training
    with torch.no_grad():
        after = pair_loss(student, pairs, every).item()
    assert after < 0.05 * before, (before, after)
    # A student that maps the teacher's noise where the teacher does has the teacher's density.
    assert student_scores(teach, student, 2000)["kl"] < 0.1
    # The pair loss rides along in distill.
    result = distill(
        teach, student, num_steps=3, batch_size=16, teacher_samples=0, pairs=pairs, pair_weight=0.5
    )
    assert all(r["pair_loss"] >= 0 for r in result.history)
    with pytest.raises(ConfigError, match="pair_weight"):
        distill(teach, student, num_steps=1, teacher_samples=0, pair_weight=1.0)
    with pytest.raises(ConfigError, match="num_pairs"):
        teacher_pairs(teach, 0)


def test_pairs_of_a_logit_teacher_keep_only_samples_inside_the_support():
    teach = dgm.build(
        "maf", event_shape=(4,), num_layers=1, hidden_sizes=[8], logit_alpha=1e-6, shift="before", seed=0
    )
    with torch.no_grad():  # spread the samples (the log-scales' bias, paper form) so some leave the range
        [p for n, p in teach.named_parameters() if n.endswith("bias")][-1].add_(2.5)
    bound = math.log((1 - 1e-6) / 1e-6)
    with torch.no_grad():
        z = teach.base.sample(4000, None, torch.Generator().manual_seed(1))
        y = z
        for t in reversed(list(teach.transform.transforms)[1:]):
            y = t.inverse(y)
        share_inside = (y.abs().amax(1) <= bound).float().mean().item()
    assert 0.05 < share_inside < 0.95, share_inside  # the check below has something to drop
    pairs = teacher_pairs(teach, 500, torch.Generator().manual_seed(0), batch_size=200)
    assert len(pairs) == 500 and pairs.logit_alpha == 1e-6 and pairs.drawn >= 600
    assert pairs.target.abs().max().item() <= bound  # every kept sample is an image
    assert 500 / pairs.drawn == pytest.approx(share_inside, abs=0.15)
    with torch.no_grad():  # and each is the teacher's image of its own noise
        y = pairs.z
        for t in reversed(list(teach.transform.transforms)[1:]):
            y = t.inverse(y)
    torch.testing.assert_close(y, pairs.target)
    student = dgm.build("iaf", event_shape=(4,), num_layers=1, hidden_sizes=[8], logit_alpha=1e-6, seed=1)
    assert math.isfinite(pair_loss(student, pairs, torch.arange(10)).item())
    plain = dgm.build("iaf", event_shape=(4,), num_layers=1, hidden_sizes=[8])
    with pytest.raises(ConfigError, match="logit"):
        pair_loss(plain, pairs, torch.arange(10))
    with pytest.raises(ConfigError, match="support"):
        teacher_pairs(saturated("maf", 0), 100, max_draws=1000)  # nothing inside


def test_logit_space_scores_remove_the_logit_log_det():
    teach, student = saturated("maf", 0), saturated("iaf", 1)
    scores = student_scores(teach, student, 500)
    # Over y = logit(x) both densities lose the same log-det: the KL is unchanged.
    assert scores["teacher_nll_logit"] - scores["student_nll_logit"] == pytest.approx(scores["kl"], abs=1e-3)
    with torch.no_grad():
        z = teach.base.sample(300, None, torch.Generator().manual_seed(0))
        y, log_det = z, torch.zeros(300)
        for t in reversed(list(teach.transform.transforms)[1:]):
            y, ld = t.inverse_and_log_det(y)
            log_det = log_det + ld
        expected = (log_det - teach.base.log_prob(z)).mean().item()
    got = teacher_entropy(teach, 300, torch.Generator().manual_seed(0), space="logit")
    assert got == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="Logit"):
        teacher_entropy(teacher(), 10, space="logit")
    with pytest.raises(ConfigError, match="space"):
        teacher_entropy(teach, 10, space="pixels")
