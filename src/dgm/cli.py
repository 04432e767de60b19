"""The ``dgm`` command line (DESIGN.md §7): models, datasets, download, train, eval, sample.

Every error a user can cause is one line on stderr and exit status 2 (130 when interrupted).
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

from dgm.core.errors import ConfigError, DgmError
from dgm.core.support import Support

EXAMPLES = {
    "models": "examples:\n  dgm models\n  dgm models independent      # options and docstring of one model",
    "datasets": "examples:\n  dgm datasets\n  DGM_DATA_DIR=../shared/data dgm datasets",
    "download": "examples:\n  dgm download tinyshakespeare\n  dgm download mnist --data-dir ~/data",
    "train": (
        "examples:\n"
        "  dgm train independent --data digits-binary --out runs/indep\n"
        "  dgm train independent --data digits-binary --method gradient --lr 0.05 --out runs/sgd\n"
        "  dgm train independent --data binarized-mnist --alpha 0.5 --out runs/bmnist\n"
        "  dgm train independent --data tinyshakespeare --data-opt seq_len=128 --out runs/text\n"
        "  dgm train independent --data digits-binary --method gradient --lr 0.05 --out runs/sgd --resume\n\n"
        "Options not listed above are the model's own (see `dgm models MODEL`),\n"
        "written --name value, e.g. --alpha 0.5; lists as --hidden-sizes 500,500."
    ),
    "eval": "examples:\n  dgm eval runs/indep\n  dgm eval runs/indep --split valid --scores scores.csv",
    "sample": (
        "examples:\n  dgm sample runs/indep -n 64 --out samples.png\n"
        "  dgm sample runs/indep -n 1000 --out s.npy"
    ),
}


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="dgm",
        description="Deep generative models: train, evaluate, sample.",
        formatter_class=fmt,
        epilog="run `dgm COMMAND --help` for examples",
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "models", help="list registered models", epilog=EXAMPLES["models"], formatter_class=fmt
    )
    s.add_argument("name", nargs="?", help="show one model's options")

    s = sub.add_parser(
        "datasets",
        help="list datasets and whether their files are present",
        epilog=EXAMPLES["datasets"],
        formatter_class=fmt,
    )
    s.add_argument("--data-dir", help="data directory (default: $DGM_DATA_DIR, else ~/.cache/dgm)")

    s = sub.add_parser(
        "download",
        help="download a dataset's files into the data directory",
        epilog=EXAMPLES["download"],
        formatter_class=fmt,
    )
    s.add_argument("name")
    s.add_argument("--data-dir")

    s = sub.add_parser(
        "train", help="train a model on a dataset", epilog=EXAMPLES["train"], formatter_class=fmt
    )
    s.add_argument("model", help="registered model name (see `dgm models`)")
    s.add_argument("--data", required=True, help="dataset name (see `dgm datasets`)")
    s.add_argument("--data-dir", help="data directory (default: $DGM_DATA_DIR, else ~/.cache/dgm)")
    s.add_argument(
        "--data-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset option, e.g. seq_len=128 (repeatable)",
    )
    s.add_argument("--download", action="store_true", help="download missing data files")
    s.add_argument("--out", help="run directory (default: runs/MODEL-DATA-TIME)")
    s.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    s.add_argument("--epochs", type=int, default=50)
    s.add_argument("--batch-size", type=int, default=100)
    s.add_argument("--lr", type=float, default=1e-3)
    s.add_argument("--weight-decay", type=float, default=0.0)
    s.add_argument("--grad-clip", type=float, default=100.0, help="max gradient norm (0 disables)")
    s.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs (0 disables)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--method",
        choices=["auto", "gradient", "fit"],
        default="auto",
        help="auto: the model's closed-form/EM fit where it has one, else gradient training",
    )
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    s.add_argument("--max-minutes", type=float, help="stop after this many minutes of training")
    s.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine", "exponential"],
        default="constant",
        help="cosine: anneal to --lr-min over the run; exponential: times --lr-gamma every epoch",
    )
    s.add_argument("--lr-min", type=float, default=0.0)
    s.add_argument("--lr-gamma", type=float, default=1.0)
    s.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up")
    s.add_argument(
        "--checkpoint-every", type=float, default=300.0, help="seconds between mid-epoch checkpoints"
    )
    s.add_argument("--num-train", type=int, help="use only the first N training examples")
    s.add_argument(
        "--num-samples",
        type=int,
        help="samples drawn for samples.png (default: 64 images, 2000 points, 4 texts)",
    )
    s.add_argument("--no-progress", action="store_true")

    s = sub.add_parser(
        "eval", help="evaluate a trained run on a split", epilog=EXAMPLES["eval"], formatter_class=fmt
    )
    s.add_argument("run_dir")
    s.add_argument("--split", default="test")
    s.add_argument("--num-samples", type=int, help="importance samples K for latent-variable models")
    s.add_argument("--batch-size", type=int, default=1000)
    s.add_argument("--data-dir")
    s.add_argument("--device", default="auto")
    s.add_argument("--scores", help="write per-example log-likelihoods (nats) to this .csv or .npy file")

    s = sub.add_parser(
        "sample", help="draw samples from a trained run", epilog=EXAMPLES["sample"], formatter_class=fmt
    )
    s.add_argument("run_dir")
    s.add_argument("-n", "--num-samples", type=int, default=64)
    s.add_argument("--out", help="output file: .png (grid or scatter), .txt (text), .npy (raw array)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--data-dir")
    return p


# ---------------------------------------------------------------------------- helpers
def _version() -> str:
    from dgm import __version__

    return f"dgm {__version__}"


def _parse_value(text: str):
    """'3' → 3, '0.5' → 0.5, '500,500' → [500, 500], 'true' → True, '[1, 2]' → [1, 2], else the string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if "," in text and not text.startswith(("[", "(")):
        return [_parse_value(t) for t in text.split(",") if t]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _model_options(extra: list[str]) -> dict:
    """Turn ``--hidden-sizes 500,500 --flag`` into ``{"hidden_sizes": [500, 500], "flag": True}``."""
    opts, i = {}, 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or tok == "--":
            raise ConfigError(f"unexpected argument {tok!r}; model options are written --name value")
        key, eq, value = tok[2:].partition("=")
        if not eq:
            if i + 1 < len(extra) and not extra[i + 1].startswith("--"):
                value, i = extra[i + 1], i + 1
            else:
                value = "true"
        opts[key.replace("-", "_")] = _parse_value(value)
        i += 1
    return opts


