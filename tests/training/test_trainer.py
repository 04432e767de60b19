import csv
import itertools

import pytest
import torch

import dgm
from dgm.core import checkpoint as ckpt
from dgm.data.dataset import Dataset
from dgm.training import Trainer, TrainingError, TrainingInterrupted


def dynamic_data(n=600, d=10, seed=0):
    """Probabilities binarised afresh every batch: exercises the data generator's saved state."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(n, d, generator=g)
    return Dataset(
        "toy",
        "train",
        probs,
        support="binary",
        binarization="dynamic",
        transform=lambda x, gen: torch.bernoulli(x, generator=gen),
    )


def fresh_model(d=10):
    torch.manual_seed(123)
    return dgm.build("independent", event_shape=(d,))


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


OPTS = dict(method="gradient", epochs=4, batch_size=64, lr=0.05, progress=False, seed=7, patience=None)


def test_same_seed_same_parameters():
    a, b = fresh_model(), fresh_model()
    dgm.train(a, dynamic_data(), **OPTS)
    dgm.train(b, dynamic_data(), **OPTS)
    assert torch.equal(a.logits, b.logits)


@pytest.mark.parametrize("stop_at_step", [3, 10, 19])  # mid-epoch, another mid-epoch, at an epoch's end
@pytest.mark.parametrize("schedule", ["constant", "cosine", "ema", "sgd", "adagrad", "rmsprop"])
def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path, stop_at_step, schedule):
    OPTS = {
        **globals()["OPTS"],
        "lr_schedule": "cosine" if schedule == "cosine" else "constant",
        "warmup_steps": 4 if schedule == "cosine" else 0,
        "ema_decay": 0.9 if schedule == "ema" else None,
        "optimizer": schedule if schedule in ("sgd", "adagrad", "rmsprop") else "adam",
        "momentum": {"sgd": 0.9, "rmsprop": 0.5}.get(schedule, 0.0),
        **({"rms_decay": 0.95, "eps": 1e-2} if schedule == "rmsprop" else {}),
    }
    reference = fresh_model()
    dgm.train(reference, dynamic_data(), dynamic_data(200, seed=1), out=tmp_path / "ref", **OPTS)

    def interrupt(trainer):
        if trainer.state.step == stop_at_step:
            trainer.request_stop()

    model = fresh_model()
    with pytest.raises(TrainingInterrupted, match="--resume"):
        dgm.train(
            model,
            dynamic_data(),
            dynamic_data(200, seed=1),
            out=tmp_path / "run",
            callbacks=[interrupt],
            **OPTS,
        )
    resumed = fresh_model()
    with torch.no_grad():
        resumed.logits.add_(5.0)  # resume must overwrite whatever the model held
    result = dgm.train(
        resumed, dynamic_data(), dynamic_data(200, seed=1), out=tmp_path / "run", resume=True, **OPTS
    )
    final_ref, _ = ckpt.load_tensors(tmp_path / "ref" / ckpt.TRAINING_STATE)
    final_run, _ = ckpt.load_tensors(tmp_path / "run" / ckpt.TRAINING_STATE)
    assert torch.equal(final_ref["model.logits"], final_run["model.logits"])
    optim_state = sorted(k for k in final_ref if k.startswith("optim."))
    assert optim_state and optim_state == sorted(k for k in final_run if k.startswith("optim."))
    assert all(torch.equal(final_ref[k], final_run[k]) for k in optim_state)
    assert torch.equal(final_ref["best.logits"], final_run["best.logits"])
    assert ("ema.logits" in final_ref) == (schedule == "ema")
    if schedule == "ema":
        assert torch.equal(final_ref["ema.logits"], final_run["ema.logits"])
    assert (tmp_path / "ref" / ckpt.METRICS).read_text().count("\n") == (
        tmp_path / "run" / ckpt.METRICS
    ).read_text().count("\n")
    ref_rows = read_csv(tmp_path / "ref" / ckpt.METRICS)
    run_rows = read_csv(tmp_path / "run" / ckpt.METRICS)
    assert [r["train_loss"] for r in ref_rows] == [r["train_loss"] for r in run_rows]
    assert result.steps == 40


def test_polyak_averaging_keeps_the_average_and_trains_the_raw_weights():
    """With ema_decay the returned weights are the moving average of the raw trajectory (decay warm-started
    as min(decay, (1+t)/(10+t))), and the raw trajectory is the one training without averaging follows."""
    opts = {**OPTS, "epochs": 3}

    def train_recording(**kw):
        """The trained model and its raw weights after every step."""
        model, trajectory = fresh_model(), []
        callback = [lambda tr: trajectory.append(tr.model.logits.detach().clone())]
        dgm.train(model, dynamic_data(), callbacks=callback, **kw, **opts)
        return model, trajectory

    averaged, trajectory = train_recording(ema_decay=0.95)
    plain, plain_trajectory = train_recording()
    assert all(torch.equal(a, b) for a, b in zip(trajectory, plain_trajectory, strict=True))
    ema = fresh_model().logits.detach().clone()
    for t, w in enumerate(trajectory):
        decay = min(0.95, (1 + t) / (10 + t))
        ema = decay * ema + (1 - decay) * w
    assert torch.allclose(averaged.logits, ema, atol=1e-6)
    assert not torch.allclose(averaged.logits, plain.logits, atol=1e-3)
    with pytest.raises(dgm.ConfigError, match="ema_decay"):
        dgm.train(fresh_model(), dynamic_data(), ema_decay=1.0, **opts)


def test_optimizers_take_their_own_steps(tmp_path):
    """One SGD step is w − lr·g, one Adagrad step w − lr·g/|g| (its first accumulator is g²), one Adam step
    w − lr·sign(g): the named optimizer is the one that runs; a run cannot resume under another."""
    x = dynamic_data()
    # One full batch of fixed binary data and no clipping: the first step's gradient is known exactly.
    batch = Dataset(
        "toy", "train", x.x[:64].bernoulli(generator=torch.Generator().manual_seed(0)), support="binary"
    )
    model = fresh_model()
    grad = torch.autograd.grad(model.loss(batch.x), model.logits)[0]
    expected = {
        "sgd": model.logits - 0.05 * grad,
        "adagrad": model.logits - 0.05 * grad / (grad.abs() + 1e-10),
        "adam": model.logits - 0.05 * grad.sign(),
    }
    for name, after in expected.items():
        stepped = fresh_model()
        dgm.train(stepped, batch, **{**OPTS, "max_steps": 1, "grad_clip": None, "optimizer": name})
        torch.testing.assert_close(stepped.logits, after.detach(), rtol=1e-5, atol=1e-6, msg=name)
    dgm.train(fresh_model(), x, out=tmp_path, **{**OPTS, "epochs": 1, "optimizer": "sgd"})
    with pytest.raises(dgm.CheckpointError, match="optimizer 'sgd'"):
        dgm.train(fresh_model(), x, out=tmp_path, resume=True, **OPTS)
    with pytest.raises(dgm.ConfigError, match="optimizer must be one of"):
        dgm.train(fresh_model(), x, optimizer="lbfgs")
    with pytest.raises(dgm.ConfigError, match="momentum"):
        dgm.train(fresh_model(), x, momentum=0.9)  # Adam has no such option


def test_resume_with_more_epochs_continues(tmp_path):
    m = fresh_model()
    dgm.train(m, dynamic_data(), out=tmp_path, **{**OPTS, "epochs": 2})
    r = dgm.train(fresh_model(), dynamic_data(), out=tmp_path, resume=True, **OPTS)
    assert r.history[-1]["epoch"] == 4 and len(r.history) == 4


def test_early_stopping_keeps_best_weights(tmp_path):
    d = 6
    train = Dataset("t", "train", (torch.rand(2000, d) < 0.95).float(), support="binary")
    valid = Dataset("v", "valid", (torch.rand(500, d) < 0.3).float(), support="binary")
    model = dgm.build("independent", event_shape=(d,))
    # Training pulls the marginals towards 0.95 while the validation data sit at 0.3: validation NLL
    # rises after the first epoch, so early stopping must fire and restore epoch 1's weights.
    res = dgm.train(
        model, train, valid, out=tmp_path, method="gradient", epochs=30, patience=3, lr=0.1, progress=False
    )
    assert res.stopped_early and res.best_epoch == 1 and len(res.history) == 4
    assert -model.log_prob(valid.x).mean().item() == pytest.approx(res.best_valid_nll, rel=1e-5)
    assert torch.equal(dgm.load(tmp_path).logits, model.logits)
    rows = read_csv(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "valid_nll", "valid_bpd", "grad_norm", "lr", "elapsed_s"} <= set(rows[0])


def test_run_directory_contents(tmp_path):
    model = fresh_model()
    dgm.train(model, dynamic_data(), dynamic_data(100, seed=2), out=tmp_path, **OPTS)
    for name in ("config.json", "model.safetensors", "training_state.safetensors", "run.json", "metrics.csv"):
        assert (tmp_path / name).is_file(), name
    info = ckpt.read_json(tmp_path / "run.json")
    assert info["training"]["seed"] == 7 and info["data"]["binarization"] == "dynamic"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_existing_run_is_not_overwritten(tmp_path):
    dgm.train(fresh_model(), dynamic_data(), out=tmp_path, **{**OPTS, "epochs": 1})

    def files():  # with TensorBoard installed, its event files sit in a subfolder
        return {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    before = files()
    with pytest.raises(dgm.CheckpointError, match="already holds a run"):
        dgm.train(fresh_model(), dynamic_data(), out=tmp_path, **OPTS)
    assert files() == before


def test_resume_refuses_a_different_model(tmp_path):
    dgm.train(fresh_model(), dynamic_data(), out=tmp_path, **{**OPTS, "epochs": 1})
    with pytest.raises(dgm.CheckpointError, match=r"different model \(alpha: .* in the run, 3.0 now\)"):
        dgm.train(
            dgm.build("independent", event_shape=(10,), alpha=3.0),
            dynamic_data(),
            out=tmp_path,
            resume=True,
            **OPTS,
        )


def test_nan_loss_is_a_clear_error():
    model = fresh_model()
    with torch.no_grad():
        model.logits[0] = float("nan")
    with pytest.raises(TrainingError, match="NaN|nan"):
        dgm.train(model, dynamic_data(), **OPTS)


def test_a_bad_training_batch_is_named_before_it_moves():
    """The trainer checks each batch's values on the CPU (the model inside the step checks shapes only)."""
    x = torch.randint(0, 2, (200, 10)).float()
    bad = int(torch.randint(64, 200, ()))  # in a later batch: the earlier steps run
    x[bad, int(torch.randint(10, ()))] = float("nan")
    with pytest.raises(dgm.DataError, match="training batch contains NaN values"):
        dgm.train(fresh_model(), x, **OPTS)
    x[bad] = 2.0
    with pytest.raises(dgm.DataError, match=r"training batch has values in \[0, 2\]"):
        dgm.train(fresh_model(), x, **OPTS)
    model = fresh_model()
    dgm.train(model, x.clamp(max=1), **OPTS)
    with pytest.raises(dgm.DataError, match="input contains NaN"):  # outside training: every value checked
        model.log_prob(torch.full((1, 10), float("nan")))


