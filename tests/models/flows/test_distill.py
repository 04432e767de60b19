"""Probability density distillation: an IAF student trained on its own samples matches a MAF teacher."""

import math
import statistics

import pytest
import torch

import dgm
from dgm.core.errors import ConfigError
from dgm.models.flows.distill import distill, sampling_speed, student_scores, teacher_entropy
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
    assert len(history) == 200 and set(history[0]) == {"step", "kl", "teacher_nll", "student_nll"}
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