def _data_options(pairs: list[str]) -> dict:
    opts = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq:
            raise ConfigError(f"--data-opt needs KEY=VALUE, got {pair!r}")
        opts[key.replace("-", "_")] = _parse_value(value)
    return opts


def _data_info(ds) -> dict:
    info = ds.describe()
    info["image_shape"] = list(ds.image_shape) if ds.image_shape else None
    info["vocab"] = ds.vocab
    k = Support.parse(ds.support).num_categories
    info["value_range"] = [0, k - 1] if k else None
    return info


def _load_split(name: str, split: str, data_dir, download: bool, options: dict, event_shape=None):
    from dgm import data

    ds = data.load(name, split, data_dir=data_dir, download=download, **options)
    return ds if event_shape is None else ds.reshape_to(tuple(event_shape))


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


def _fmt_result(res: dict) -> str:
    sign = "=" if res["exact"] else "≈"
    extra = f", K={res['num_samples']}" if "num_samples" in res else ""
    bin_ = f", {res['binarization']} binarization" if res.get("binarization") else ""
    bpd = f", {res['bits_per_dim']:.4f} bits/dim" if res.get("bits_per_dim") is not None else ""
    of = f" of {res['likelihood_of']}" if res.get("likelihood_of") else ""
    acc = f"; accuracy {100 * res['accuracy']:.2f}%" if "accuracy" in res else ""
    return (
        f"{res['dataset']}/{res['split']} (n={res['num_examples']}{bin_}{extra}): "
        f"NLL{of} {sign} {res['nll']:.3f} ± {res['nll_stderr']:.3f} nats{bpd} "
        f"({'exact' if res['exact'] else 'estimate'}){acc}"
    )


def _update_results(run_dir: Path, split: str, res: dict) -> None:
    from dgm.core import checkpoint as ckpt

    path = run_dir / ckpt.RESULTS
    results = ckpt.read_json(path) if path.exists() else {}
    results[split] = res
    ckpt.write_json(path, results)


