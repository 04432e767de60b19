"""The command line end to end on tiny settings, including its error paths."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dgm
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


@pytest.mark.parametrize(
    "command", ["models", "datasets", "download", "train", "eval", "sample", "bench", "report"]
)
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
    assert code == 0 and arr.shape == (16, 64) and set(np.unique(arr)) <= {0, 1} and arr.dtype == np.int64
    code, _, _ = run(capsys, "sample", str(out), "-n", "9", "--out", str(tmp_path / "g.png"))
    assert code == 0 and (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_sample_without_out_keeps_what_the_run_holds(trained, capsys):
    out, _ = trained
    from_training = (out / "samples.png").read_bytes()
    names = []
    for _ in range(2):
        code, stdout, err = run(capsys, "sample", str(out), "-n", "4")
        assert code == 0, err
        names.append(Path(stdout.split(" written to ")[1].split()[0]).name)
    assert names == ["samples-n4-seed0.png", "samples-n4-seed0-2.png"]
    assert (out / "samples.png").read_bytes() == from_training
    # More samples than this machine has memory for: one line before any work, nothing written
    code, _, err = run(capsys, "sample", str(out), "-n", str(2**40))
    assert code == 2 and "more than this machine's" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.glob("samples*")) == [
        "samples-n4-seed0-2.png",
        "samples-n4-seed0.png",
        "samples.png",
    ]


def test_running_out_of_memory_while_sampling_is_one_line(trained, capsys, monkeypatch):
    out, _ = trained

    def exhausted(self, *args, **kwargs):  # what torch's CPU allocator raises
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(type(dgm.load(out)), "sample", exhausted)
    code, _, err = run(capsys, "sample", str(out), "-n", "4")
    assert code == 2 and "out of memory while sampling" in err and len(err.strip().splitlines()) == 1


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
        "--ema-decay",
        "0.9",
        "--no-progress",
    )
    assert code == 0, err
    assert len((out / "metrics.csv").read_text().splitlines()) == 6
    # The run had no average; resumed with --ema-decay it starts one and checkpoints it.
    from dgm.core import checkpoint as ckpt

    tensors, _ = ckpt.load_tensors(out / ckpt.TRAINING_STATE)
    assert "ema.logits" in tensors


def test_the_optimizer_is_chosen_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "sgd"
    code, stdout, err = run(
        capsys,
        *("train", "independent", "--data", "digits-binary", "--method", "gradient", "--epochs", "1"),
        *("--optimizer", "sgd", "--momentum", "0.5", "--lr", "0.1", "--out", str(out), "--no-progress"),
    )
    assert code == 0, err
    assert "sgd steps" in stdout
    assert json.loads((out / "run.json").read_text())["training"]["optimizer"] == "sgd"
    code, _, err = run(
        capsys, "train", "independent", "--data", "digits-binary", "--method", "gradient", "--momentum", "0.9"
    )
    assert code != 0 and "momentum" in err and "Traceback" not in err  # Adam has no momentum option


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
    code, _, err = run(capsys, "sample", str(tmp_path / "t"), "-n", "3")  # the default file is text too
    assert code == 0, err
    assert (tmp_path / "t" / "samples-n3-seed0.txt").read_text() == text


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
        # Values a model option cannot take: named, not failing deep inside the model or stored as text
        (
            ["train", "maf", "--data", "moons", "--batch-norm", "maybe"],
            "option batch_norm must be true or false",
        ),
        (
            ["train", "independent", "--data", "digits-binary", "--alpha", "abc"],
            "option alpha must be a number",
        ),
        (["train", "maf", "--data", "moons", "--num-layers", "2.5"], "option num_layers must be an integer"),
        (
            ["train", "maf", "--data", "moons", "--num-layers", "--max-steps", "3"],
            "--num-layers needs a value",
        ),
        (
            ["train", "independent", "--data", "digits-binary", "--num-train", "-3"],
            "--num-train must be at least",
        ),
        (
            ["train", "independent", "--data", "digits-binary", "--num-samples", "-2"],
            "--num-samples must be at",
        ),
        (
            ["train", "independent", "--data", "digits-binary", "--max-steps", "0"],
            "max_steps must be a positive",
        ),
        (
            ["train", "independent", "--data", "digits-binary", "--patience", "-1"],
            "patience must be a positive",
        ),
        (
            ["train", "independent", "--data", "digits-binary", "--weight-decay", "-1"],
            "weight_decay must be >= 0",
        ),
        (["train", "independent", "--data", "digits-binary", "--checkpoint-every", "-5"], "checkpoint_every"),
        (["eval", "/nonexistent/run", "--batch-size", "0"], "--batch-size must be at least 1"),
        (
            ["train", "made", "--data", "digits-binary", "--labels-per-class", "5"],
            "only a semi-supervised model",
        ),
        (
            ["train", "made", "--data", "digits-binary", "--eval-num-samples", "5"],
            "made has an exact log_prob",
        ),
        (
            ["train", "independent", "--data", "digits-binary", "--ema-decay", "0.9"],
            "a closed-form/EM fit has none",
        ),
        (["eval", "/nonexistent/run", "--scores", "x.json"], "--scores must end in .csv or .npy"),
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
    )  # with the progress display: its epoch lines print no bits/dim for a discriminative model
    assert code == 0, err
    assert "valid " in out + err and "Traceback" not in err
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
    # An estimate is drawn once: the per-example scores are those the reported NLL averages.
    scores = tmp_path / "s.npy"
    code, stdout, _ = run(capsys, "eval", str(out), "--num-samples", "3", "--scores", str(scores))
    assert code == 0 and "(estimate)" in stdout
    nll = json.loads((out / "results.json").read_text())["test"]["nll"]
    assert -np.load(scores).mean() == pytest.approx(nll, rel=1e-12)


# ---------------------------------------------------------------------------- superres, denoise, purify
TINY_PIXEL = ["--channels", "4", "--num-layers", "1", "--kernel-size", "3", "--first-kernel-size", "3",
              "--output-channels", "4"]  # fmt: skip
QUICK = ["--epochs", "1", "--num-train", "100", "--num-samples", "4", "--no-progress"]


def _quiet(*argv):
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    assert code == 0, argv


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    """Tiny runs for the tasks: an image-conditioned gated PixelCNN (8x8 digits given their 4x4
    average pooling), a categorical(17) gated PixelCNN, a RealNVP on dequantised digits, an FVSBN."""
    root = tmp_path_factory.mktemp("task_runs")
    pixel = ["gated-pixelcnn", *TINY_PIXEL, *QUICK]
    _quiet("train", *pixel, "--data", "digits-binary", "--context-shape", "1,4,4", "--out", str(root / "sr"))
    _quiet("train", *pixel, "--data", "digits", "--out", str(root / "pc"))
    flow = ["--num-layers", "2", "--hidden-sizes", "16", *QUICK]
    _quiet("train", "realnvp", "--data", "digits-dequantized", *flow, "--out", str(root / "flow"))
    _quiet("train", "fvsbn", "--data", "digits-binary", *QUICK, "--out", str(root / "fvsbn"))
    return root


def one_line_error(code, err, message):
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_image_conditioned_run_trains_evaluates_and_samples(task_runs, capsys, tmp_path):
    run_dir = task_runs / "sr"
    info = json.loads((run_dir / "run.json").read_text())["data"]
    assert info["low_resolution_factor"] == 2 and (run_dir / "samples.png").is_file()
    results = json.loads((run_dir / "results.json").read_text())["test"]
    assert results["likelihood_of"] == "inputs given the context, log p(x | context)"
    code, out, err = run(capsys, "eval", str(run_dir))
    assert code == 0 and f"{results['nll']:.3f}" in out, err
    code, out, err = run(capsys, "sample", str(run_dir), "-n", "3", "--out", str(tmp_path / "s.npy"))
    assert code == 0 and "average-pooled" in out, err
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (3, 1, 8, 8) and set(np.unique(arr)) <= {0.0, 1.0}
    code, out, err = run(capsys, "inpaint", str(run_dir), "--mask", "bottom-half", "-n", "2", "-k", "2",
                         "--out", str(tmp_path / "c.npy"))  # fmt: skip
    assert code == 0 and "downsampling" in out, err
    completions, data = np.load(tmp_path / "c.npy"), dgm.data.load("digits-binary", "test").x[:2].numpy()
    assert (completions[:, :, 0, :4].reshape(2, 2, 32) == data[:, None, :32]).all()  # top half kept


def test_superres_writes_samples_figures_and_grid(task_runs, capsys, tmp_path):
    out = tmp_path / "sr"
    code, text, err = run(capsys, "superres", str(task_runs / "sr"), "-n", "3", "-k", "2", "--out", str(out))
    assert code == 0, err
    assert "factor 2 (8x8 -> 4x4)" in text and "consistency error" in text and "conditional NLL = " in text
    assert np.load(out / "superres.npy").shape == (3, 2, 1, 8, 8)
    figures = json.loads((out / "superres.json").read_text())
    assert figures["factor"] == 2 and figures["context_shape"] == [1, 4, 4] and figures["exact"]
    assert 0 <= figures["consistency_error"] <= 1 and figures["conditional_nll"] > 0
    assert (out / "superres.png").read_bytes()[:4] == b"\x89PNG"


def test_denoise_a_flow_and_a_binary_model(task_runs, capsys, tmp_path):
    out = tmp_path / "flow"
    code, text, err = run(capsys, "denoise", str(task_runs / "flow"), "--noise", "gaussian:0.1", "-n", "3",
                          "--num-samples", "2", "--steps", "6", "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert "flow-latent" in text and "PSNR" in text
    assert np.load(out / "samples.npy").shape == (3, 2, 64) and np.load(out / "mean.npy").shape == (3, 64)
    assert (out / "denoise.png").is_file() and np.load(out / "noisy.npy").shape == (3, 64)
    code, text, err = run(capsys, "denoise", str(task_runs / "fvsbn"), "--noise", "flip:0.1", "-n", "3",
                          "--num-samples", "2", "--steps", "2")  # fmt: skip
    assert code == 0, err
    out = task_runs / "fvsbn" / "denoise"  # the default: RUN/denoise
    assert "flip-mh" in text and "values wrong" in text
    samples = np.load(out / "samples.npy")
    assert samples.shape == (3, 2, 64) and set(np.unique(samples)) <= {0.0, 1.0}
    assert all((out / f).is_file() for f in ("denoise.png", "mean.npy", "noisy.npy"))


def test_purify_trains_a_classifier_attacks_and_purifies(task_runs, capsys, tmp_path):
    out = tmp_path / "p"
    code, text, err = run(capsys, "purify", str(task_runs / "pc"), "--train-classifier",
                          "--classifier-minutes", "0.002", "--attack", "fgsm", "--eps", "0.1", "-n", "4",
                          "--num-train-scores", "20", "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert "fgsm" in text and "AUROC" in text and "purified" in text
    for name in ("report.json", "attacked.npy", "purified.npy", "purify.png"):
        assert (out / name).is_file(), name
    assert {p.name for p in (out / "classifier").iterdir()} == {"classifier.json", "classifier.safetensors"}
    report = json.loads((out / "report.json").read_text())
    assert report["rows"][0]["attack"] == "fgsm" and report["rows"][0]["eps"] == 0.1
    attacked, purified = np.load(out / "attacked.npy"), np.load(out / "purified.npy")
    assert attacked.shape == purified.shape == (4, 1, 8, 8)
    # Purification with eps_defend = 0.1 moves each of 17 levels by at most floor(0.1 * 16) = 1.
    assert np.abs(purified - attacked).max() <= 1 and (purified == np.round(purified)).all()
    code, text, err = run(capsys, "purify", str(task_runs / "pc"), "--classifier", str(out / "classifier"),
                          "--attack", "pgd", "--pgd-steps", "2", "--eps", "0.2", "-n", "2",
                          "--num-train-scores", "10", "--out", str(tmp_path / "p2"))  # fmt: skip
    assert code == 0 and "pgd" in text, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["purify", "pc", "--train-classifier", "--eps", "1.5"], "--eps must lie in [0, 1]"),
        (["purify", "pc", "--train-classifier", "--eps-defend", "nan"], "--eps-defend must lie in [0, 1]"),
        (["purify", "fvsbn", "--train-classifier"], "purify needs a model of images of integer levels"),
        (["purify", "pc", "--classifier", "nowhere"], "nowhere"),
        (["superres", "sr", "--factor", "3"], "--factor 3 does not divide the image size 8x8"),
        (["superres", "sr", "--factor", "4"], "use --factor 2"),
        (["superres", "fvsbn"], "not conditioned on an image"),
        (["denoise", "flow", "--noise", "salt:0.1"], "unknown noise 'salt:0.1'"),
        (["denoise", "flow", "--noise", "gaussian:x"], "needs a number after the colon"),
        (["denoise", "fvsbn", "--noise", "flip:0.7"], "flip noise rate must be in (0, 0.5)"),
        (["denoise", "fvsbn", "--noise", "gaussian:0.1"], "needs a real-valued model"),
        (["denoise", "fvsbn", "--noise", "flip:0.1", "--steps", "2", "--burn-in", "5"], "--burn-in must be"),
    ],
)
def test_task_errors_are_one_line_and_write_nothing(argv, message, task_runs, capsys, tmp_path):
    command, run_name, *rest = argv
    out = tmp_path / "out"
    code, _, err = run(capsys, command, str(task_runs / run_name), *rest, "--out", str(out))
    one_line_error(code, err, message)
    assert not out.exists()


def test_task_out_must_be_a_directory(task_runs, capsys, tmp_path):
    code, _, err = run(capsys, "superres", str(task_runs / "sr"), "--out", str(tmp_path / "x.png"))
    one_line_error(code, err, "--out is a directory")
    (tmp_path / "file").write_text("")
    code, _, err = run(capsys, "denoise", str(task_runs / "flow"), "--noise", "gaussian:0.1", "--out",
                       str(tmp_path / "file"))  # fmt: skip
    one_line_error(code, err, "--out must be a directory")


def test_unwritable_outputs_are_one_line_and_keep_the_run(trained, capsys, tmp_path):
    out, _ = trained
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    for argv in (
        ["train", "independent", "--data", "digits-binary", "--out", a_file],
        ["train", "independent", "--data", "digits-binary", "--out", a_file / "sub"],
        ["sample", out, "-n", "2", "--out", a_file / "x.png"],
        ["eval", out, "--scores", a_file / "s.csv"],
    ):
        code, _, err = run(capsys, *map(str, argv))
        assert code == 2 and err.startswith("dgm: error: ") and len(err.strip().splitlines()) == 1, err
    assert a_file.read_text() == "x"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_sample_file_type_follows_the_data(trained, capsys, tmp_path):
    out, _ = trained
    code, _, err = run(capsys, "sample", str(out), "-n", "2", "--out", str(tmp_path / "s.txt"))
    assert code == 2 and "figure (.png) or .npy" in err and not (tmp_path / "s.txt").exists()


def test_nan_weights_are_refused_on_load(trained, capsys):
    from dgm.core import checkpoint as ckpt

    out, _ = trained
    tensors, meta = ckpt.load_tensors(out / ckpt.WEIGHTS)
    name = next(iter(tensors))
    tensors[name] = tensors[name].clone().fill_(float("nan"))
    ckpt.save_tensors(out / ckpt.WEIGHTS, tensors, meta)
    code, _, err = run(capsys, "sample", str(out), "-n", "2", "--out", str(out / "s.npy"))
    assert code == 2 and f"parameter {name} holds NaN values" in err


def test_resume_records_changed_options_and_says_when_nothing_is_left(trained, capsys):
    out, _ = trained
    base = ["train", "independent", "--data", "digits-binary", "--method", "gradient", "--lr", "0.05"]
    code, stdout, err = run(
        capsys, *base, "--epochs", "4", "--lr", "0.01", "--out", str(out), "--resume", "--no-progress"
    )
    assert code == 0, err
    assert "resumed with changed options" in stdout and "lr 0.05 → 0.01" in stdout
    info = json.loads((out / "run.json").read_text())
    assert info["training"]["lr"] == 0.01 and info["training"]["epochs"] == 4
    assert info["resumes"] == [
        {
            "at_epoch": 3,
            "at_step": info["resumes"][0]["at_step"],
            "changed": {"epochs": [3, 4], "lr": [0.05, 0.01]},
        }
    ]
    code, stdout, err = run(
        capsys, *base, "--epochs", "2", "--lr", "0.01", "--out", str(out), "--resume", "--no-progress"
    )
    assert code == 0, err
    assert "already finished: nothing more was trained" in stdout


def test_a_real_density_on_discrete_data_is_flagged(tmp_path, capsys):
    code, _, err = run(
        capsys, "train", "independent", "--data", "digits-binary", "--support", "real", "--epochs", "1",
        "--out", str(tmp_path / "r"), "--no-progress",
    )  # fmt: skip
    assert code == 0 and "a real-valued density on binary data" in err


def test_unreadable_npy_data_is_one_line(task_runs, capsys, tmp_path):
    empty, strings, flat = tmp_path / "empty.npy", tmp_path / "strings.npy", tmp_path / "flat.npy"
    empty.write_bytes(b"")
    np.save(strings, np.array([["a"] * 64] * 3))
    np.save(flat, np.zeros(64))
    for path, message in (
        (empty, "not a readable .npy array"),
        (strings, "must be numeric"),
        (flat, "(N, *event_shape)"),
    ):
        code, _, err = run(capsys, "anomaly", str(task_runs / "fvsbn"), "--out", str(path))
        one_line_error(code, err, message)