def test_elapsed_counts_every_invocation_of_a_resumed_run(tmp_path):
    seen = []
    first = dgm.train(fresh_model(), dynamic_data(), out=tmp_path, **OPTS)
    options = {**OPTS, "epochs": OPTS["epochs"] + 2}
    model = fresh_model()
    res = dgm.train(
        model,
        dynamic_data(),
        out=tmp_path,
        resume=True,
        callbacks=[lambda t: seen.append(t.elapsed_s)],
        **options,
    )
    assert seen and first.elapsed_s < seen[0] <= seen[-1] <= res.elapsed_s
    assert all(b >= a for a, b in itertools.pairwise(seen))


def test_a_models_figures_may_be_floats_or_tensors(tmp_path):
    """loss_and_metrics may return 0-dim tensors (read back with the loss) or floats; both reach metrics.csv
    as the epoch's example-weighted mean."""
    model = fresh_model()
    loss_of = model.loss

    def loss_and_metrics(x, context=None):
        loss = loss_of(x, context)
        return loss, {"as_tensor": 2 * loss.detach(), "as_float": 3.0, "count": torch.tensor(len(x))}

    model.loss_and_metrics = loss_and_metrics
    dgm.train(model, dynamic_data(), out=tmp_path, **{**OPTS, "epochs": 2})
    rows = read_csv(tmp_path / "metrics.csv")
    for row in rows:
        assert float(row["as_tensor"]) == pytest.approx(2 * float(row["train_loss"]), rel=1e-5)
        assert float(row["as_float"]) == 3.0 and float(row["count"]) > 0