# ---------------------------------------------------------------------------- commands
def cmd_models(args) -> None:
    from dgm.core.registry import get_entry, list_models

    if args.name:
        entry = get_entry(args.name)
        print(
            f"{entry.name}: {entry.description}\npaper: {entry.paper}\nfamily: {entry.family}\n"
            f"log_prob: {'exact' if entry.cls.exact else 'estimate'}\nsupports: {', '.join(entry.supports)}\n"
        )
        print("options (CLI: --name value):")
        for k, p in entry.options().items():
            default = "" if p.default is p.empty else f" = {p.default!r}"
            print(f"  --{k.replace('_', '-')}{default}")
        doc = (entry.cls.__doc__ or "").strip()
        if doc:
            print("\n" + doc)
        return
    _print_table(list_models(), ["name", "family", "exact", "description", "paper"])


def cmd_datasets(args) -> None:
    from dgm import data

    root = data.resolve_data_dir(args.data_dir)
    rows = data.list_datasets(root)
    cols = ["name", "splits", "event_shape", "support", "files", "description"]
    _print_table([{k: _short(v) for k, v in r.items()} for r in rows], cols)
    print(f"\ndata directory: {root}  (missing files: `dgm download NAME`)")


def _short(v):
    if isinstance(v, dict):
        return "/".join(f"{k}:{n}" for k, n in v.items())
    if isinstance(v, list | tuple):
        return "×".join(map(str, v)) if all(isinstance(i, int) for i in v) else ",".join(map(str, v))
    return v


def cmd_download(args) -> None:
    from dgm import data

    paths = data.fetch(args.name, data_dir=args.data_dir)
    for p in paths:
        print(f"downloaded {p}")
    if not paths:
        print(f"all files of {args.name} are already in {data.resolve_data_dir(args.data_dir)}")


