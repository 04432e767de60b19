"""The command line end to end on tiny settings, including its error paths."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dgm.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        "train",
        "independent",
        "--data",
        "digits-binary",
        "--method",
        "gradient",
        "--epochs",
        "3",
        "--lr",
        "0.05",
        "--out",
        str(out),
        "--no-progress",
    )
    assert code == 0, err
    return out, stdout


def test_models_and_datasets(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and "independent" in out and "classic" in out
    code, out, _ = run(capsys, "models", "independent")
    assert code == 0 and "--alpha" in out and "supports: binary, categorical, real" in out
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    for name in (
        "digits",
        "digits-binary",
        "moons",
        "binarized-mnist",
        "mnist",
        "mnist-dynamic",
        "tinyshakespeare",
    ):
        assert name in out


@pytest.mark.parametrize("command", ["models", "datasets", "download", "train", "eval", "sample"])
def test_every_subcommand_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "example" in out and f"dgm {command}" in out


def test_train_eval_sample(trained, capsys, tmp_path):
    out, stdout = trained
    assert "NLL = " in stdout and "bits/dim" in stdout and "exact" in stdout
    for name in (
        "config.json",
        "model.safetensors",
        "metrics.csv",
        "results.json",
        "samples.png",
        "run.json",
    ):
        assert (out / name).is_file(), name
    assert len((out / "metrics.csv").read_text().splitlines()) == 4
    test_nll = json.loads((out / "results.json").read_text())["test"]["nll"]

    code, stdout, _ = run(capsys, "eval", str(out), "--split", "test", "--scores", str(tmp_path / "s.csv"))
    assert code == 0 and f"{test_nll:.3f}" in stdout
    scores = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert scores.shape == (360, 2) and abs(-scores[:, 1].mean() - test_nll) < 1e-4
    code, _, _ = run(capsys, "eval", str(out), "--split", "valid")
    assert set(json.loads((out / "results.json").read_text())) == {"test", "valid"}

    code, stdout, _ = run(capsys, "sample", str(out), "-n", "16", "--out", str(tmp_path / "s.npy"))
    arr = np.load(tmp_path / "s.npy")
    assert code == 0 and arr.shape == (16, 64) and set(np.unique(arr)) <= {0.0, 1.0}
    code, _, _ = run(capsys, "sample", str(out), "-n", "9", "--out", str(tmp_path / "g.png"))
    assert code == 0 and (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_continues_a_run(trained, capsys):
    out, _ = trained
    code, _stdout, err = run(
        capsys,
        "train",
        "independent",
        "--data",
        "digits-binary",
        "--method",
        "gradient",
        "--epochs",
        "5",
        "--lr",
        "0.05",
        "--out",
        str(out),
        "--resume",
        "--no-progress",
    )
    assert code == 0, err
    assert len((out / "metrics.csv").read_text().splitlines()) == 6


def test_closed_form_fit_on_categorical_digits(tmp_path, capsys):
    code, _stdout, err = run(
        capsys,
        "train",
        "independent",
        "--data",
        "digits",
        "--alpha",
        "0.5",
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
    )
    assert code == 0, err
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["support"] == "categorical(17)" and cfg["alpha"] == 0.5


def test_points_samples_are_a_density_plot(tmp_path, capsys):
    code, _, err = run(
        capsys, "train", "independent", "--data", "moons", "--out", str(tmp_path / "m"), "--no-progress"
    )
    assert code == 0, err
    assert (tmp_path / "m" / "samples.png").read_bytes()[:4] == b"\x89PNG"


def test_text_samples_are_text(tmp_path, capsys, real_data_dir):
    code, stdout, err = run(
        capsys,
        "train",
        "independent",
        "--data",
        "tinyshakespeare",
        "--data-opt",
        "seq_len=64",
        "--out",
        str(tmp_path / "t"),
        "--no-progress",
    )
    assert code == 0, err
    assert "bits/dim" in stdout
    code, _, _ = run(capsys, "sample", str(tmp_path / "t"), "-n", "3", "--out", str(tmp_path / "t.txt"))
    text = (tmp_path / "t.txt").read_text()
    assert code == 0 and text.count("----") == 2 and len(text) > 3 * 64


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "nosuchmodel", "--data", "digits-binary"], "unknown model 'nosuchmodel'; available: "),
        (["train", "independent", "--data", "nosuchdata"], "unknown dataset 'nosuchdata'"),
        (["train", "independent", "--data", "digits-binary", "--hidden", "3"], "has no option 'hidden'"),
        (["train", "independent", "--data", "digits", "--support", "binary"], "support is binary"),
        (
            ["train", "independent", "--data", "digits-binary", "--epochs", "0"],
            "epochs must be a positive int",
        ),
        (["eval", "/nonexistent/run"], "does not exist"),
        (["sample", "/nonexistent/run"], "does not exist"),
        (["train", "independent", "--data", "digits-binary", "--data-opt", "x"], "KEY=VALUE"),
    ],
)
def test_errors_are_one_clear_line(argv, message, capsys, tmp_path):
    code, _out, err = run(capsys, *argv, *(["--out", str(tmp_path / "r")] if argv[0] == "train" else []))
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_real_data_names_file_and_download(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DGM_DATA_DIR", str(tmp_path / "empty"))
    code, _, err = run(
        capsys, "train", "independent", "--data", "binarized-mnist", "--out", str(tmp_path / "r")
    )
    assert code == 2 and "binarized_mnist" in err and "dgm download binarized-mnist" in err
    assert not (tmp_path / "r").exists()


def test_existing_run_is_refused_and_kept(trained, capsys):
    out, _ = trained
    before = (out / "model.safetensors").read_bytes()
    code, _, err = run(capsys, "train", "independent", "--data", "digits-binary", "--out", str(out))
    assert code == 2 and "already holds a run" in err
    assert (out / "model.safetensors").read_bytes() == before


def test_console_script_exit_codes(tmp_path):
    """The installed `dgm` entry point (run as a module here) exits non-zero with one line on stderr."""
    p = subprocess.run(
        [sys.executable, "-m", "dgm.cli", "eval", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert p.returncode == 2 and p.stderr.startswith("dgm: error:") and p.stderr.count("\n") == 1


def test_classic_models_through_the_cli(tmp_path, capsys):
    code, out, err = run(
        capsys, "train", "mixture-bernoulli", "--data", "digits-binary", "--components", "5", "--out",
        str(tmp_path / "mob"), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "EM" in out and "NLL = " in out and "accuracy" not in out  # clusters are not classes
    assert (tmp_path / "mob" / "samples.png").exists()
    code, out, err = run(
        capsys, "train", "naive-bayes", "--data", "digits", "--support", "real", "--out",
        str(tmp_path / "nb"), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "log p(x | y)" in out and "accuracy" in out
    code, out, err = run(
        capsys,
        "train",
        "logistic-regression",
        "--data",
        "digits",
        "--out",
        str(tmp_path / "lr"),
        "--no-progress",
    )
    assert code == 0, err
    assert "log p(y | x)" in out and "bits/dim" not in out.split("log p(y | x)")[1].splitlines()[0]
    results = json.loads((tmp_path / "lr" / "results.json").read_text())
    assert results["test"]["accuracy"] > 0.9
    code, _, err = run(capsys, "sample", str(tmp_path / "lr"))
    assert code == 2 and "discriminative" in err and len(err.strip().splitlines()) == 1


def test_class_conditional_run_samples_a_class_grid(tmp_path, capsys):
    out = tmp_path / "cond"
    code, _, err = run(
        capsys, "train", "fvsbn", "--data", "digits-binary", "--num-classes", "10", "--epochs", "1",
        "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert (out / "samples.png").exists()
    code, _, err = run(capsys, "sample", str(out), "-n", "20", "--out", str(tmp_path / "s.png"))
    assert code == 0 and (tmp_path / "s.png").exists(), err


def test_semi_supervised_training_with_few_labels(tmp_path, capsys):
    out = tmp_path / "ss"
    code, text, err = run(
        capsys, "train", "ssvae", "--data", "digits-binary", "--labels-per-class", "5", "--epochs", "1",
        "--eval-num-samples", "4", "--hidden-sizes", "32", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "accuracy" in text and "(estimate)" in text
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and "labelled_fraction" in rows[0]


def test_vae_run_directory_has_latent_grids(tmp_path, capsys):
    out = tmp_path / "vae"
    code, _, err = run(
        capsys, "train", "vae", "--data", "digits-binary", "--epochs", "1", "--eval-num-samples", "4",
        "--hidden-sizes", "32", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert all((out / name).stat().st_size > 0 for name in ("reconstructions.png", "interpolations.png"))
