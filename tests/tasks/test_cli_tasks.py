"""`dgm inpaint`, `dgm anomaly` and `dgm classify` end to end on tiny runs trained here."""

import contextlib
import io
import re

import numpy as np
import pytest

import dgm
from dgm.cli import main
from dgm.tasks import load_source


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _quiet(*argv):
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    assert code == 0, argv


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    fvsbn = ["--epochs", "1", "--lr", "0.02", "--out", str(root / "fvsbn"), "--no-progress"]
    _quiet("train", "fvsbn", "--data", "digits-binary", *fvsbn)
    _quiet("train", "naive-bayes", "--data", "digits-binary", "--out", str(root / "nb"), "--no-progress")
    # One model per class, each fitted on its own digit only (what `classify RUN RUN ...` expects).
    for digit in (0, 1):
        train = load_source(
            f"digits-binary:digits={digit}", event_shape=(64,), support="binary", split="train"
        )
        with contextlib.redirect_stdout(io.StringIO()):
            dgm.train(
                dgm.build("independent", event_shape=(64,)), train, out=root / f"digit{digit}", progress=False
            )
    return root


@pytest.mark.parametrize("command", ["inpaint", "anomaly", "classify", "superres", "denoise", "purify"])
def test_task_subcommands_have_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "example" in out and f"dgm {command}" in out


def test_inpaint_exact_and_mcmc(runs, capsys, tmp_path):
    args = ["-n", "3", "-k", "2", "--out", str(tmp_path / "a.png")]
    code, out, err = run(capsys, "inpaint", str(runs / "fvsbn"), "--mask", "bottom-half", *args)
    assert code == 0, err
    assert "autoregressive (exact conditional samples)" in out and "log p(x_missing | x_observed) = " in out
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    code, out, err = run(capsys, "inpaint", str(runs / "fvsbn"), "--mask", "left-half", "-n", "3", "-k", "2",
                         "--method", "gibbs", "--sweeps", "2", "--out", str(tmp_path / "c.npy"))  # fmt: skip
    assert code == 0, err
    assert "gibbs (MCMC)" in out and "2 sweeps" in out and "not available" in out
    completions = np.load(tmp_path / "c.npy")
    data = dgm.data.load("digits-binary", "test").x[:3].numpy()
    observed = np.tile(np.arange(8) >= 4, 8)  # left half missing in each 8-pixel row
    assert completions.shape == (3, 2, 64)
    assert (completions[:, :, observed] == data[:, None, observed]).all()


def test_anomaly_scores_and_metrics(runs, capsys, tmp_path):
    args = ["-n", "100", "--num-reference", "200", "--scores", str(tmp_path / "s.csv")]
    code, out, err = run(
        capsys, "anomaly", str(runs / "fvsbn"), "--out", "noise", "--background", str(runs / "nb"), *args
    )
    assert code == 0, err
    for row in ("nll (nats)", "bits/dim", "-llr (vs background)", "typicality(M=1)", "typicality(M=10)"):
        assert row in out
    auroc = float(re.search(r"nll \(nats\)\s+\S+\s+\S+\s+(\S+)", out).group(1))
    assert auroc > 0.95
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 201
    code, out, err = run(capsys, "anomaly", str(runs / "fvsbn"), "--in", "digits-binary:digits=0-8",
                         "--out", "digits-binary:digits=9", "--typicality-batch", "1")  # fmt: skip
    assert code == 0, err
    assert "digits-binary[9]" in out and "AUROC" in out


def test_classify_bayes_rule_and_sources(runs, capsys):
    code, out, err = run(capsys, "classify", str(runs / "nb"))
    assert code == 0, err
    assert "naive-bayes's own prior" in out and float(re.search(r"accuracy ([\d.]+)%", out).group(1)) > 80
    code, out, err = run(capsys, "classify", str(runs / "digit0"), str(runs / "digit1"), "--data",
                         "digits-binary:digits=0,1")  # fmt: skip
    assert code == 0, err
    assert "one model per class" in out and float(re.search(r"accuracy ([\d.]+)%", out).group(1)) > 90
    code, out, err = run(capsys, "classify", str(runs / "digit0"), str(runs / "digit1"), "--data",
                         "digits-binary:digits=0", "digits-binary:digits=1")  # fmt: skip
    assert code == 0, err
    assert "prior: uniform" in out
    code, out, err = run(capsys, "classify", str(runs / "fvsbn"), "--against", "noise")
    assert code == 0, err
    assert "balanced accuracy 100.00%" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inpaint", "FVSBN", "--mask", "diagonal"], "unknown mask 'diagonal'"),
        (["inpaint", "FVSBN", "--mask", "BADMASK"], "has shape (3, 3)"),
        (["inpaint", "FVSBN", "--mask", "center", "-k", "0"], "-k must be at least 1"),
        (["inpaint", "FVSBN", "--mask", "center", "--method", "metropolis"], "needs real-valued data"),
        (["anomaly", "FVSBN", "--out", "nosuchdata"], "unknown dataset 'nosuchdata'"),
        (["anomaly", "FVSBN", "--out", "BADDATA"], "model expects (64,)"),
        (["anomaly", "FVSBN", "--out", "digits"], "support is binary"),
        (["anomaly", "FVSBN", "--out", "digits-binary:digits=x"], "expected labels such as"),
        (["classify", "FVSBN"], "not class-conditional"),
        (["classify", "NB", "--data", "digits-binary", "digits"], "2 data sources for 10 classes"),
    ],
)
def test_task_errors_are_one_clear_line(argv, message, runs, capsys, tmp_path):
    np.save(tmp_path / "mask.npy", np.ones((3, 3), dtype=bool))
    np.save(tmp_path / "data.npy", np.zeros((5, 10), dtype=np.float32))
    names = {"FVSBN": str(runs / "fvsbn"), "NB": str(runs / "nb"), "BADMASK": str(tmp_path / "mask.npy"),
             "BADDATA": str(tmp_path / "data.npy")}  # fmt: skip
    code, _, err = run(capsys, *[names.get(a, a) for a in argv])
    assert code == 2
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
