"""`dgm bench` and `dgm report`: the figures they print are the models' and the runs' own."""

import csv
import json

import pytest
import torch

import dgm
from dgm.cli import main
from dgm.core import checkpoint as ckpt
from dgm.evaluation.report import _status, summarize


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


QUICK = ("--tiny", "--repeats", "1", "--score-examples", "50", "--num-samples", "5")


def test_bench_rows_are_the_models_figures(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code, stdout, err = run(capsys, "bench", "made", "nade", "--data", "digits-binary", *QUICK, "--out", out)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["data"] == "digits-binary" and report["peak"]["gflops"] > 0
    rows = {r["model"]: r for r in report["rows"]}
    assert set(rows) == {"made", "nade"}
    entry = dgm.core.registry.get_entry("made")
    made = dgm.build("made", event_shape=(64,), support="binary", **entry.tiny)
    assert rows["made"]["params"] == made.num_parameters()
    for row in rows.values():
        assert row["step_s_fp32"] > 0 and row["gflop_per_step"] > 0
        # 1,257 training images in batches of 100: 13 steps per epoch
        assert row["epoch_s_fp32"] == pytest.approx(13 * row["step_s_fp32"])
        assert 0 < row["peak_share_fp32"] < 2
        assert row["log_prob_per_s"] > 0 and row["samples_per_s"] > 0
    assert "made" in stdout and "share of fp32 peak" in stdout


def test_bench_all_measures_every_model_that_handles_the_data(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    code, stdout, err = run(capsys, "bench", "all", "--data", "moons", *QUICK, "--out", out)
    assert code == 0, err
    measured = {r["model"] for r in csv.DictReader(out.open())}
    real = {m["name"] for m in dgm.list_models() if "real" in dgm.core.registry.get_entry(m["name"]).supports}
    not_measured = {line.split(":")[0] for line in stdout.splitlines() if ": not measured (" in line}
    assert measured | not_measured == real and not measured & not_measured
    assert {"maf", "realnvp", "vae", "rnade"} <= measured
    assert "skipped (they do not model real data)" in stdout and "made" in stdout.splitlines()[0]


def test_bench_conditional_models_take_the_datas_labels(tmp_path, capsys):
    code, stdout, err = run(capsys, "bench", "naive-bayes", "cvae", "--data", "digits-binary", *QUICK)
    assert code == 0, err
    assert "naive-bayes" in stdout and "cvae" in stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "no-such-model", "--data", "digits-binary"], "unknown model"),
        (["bench", "all", "made", "--data", "digits-binary"], "'all' stands alone"),
        (
            ["bench", "made", "--data", "digits-binary", "--batch-size", "0"],
            "--batch-size must be at least 1",
        ),
        (["bench", "made", "--data", "digits-binary", "--out", "x.txt"], "--out must end in"),
        (["bench", "maf", "--data", "digits-binary"], "handles real data but digits-binary is binary"),
        (["bench", "made", "--data", "digits-binary", "--no-such-option", "3"], "no option 'no_such_option'"),
        (["report", "/nonexistent/run"], "no run directory"),
        (["report", ".", "--curves", "c.pdf"], "--curves must end in .png"),
    ],
)
def test_bench_and_report_errors_are_one_line(argv, message, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.fixture
def two_runs(tmp_path, capsys):
    runs = []
    for name, extra in (
        ("made", ["--hidden-sizes", "32"]),
        ("nade", ["--hidden-size", "16", "--max-steps", "20"]),
    ):
        out = tmp_path / name
        code, _, err = run(
            capsys,
            "train",
            name,
            "--data",
            "digits-binary",
            "--epochs",
            "3",
            *extra,
            "--out",
            out,
            "--no-progress",
        )
        assert code == 0, err
        runs.append(out)
    return runs


def test_report_rows_come_from_the_run_files(two_runs, tmp_path, capsys):
    made, nade = two_runs
    out, curves = tmp_path / "runs.json", tmp_path / "curves.png"
    code, stdout, err = run(capsys, "report", made, nade, "--out", out, "--curves", curves)
    assert code == 0, err
    rows = {r["model"]: r for r in json.loads(out.read_text())["rows"]}
    history = list(csv.DictReader((made / ckpt.METRICS).open()))
    results = ckpt.read_json(made / ckpt.RESULTS)["test"]
    row = rows["made"]
    assert row["params"] == dgm.load(made).num_parameters()
    assert row["epochs"] == 3 and row["epochs_planned"] == 3 and row["status"] == "all epochs"
    assert row["steps"] == int(history[-1]["step"])
    assert row["best_valid_nll"] == pytest.approx(min(float(h["valid_nll"]) for h in history))
    assert row["test_nll"] == results["nll"] and row["test_bits_per_dim"] == results["bits_per_dim"]
    assert rows["nade"]["status"] == "step limit" and rows["nade"]["steps"] == 20
    assert curves.stat().st_size > 0 and f"{results['nll']:.2f}" in stdout


def test_report_names_a_damaged_run(two_runs, capsys):
    made, _ = two_runs
    (made / ckpt.TRAINING_STATE).write_bytes(b"not a safetensors file")
    code, _, err = run(capsys, "report", made)
    assert code == 2 and "corrupted or truncated" in err and len(err.strip().splitlines()) == 1


def test_report_status_of_each_ending():
    planned = {"epochs": 10, "max_steps": None, "max_minutes": None}
    assert _status({}, planned, "gradient") == "no training state"
    assert _status({"finished": False, "epoch": 3}, planned, "gradient").startswith("interrupted")
    assert _status({"finished": True, "stopped_early": True, "epoch": 4}, planned, "gradient") == "early stop"
    assert _status({"finished": True, "epoch": 10}, planned, "gradient") == "all epochs"
    assert _status({"finished": True, "epoch": 2, "step": 7}, {**planned, "max_steps": 7}, "gradient") == (
        "step limit"
    )
    assert (
        _status({"finished": True, "epoch": 2}, {**planned, "max_minutes": 1.0}, "gradient") == "time limit"
    )
    assert _status({"finished": True, "epoch": 1}, planned, "fit") == "fitted"


def test_summarize_without_parameters_reads_no_weights(two_runs):
    made, _ = two_runs
    (made / ckpt.WEIGHTS).unlink()
    row = summarize(made, count_parameters=False)
    assert row["params"] is None and row["model"] == "made" and row["epochs"] == 3
    assert torch.isfinite(torch.tensor(row["best_valid_nll"]))


def test_report_follows_the_metrics_of_a_run_ahead_of_its_checkpoint(tmp_path):
    """A run writes metrics.csv after every epoch and its state only every checkpoint_every seconds: a run
    stopped (or still running) between the two is reported from the metrics."""
    data, valid = dgm.data.load("digits-binary", "train"), dgm.data.load("digits-binary", "valid")
    model = dgm.build("made", event_shape=data.event_shape, support=data.support, hidden_sizes=[32])
    opts = dict(batch_size=200, progress=False, device="cpu", seed=0)
    dgm.train(model, data, valid, out=tmp_path, epochs=2, **opts)  # checkpointed at its end, epoch 2

    def crash(trainer):  # as a kill -9 in epoch 4 would: no checkpoint since epoch 2
        if trainer.state.epoch == 3:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        dgm.train(model, data, valid, out=tmp_path, epochs=4, resume=True, checkpoint_every=1e9,
                  callbacks=[crash], **opts)  # fmt: skip
    history = list(csv.DictReader((tmp_path / ckpt.METRICS).open()))
    row = summarize(tmp_path)
    assert len(history) == 3 and row["epochs"] == 3 and row["steps"] == int(history[-1]["step"])
    assert row["best_valid_nll"] == pytest.approx(min(float(h["valid_nll"]) for h in history))
    assert row["status"].startswith("training, or stopped") and "from epoch 2" in row["status"]