def test_values_checked_skips_value_checks_only():
    from dgm.core.support import Support, check_input, values_checked

    x = torch.full((2, 3), float("nan"))
    with values_checked():
        assert check_input(x, (3,), Support.parse("binary")) is x
        with pytest.raises(dgm.DataError, match="shape"):
            check_input(x, (4,), Support.parse("binary"))
        assert check_input(
            torch.ones(2, 3, dtype=torch.long), (3,), Support.parse("real")
        ).is_floating_point()
    with pytest.raises(dgm.DataError, match="NaN"):
        check_input(x, (3,), Support.parse("binary"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_cuda_from_cpu_data():
    """Batches move through pinned memory without waiting (non_blocking); the result is the CPU's."""
    cpu, gpu = fresh_model(), fresh_model()
    dgm.train(cpu, dynamic_data(), **OPTS)
    dgm.train(gpu, dynamic_data(), device="cuda", **OPTS)
    torch.testing.assert_close(gpu.logits.cpu(), cpu.logits, rtol=1e-4, atol=1e-4)


def test_bad_options_are_clear_errors():
    with pytest.raises(dgm.ConfigError, match="unknown training option"):
        dgm.train(fresh_model(), dynamic_data(), epocs=3)
    with pytest.raises(dgm.ConfigError, match="batch_size"):
        dgm.train(fresh_model(), dynamic_data(), batch_size=0)
    with pytest.raises(dgm.ConfigError, match="resume"):
        dgm.train(fresh_model(), dynamic_data(), resume=True)
    with pytest.raises(dgm.ConfigError, match="cuda"):
        Trainer(
            fresh_model(), dynamic_data(), device="cuda:0"
        ) if not torch.cuda.is_available() else pytest.skip("a GPU is present")


def test_max_steps_and_no_validation():
    model = fresh_model()
    res = dgm.train(model, dynamic_data(), **{**OPTS, "max_steps": 5})
    assert res.steps == 5 and res.history[-1]["step"] == 5


def test_fit_iterations_report_their_own_time():
    import time as _time

    from dgm.models.classic.mixture import MixtureBernoulli

    class SlowEM(MixtureBernoulli):
        def m_step(self, stats, n):
            _time.sleep(0.05)
            super().m_step(stats, n)

    x = torch.randint(0, 2, (200, 6)).float()
    model = SlowEM((6,), components=2, tol=0.0)
    res = dgm.train(model, x, epochs=3, progress=False)
    times = [row["epoch_time_s"] for row in res.history]
    assert times[1] >= 0.05 and times[2] >= 0.05  # every row after the first includes one M step


def test_learning_rate_schedules():
    from dgm.training.trainer import TrainOptions, learning_rate

    cos = TrainOptions(lr=1.0, lr_schedule="cosine", lr_min=0.1, epochs=10)
    assert learning_rate(cos, 0, 10) == pytest.approx(1.0)
    assert learning_rate(cos, 50, 10) == pytest.approx(0.55)  # half way: the mean of lr and lr_min
    assert learning_rate(cos, 100, 10) == pytest.approx(0.1)
    lrs = [learning_rate(cos, t, 10) for t in range(101)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))  # monotone
    assert learning_rate(TrainOptions(lr=1.0, lr_schedule="cosine", max_steps=20), 10, 1000) == pytest.approx(
        0.5
    )
    exp = TrainOptions(lr=1.0, lr_schedule="exponential", lr_gamma=0.5)
    assert [learning_rate(exp, t, 3) for t in (0, 2, 3, 7)] == [1.0, 1.0, 0.5, 0.25]
    floor = TrainOptions(lr=1.0, lr_schedule="exponential", lr_gamma=0.5, lr_min=0.3)
    assert [learning_rate(floor, t, 3) for t in (0, 3, 6, 30)] == [1.0, 0.5, 0.3, 0.3]
    warm = TrainOptions(lr=1.0, warmup_steps=4)
    assert [learning_rate(warm, t, 10) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    for bad in (
        {"lr_schedule": "linear"},
        {"lr_min": 2.0},
        {"lr_gamma": 0.0},
        {"max_minutes": -1.0},
        {"rms_decay": 1.0},
        {"eps": 0.0},
    ):
        with pytest.raises(dgm.ConfigError, match=next(iter(bad))):
            TrainOptions(**bad)


def test_trainer_applies_the_schedule():
    res = dgm.train(fresh_model(), dynamic_data(), **{**OPTS, "lr_schedule": "exponential", "lr_gamma": 0.5})
    # 600 examples in batches of 64: 10 steps per epoch; the logged lr is the epoch's last step's.
    assert [row["lr"] for row in res.history] == pytest.approx([0.05, 0.025, 0.0125, 0.00625])


def test_max_minutes_stops_training():
    def slow(trainer):
        import time as _time

        _time.sleep(0.02)

    res = dgm.train(
        fresh_model(), dynamic_data(), callbacks=[slow], **{**OPTS, "epochs": 1000, "max_minutes": 0.005}
    )
    # 0.3 s at >= 0.02 s per step: stopped after about 15 steps, at most one step past the limit.
    assert 5 <= res.steps <= 20 and res.elapsed_s < 2


def test_bf16_training_runs_products_in_bf16_and_validates_in_fp32():
    """precision="bf16": the training loss's matrix products run in bfloat16 (seen by a hook), while the
    weights, the loss and validation stay fp32; one step is close to the fp32 step, and training learns."""
    data = dgm.data.load("digits-binary", "train")
    valid = dgm.data.load("digits-binary", "valid")
    seen = []

    def build():
        torch.manual_seed(int(torch.randint(1000, ())))
        model = dgm.build("made", event_shape=data.event_shape, hidden_sizes=[64])
        model.net.layers[0].register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
        return model

    opts = {**OPTS, "lr": 1e-2, "batch_size": 100, "grad_clip": None}
    seed = int(torch.randint(1000, ()))
    stepped = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(seed)
        model = dgm.build("made", event_shape=data.event_shape, hidden_sizes=[64])
        dgm.train(model, data, **{**opts, "max_steps": 1, "precision": precision})
        stepped[precision] = torch.cat([p.detach().flatten() for p in model.parameters()])
    # Adam's first step is lr·sign(g): the two agree wherever the gradient's sign is not a rounding call.
    agree = (stepped["fp32"] - stepped["bf16"]).abs() < 1e-6
    assert agree.float().mean() > 0.95

    model = build()
    before = -dgm.evaluate(model, valid)["nll"]
    seen.clear()
    res = dgm.train(model, data, valid, **{**opts, "epochs": 5, "precision": "bf16"})
    assert torch.bfloat16 in seen and torch.float32 in seen  # training steps in bf16, validation in fp32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert -res.history[-1]["valid_nll"] > before + 5  # it learned (nats per 64-pixel image)
    with pytest.raises(dgm.ConfigError, match="precision"):
        dgm.train(fresh_model(), dynamic_data(), precision="fp16")


def test_cli_offers_every_precision():
    from dgm.cli import _parser
    from dgm.training.trainer import PRECISIONS

    train = next(a for a in _parser()._actions if a.dest == "command").choices["train"]
    assert tuple(next(a.choices for a in train._actions if a.dest == "precision")) == PRECISIONS


def test_cli_offers_every_lr_schedule():
    from dgm.cli import _parser
    from dgm.training.trainer import SCHEDULES

    train = next(a for a in _parser()._actions if a.dest == "command").choices["train"]
    assert tuple(next(a.choices for a in train._actions if a.dest == "lr_schedule")) == SCHEDULES


def test_training_flushes_subnormals_and_restores_the_default():
    """Inside training a subnormal float reads as 0 (decayed optimizer averages would otherwise run on
    x86's slow subnormal path); before and after, torch's default keeps it."""
    tiny = torch.tensor(torch.finfo(torch.float32).tiny / 8)
    seen = []
    assert (tiny * 1).item() > 0
    dgm.train(fresh_model(), dynamic_data(), callbacks=[lambda t: seen.append((tiny * 1).item())], **OPTS)
    if torch.set_flush_denormal(False):  # the CPU supports flushing
        assert seen and all(v == 0 for v in seen)
    assert (tiny * 1).item() > 0


def test_step_schedule():
    """The step schedule multiplies the rate by lr_gamma once each milestone's number of epochs is done
    (milestone m: epoch m, counted from 0, is the first at the lower rate), floored at lr_min; milestones
    are validated and only accepted with it."""
    from dgm.training.trainer import TrainOptions, learning_rate

    step = TrainOptions(lr=1.0, lr_schedule="step", lr_gamma=0.1, lr_milestones=(2, 4))
    assert [learning_rate(step, t, 5) for t in (0, 9, 10, 19, 20, 99)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    )
    floor = TrainOptions(lr=1.0, lr_schedule="step", lr_gamma=0.1, lr_milestones=[1, 2], lr_min=0.05)
    assert floor.lr_milestones == (1, 2)  # as read back from a JSON list
    assert learning_rate(floor, 7, 3) == pytest.approx(0.05)
    assert TrainOptions(lr_schedule="step", lr_milestones=5).lr_milestones == (5,)
    with pytest.raises(dgm.ConfigError, match="milestones"):
        TrainOptions(lr_schedule="step", lr_milestones="40")
    for bad in ({"lr_milestones": (3, 2)}, {"lr_milestones": (0,)}, {"lr_milestones": (2, 2)}, {}):
        with pytest.raises(dgm.ConfigError, match="milestones"):
            TrainOptions(lr_schedule="step", **bad)
    with pytest.raises(dgm.ConfigError, match="milestones"):
        TrainOptions(lr_milestones=(3,))  # without the step schedule they would be ignored silently


def test_step_schedule_trains_and_resumes_at_the_lower_rate(tmp_path):
    """A run with a milestone reaches the lower rate at that epoch, and its JSON-stored options (the
    milestones a list there) resume."""
    opts = {**OPTS, "epochs": 3, "lr_schedule": "step", "lr_gamma": 0.5, "lr_milestones": (2,)}
    res = dgm.train(fresh_model(), dynamic_data(), **opts)
    assert [h["lr"] for h in res.history] == pytest.approx([OPTS["lr"], OPTS["lr"], OPTS["lr"] * 0.5])
    dgm.train(fresh_model(), dynamic_data(), out=tmp_path / "run", **{**opts, "max_steps": 15})
    again = dgm.train(fresh_model(), dynamic_data(), out=tmp_path / "run", resume=True, **opts)
    assert [h["lr"] for h in again.history] == pytest.approx([h["lr"] for h in res.history])


def test_sigterm_stops_with_a_checkpoint_like_ctrl_c(tmp_path):
    """What a batch scheduler sends before killing a job: the run stops at the next step, resumable."""
    import os
    import signal

    def terminate(trainer):
        if trainer.state.step == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        dgm.train(fresh_model(), dynamic_data(), out=tmp_path / "run", callbacks=[terminate], **OPTS)
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is restored afterwards
    state = ckpt.read_metadata(tmp_path / "run" / ckpt.TRAINING_STATE)["state"]
    assert state["step"] in (5, 6) and not state["finished"]
    result = dgm.train(fresh_model(), dynamic_data(), out=tmp_path / "run", resume=True, **OPTS)
    assert result.steps == OPTS["epochs"] * 10 and not result.already_finished  # 600 examples, batches of 64


def test_the_automatic_checkpoint_interval_follows_the_write_time(tmp_path):
    """By default a checkpoint is due 20× its last write's duration after it, and at least 30 s after."""
    from dgm.training.trainer import AUTO_CHECKPOINT_FACTOR, AUTO_CHECKPOINT_MIN_S

    run = Trainer(fresh_model(), dynamic_data(), out=tmp_path, **OPTS)
    assert run.options.checkpoint_every is None
    assert run._checkpoint_interval() == AUTO_CHECKPOINT_MIN_S == 30.0  # before any write
    run.run()
    measured = run._last_write_s
    assert 0 < measured < 30 / AUTO_CHECKPOINT_FACTOR  # a tiny model's state: the floor applies
    assert run._checkpoint_interval() == 30.0
    slow = float(torch.empty(()).uniform_(2.0, 60.0))
    run._last_write_s = slow
    assert run._checkpoint_interval() == pytest.approx(AUTO_CHECKPOINT_FACTOR * slow)
    fixed = Trainer(fresh_model(), dynamic_data(), checkpoint_every=7.5, **OPTS)
    fixed._last_write_s = slow
    assert fixed._checkpoint_interval() == 7.5


@pytest.mark.parametrize("every", [1e-9, 1e9])
def test_checkpoints_follow_checkpoint_every_and_the_best_weights_reach_disk(tmp_path, monkeypatch, every):
    """The training state is written at most every ``checkpoint_every`` seconds and always at the end; the
    metrics after every epoch; model.safetensors holds the best validated weights either way."""
    written, metrics = [], []
    save_tensors, atomic_write = ckpt.save_tensors, ckpt.atomic_write

    def saving(path, *args, **kwargs):
        written.append(path.name)
        return save_tensors(path, *args, **kwargs)

    def writing(path, *args, **kwargs):
        metrics.append(path.name)
        return atomic_write(path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_tensors", saving)
    monkeypatch.setattr(ckpt, "atomic_write", writing)
    model = fresh_model()
    res = dgm.train(
        model, dynamic_data(), dynamic_data(200, seed=1), out=tmp_path, checkpoint_every=every, **OPTS
    )
    epochs = OPTS["epochs"]
    assert metrics.count(ckpt.METRICS) >= epochs
    states = written.count(ckpt.TRAINING_STATE)
    if every > 1:
        assert states == 1  # the end of training only
    else:
        assert states > epochs  # at every step and epoch end (mid-epoch too), then the end
    loaded = dgm.load(tmp_path)
    best = {k: v for k, v in model.state_dict().items()}  # dgm.train leaves the best weights in the model
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, best[k], rtol=0, atol=0)
    assert res.best_epoch >= 1