def cmd_train(args, extra: list[str]) -> None:
    import torch

    import dgm
    from dgm.core.registry import get_entry
    from dgm.evaluation import evaluate
    from dgm.training import seed_everything, train
    from dgm.viz import save_samples, training_curves

    entry = get_entry(args.model)
    model_opts = _model_options(extra)
    data_opts = _data_options(args.data_opt)
    train_ds = _load_split(args.data, "train", args.data_dir, args.download, data_opts)
    if args.num_train is not None:
        train_ds = train_ds.take(args.num_train)
    support_kind = train_ds.support.split("(")[0]
    if "support" not in model_opts:
        if support_kind not in entry.supports:
            raise ConfigError(
                f"model {entry.name!r} handles {'/'.join(entry.supports)} data but {args.data} is "
                f"{train_ds.support}"
            )
        if "support" in entry.options():
            model_opts["support"] = train_ds.support
    if "event_shape" not in model_opts:
        # Image models (PixelCNN) read flat binarized MNIST as the images it holds: (1, 28, 28).
        image = entry.shape == "image" and train_ds.image_shape
        model_opts["event_shape"] = list(train_ds.image_shape if image else train_ds.event_shape)
    event_shape = model_opts["event_shape"]
    train_ds = train_ds.reshape_to(tuple(event_shape))
    valid_ds = _load_split(args.data, "valid", args.data_dir, False, data_opts, event_shape)

    out = (
        Path(args.out)
        if args.out
        else Path("runs") / f"{args.model}-{args.data}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    seed_everything(args.seed)  # before building, so initial weights follow the seed
    model = dgm.build(args.model, **model_opts)
    print(
        f"model {args.model}: {model.num_parameters():,} parameters; data {args.data}: "
        f"{len(train_ds)} train / {len(valid_ds)} valid, event shape {tuple(event_shape)}, {train_ds.support}"
    )
    run_info = {
        "data": {
            "name": args.data,
            "options": data_opts,
            "event_shape": list(event_shape),
            "num_train": args.num_train,
            **_data_info(train_ds),
        },
        "command": " ".join(["dgm", *args.argv]),
    }
    result = train(
        model,
        train_ds,
        valid_ds,
        out=out,
        resume=args.resume,
        progress=not args.no_progress,
        run_info=run_info,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip or None,
        patience=args.patience or None,
        seed=args.seed,
        method=args.method,
        device=args.device,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        lr_schedule=args.lr_schedule,
        lr_min=args.lr_min,
        lr_gamma=args.lr_gamma,
        warmup_steps=args.warmup_steps,
        checkpoint_every=args.checkpoint_every,
    )
    unit = "Adam steps" if result.method == "gradient" else "fit iterations (closed form / EM)"
    print(
        f"trained {result.steps} {unit} in {result.elapsed_s:.1f} s; best epoch {result.best_epoch}"
        + (" (stopped early)" if result.stopped_early else "")
    )
    test_ds = _load_split(args.data, "test", args.data_dir, False, data_opts, event_shape)
    res = evaluate(model, test_ds)
    _update_results(out, "test", res)
    print(_fmt_result(res))
    if getattr(model, "discriminative", False):
        print(f"run directory: {out}  (metrics.csv, results.json; a discriminative model draws no samples)")
        return
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    num = args.num_samples or {"points": 2000, "text": 4}.get(train_ds.kind, 64)
    samples = model.sample(num, generator=gen)
    path = save_samples(
        samples,
        out / "samples.png",
        _data_info(train_ds),
        model=model,
        data=valid_ds.x if train_ds.kind == "points" else None,
        title=f"{args.model} on {args.data}",
    )
    if len(result.history) > 1:
        training_curves(result.history, out / "curves.png", title=f"{args.model} on {args.data}")
    print(f"run directory: {out}  (samples: {path.name}, metrics.csv, results.json)")


def cmd_eval(args) -> None:

    import dgm
    from dgm.core import checkpoint as ckpt
    from dgm.evaluation import evaluate, log_prob_dataset
    from dgm.training import resolve_device

    run_dir = Path(args.run_dir)
    model = dgm.load(run_dir, device=resolve_device(args.device))
    info = ckpt.read_json(run_dir / ckpt.RUN)["data"]
    ds = _load_split(
        info["name"], args.split, args.data_dir, False, info.get("options", {}), model.event_shape
    )
    kw = {"num_samples": args.num_samples} if args.num_samples is not None else {}
    if args.num_samples is not None and model.exact:
        raise ConfigError(
            f"{model.name} has an exact log_prob; --num-samples applies to latent-variable models"
        )
    res = evaluate(model, ds, batch_size=args.batch_size, **kw)
    _update_results(run_dir, args.split, res)
    print(_fmt_result(res))
    if args.scores:
        scores = log_prob_dataset(model, ds, args.batch_size, **kw).numpy()
        out = Path(args.scores)
        if out.suffix == ".npy":
            _save_npy(out, scores)
        else:
            ckpt.atomic_write(
                out, "index,log_prob_nats\n" + "".join(f"{i},{s:.6f}\n" for i, s in enumerate(scores))
            )
        print(f"per-example log-likelihoods written to {out}")


def _save_npy(path: Path, array) -> Path:
    """Write a plain (pickle-free) .npy file atomically."""
    import io

    import numpy as np

    from dgm.core.checkpoint import atomic_write

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write(path, buf.getvalue())
    return path


def cmd_sample(args) -> None:
    import torch

    import dgm
    from dgm.core import checkpoint as ckpt
    from dgm.training import resolve_device
    from dgm.viz import save_samples

    run_dir = Path(args.run_dir)
    model = dgm.load(run_dir, device=resolve_device(args.device))
    info = ckpt.read_json(run_dir / ckpt.RUN)["data"]
    n = args.num_samples
    if n < 1:
        raise ConfigError(f"-n must be at least 1, got {n}")
    if getattr(model, "discriminative", False):
        raise ConfigError(f"{model.name} is discriminative (it models p(y | x)): it has no samples to draw")
    gen = torch.Generator(device=model.device).manual_seed(args.seed)
    with torch.no_grad():
        samples = model.sample(n, generator=gen)
    out = Path(args.out) if args.out else run_dir / "samples.png"
    if out.suffix == ".npy":
        path = _save_npy(out, samples.cpu().numpy())
    elif out.suffix in (".png", ".txt"):
        path = save_samples(samples, out, info, model=model, title=f"{model.name}: {n} samples")
    else:
        raise ConfigError(f"--out must end in .png, .txt or .npy, got {out.name!r}")
    print(f"{n} samples written to {path}")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, extra = parser.parse_known_args(argv)
    args.argv = argv
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "train":
            cmd_train(args, extra)
        else:
            {
                "models": cmd_models,
                "datasets": cmd_datasets,
                "download": cmd_download,
                "eval": cmd_eval,
                "sample": cmd_sample,
            }[args.command](args)
    except DgmError as e:
        print(f"dgm: error: {e}", file=sys.stderr)
        return 130 if type(e).__name__ == "TrainingInterrupted" else 2
    except KeyboardInterrupt:
        print("dgm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
