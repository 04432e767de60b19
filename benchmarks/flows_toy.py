"""Flows on the 2-D toy densities (issue #6): dgm against nflows and zuko, same architecture, same data,
same training loop, same machine, in one run.

    DGM_DATA_DIR=../shared/data python -m benchmarks.flows_toy --peers .peers/bin/python
    python -m benchmarks.flows_toy --toys moons --models maf --epochs 50      (the MAF moons target row)
    python -m benchmarks.flows_toy --toys moons --models maf --epochs 50 --seeds 8 --maf-hidden 100,100 \
        --section flows-maf-moons-2x100                    (the same with the CS236 reference's MADE)
    python -m benchmarks.flows_toy --toys digits --epochs 100 --section flows-digits   (dequantised digits)
    python -m benchmarks.flows_toy --models maf,iaf --residual-blocks 1 --shift after --peers ... \
        --section flows-toy-resmade       (dgm's MAF/IAF with nflows' conditioner, a ResMADE of one block)
    python -m benchmarks.flows_toy --models realnvp --dgm-option realnvp.scale_clamp=6.9 --peers ... \
        --section flows-toy-realnvp-clamp          (one dgm option changed, e.g. zuko's log-scale bound)
    python -m benchmarks.flows_toy --toys pinwheel,spirals --models realnvp --seeds 12 --peers ... \
        --peer-libraries zuko --section flows-toy-realnvp-12-seeds     (one comparison, more seeds)
    python -m benchmarks.flows_toy ... --swap-xy      (the toys' coordinates swapped, for every library)
    python -m benchmarks.flows_toy --smoke                                    (~1 min, RESULTS.md untouched)

The peers live in their own environment (``benchmarks/peers/requirements.txt``), never in dgm's
dependencies; ``benchmarks/peers/flows_toy_peers.py`` runs there on the same data, passed as an .npz
file. Without ``--peers`` only the dgm rows are measured.

Protocol (every library): each toy's 24k/3k/3k split standardised with the training mean and standard
deviation (NLL in nats on the standardised scale, as the CS236 reference reports two moons), Adam lr 1e-3,
batch 100, gradient norm clipped at 100, ``--epochs`` epochs, the weights of the best validation epoch
scored on the test split. Architectures, identical across libraries: NICE 4 additive couplings with a
ReLU MLP 100-100 and a final diagonal scaling, Gaussian base; RealNVP 6 affine couplings, MLP 100-100;
MAF and IAF 5 MADE (1 hidden layer of 100) affine layers with the order reversed between layers (nflows
applies its activation only inside residual blocks, so its closest MADE 1×100 is one block: with h = W0 x,
W3 (h + W2 relu(W1 relu(h))), the same function class with more parameters; without a block its MADE is
linear; ``--residual-blocks 1`` gives dgm's MAF/IAF that very ResMADE, parameter for parameter, and drops
zuko's rows); Gaussianization flow 6 layers of 20 logistic kernels per dimension with a Householder
rotation (zuko's GF; nflows has none),
dgm's initialised from training-data quantiles as the paper does (zuko has no data initialisation). One
thread per process: these models are small, and the 2-core machine is shared. "time/epoch" is the
median wall time of one epoch of training steps (validation excluded).

Anchor: MAF (5 layers, MADE 1×100) on two moons, 50 epochs: test NLL ≈ 1.19–1.2 nats (Stanford CS236).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import dgm
from benchmarks.common import table, update_results
from dgm.core.registry import get_entry
from dgm.data.transforms import Standardize
from dgm.models.flows.transforms.autoregressive import SHIFTS
from dgm.training import seed_everything

TOYS = ("moons", "circles", "8gaussians", "checkerboard", "pinwheel", "spirals")
ARCH = {
    "nice": {"num_layers": 4, "hidden_sizes": [100, 100]},
    "realnvp": {"num_layers": 6, "hidden_sizes": [100, 100]},
    "maf": {"num_layers": 5, "hidden_sizes": [100]},
    "iaf": {"num_layers": 5, "hidden_sizes": [100]},
    "gaussianization-flow": {"num_layers": 6, "num_components": 20},
}
DGM_OPTIONS = {
    # NICE's scaling from the identity, as nflows' and zuko's (dgm's default starts it from the data).
    "nice": {"base": "normal", "data_init": False},
    "realnvp": {"architecture": "flat"},
    "maf": {},
    "iaf": {},
    "gaussianization-flow": {},
}
# The 64-dimensional dequantised digits get wider networks; every library builds the same ones.
ARCH_DIGITS = {
    "nice": {"num_layers": 4, "hidden_sizes": [256, 256]},
    "realnvp": {"num_layers": 6, "hidden_sizes": [256, 256]},
    "maf": {"num_layers": 5, "hidden_sizes": [256]},
    "iaf": {"num_layers": 5, "hidden_sizes": [256]},
    "gaussianization-flow": {"num_layers": 6, "num_components": 20},
}
PEERS = Path(__file__).with_name("peers") / "flows_toy_peers.py"
FIGURES = Path(__file__).with_name("figures")


def standardised(toy: str) -> dict[str, torch.Tensor]:
    splits = {s: dgm.data.load(toy, s).x.float() for s in ("train", "valid", "test")}
    standardize = Standardize.fit(splits["train"])
    return {s: standardize(x)[0] for s, x in splits.items()}


def dequantised_digits() -> dict:
    """``digits-dequantized``: train keeps the integers and redraws u ~ U[0, 1)^64 every batch (for every
    library); valid/test are dgm's fixed draws. All splits are then standardised with the mean/std of one
    dequantised draw of train (the corner pixels are always 0, so unstandardised they live in [0, 1/17)).
    ``offset`` takes an NLL on the standardised scale back to the integer scale x + u of the tables:
    Σ log σ (the standardisation) + D · log 17 (the rescaling by 1/17)."""
    from dataclasses import replace

    from dgm.data.transforms import dequantization_log_det

    splits = {s: dgm.data.load("digits-dequantized", s) for s in ("train", "valid", "test")}
    train = splits["train"]
    dequantize = train.transform
    standardize = Standardize.fit(dequantize(train.x, torch.Generator().manual_seed(0)))

    def transform(x, generator=None):
        return standardize(dequantize(x, generator))[0]

    D = train.num_dims
    return {
        "train": replace(train, transform=transform),
        "train_integers": train.x.float(),
        "valid": standardize(splits["valid"].x.float())[0],
        "test": standardize(splits["test"].x.float())[0],
        "mean": standardize.mean,
        "std": standardize.std,
        "levels": train.levels,
        "offset": float(torch.log(standardize.std).sum()) + dequantization_log_det(D, train.levels),
    }


def architecture(model_name: str, toy: str) -> dict:
    return dict((ARCH_DIGITS if toy == "digits" else ARCH)[model_name])


def dgm_option(model_name: str, key: str):
    """The ``key`` dgm's ``model_name`` is built with here: this benchmark's option, else the default."""
    if key in DGM_OPTIONS[model_name]:
        return DGM_OPTIONS[model_name][key]
    return get_entry(model_name).options()[key].default


def run_dgm(model_name: str, data: dict, args, toy: str = "moons", seed: int = 0) -> dict:
    seed_everything(seed)
    arch = architecture(model_name, toy)
    if "num_components" in arch:  # zuko's GF "components" are dgm's kernels per dimension and layer
        arch["num_kernels"] = arch.pop("num_components")
    D = data["test"].shape[1]
    model = dgm.build(model_name, event_shape=(D,), **arch, **DGM_OPTIONS[model_name])
    if hasattr(model, "initialize"):  # Gaussianization flow: kernel centres from data quantiles
        x0 = data["train"]
        model.initialize(x0 if isinstance(x0, torch.Tensor) else x0.transform(x0.x, torch.Generator()))
    t0 = time.perf_counter()
    res = dgm.train(
        model,
        data["train"],
        data["valid"],
        epochs=args.epochs,
        batch_size=100,
        lr=1e-3,
        patience=None,
        progress=False,
        seed=seed,
    )
    wall = time.perf_counter() - t0
    ev = dgm.evaluate(model, data["test"])
    offset = data.get("offset", 0.0)
    return {
        "library": "dgm",
        "model": model_name,
        "params": model.num_parameters(),
        "epoch_s": statistics.median(r["epoch_time_s"] for r in res.history),
        "valid_nll": res.best_valid_nll + offset,
        "test_nll": ev["nll"] + offset,
        "test_stderr": ev["nll_stderr"],
        "wall_s": wall,
        "_model": model,
    }


def run_peer(
    python: str, library: str, model_name: str, npz: Path, args, toy: str = "moons", seed: int = 0
) -> dict | None:
    spec = {
        "library": library,
        "model": model_name,
        "arch": architecture(model_name, toy),
        "epochs": args.epochs,
        "lr": 1e-3,
        "batch_size": 100,
        "seed": seed,
        "threads": 1,
    }
    offset = 0.0
    if toy == "digits":  # the peer dequantises each training batch itself, as dgm's dataset does
        spec["dequantize_levels"] = 17
        offset = float(np.load(npz)["offset"])
    out = subprocess.run([python, str(PEERS), str(npz), json.dumps(spec)], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"{library} {model_name}: failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    r = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("valid_nll", "test_nll"):
        r[key] += offset
    return r


def density_plot(models: dict, data: torch.Tensor, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = 3.5
    g = torch.linspace(-lim, lim, 200)
    xx, yy = torch.meshgrid(g, g, indexing="xy")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    fig, axes = plt.subplots(1, len(models) + 1, figsize=(3 * (len(models) + 1), 3))
    axes[0].hist2d(data[:, 0].numpy(), data[:, 1].numpy(), bins=100, range=[[-lim, lim]] * 2, cmap="viridis")
    axes[0].set_title("test data")
    for ax, (name, model) in zip(axes[1:], models.items(), strict=True):
        with torch.no_grad():
            density = model.log_prob(grid).exp().reshape(200, 200)
        ax.imshow(density.numpy(), extent=(-lim, lim, -lim, lim), origin="lower", cmap="viridis")
        ax.set_title(name)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


COLUMNS = ["toy", "model", "library", "params", "time/epoch", "test NLL (nats)", "vs dgm"]
SEED_COLUMNS = ["toy", "model", "library", "params", "time/epoch", "test NLL (nats)", "per seed", "vs dgm"]


def difference(peer: dict, ours: dict) -> tuple[float, float]:
    """The peer's test NLL minus dgm's, with the standard error of that difference. The two libraries'
    runs share no randomness but the data (a seed draws each library's own initialisation and batches),
    so the errors add in quadrature: sqrt(se_peer² + se_dgm²)."""
    return peer["test_nll"] - ours["test_nll"], (peer["test_stderr"] ** 2 + ours["test_stderr"] ** 2) ** 0.5


def versus(peer: dict, ours: dict) -> str:
    d, se = difference(peer, ours)
    return f"{d:+.3f} ± {se:.3f}"


def verdict(peer: dict, ours: dict) -> str:
    """'dgm', 'peer' or 'tie': who is ahead by more than twice the difference's standard error."""
    d, se = difference(peer, ours)
    return "dgm" if d > 2 * se else "peer" if d < -2 * se else "tie"


def over_seeds(runs: list[dict]) -> dict:
    """One result from runs with different seeds: the mean test NLL with the standard error of that mean
    across seeds (the seed-to-seed spread, which on the toys exceeds the test set's own error)."""
    if len(runs) == 1:
        return runs[0]
    nll = [r["test_nll"] for r in runs]
    return {
        **runs[0],
        "test_nll": statistics.mean(nll),
        "test_stderr": statistics.stdev(nll) / len(nll) ** 0.5,
        "valid_nll": statistics.mean(r["valid_nll"] for r in runs),
        "epoch_s": statistics.median(r["epoch_s"] for r in runs),
        "per_seed": nll,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toys", default=",".join(TOYS), help="2-D toys, and/or 'digits' (dequantised 8x8)")
    p.add_argument("--models", default=",".join(ARCH))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--peers", help="python of the peers' environment (benchmarks/peers/requirements.txt)")
    p.add_argument(
        "--peer-libraries",
        default="nflows,zuko",
        help="which peers to run from --peers, e.g. zuko (a many-seed rerun of one comparison)",
    )
    p.add_argument("--section", default="flows-toy", help="RESULTS.md section to write")
    p.add_argument("--seeds", type=int, default=1, help="runs per library and model (seeds 0..N-1), averaged")
    p.add_argument(
        "--maf-hidden",
        type=lambda text: [int(h) for h in text.split(",")],
        default=None,
        help="MAF's MADE hidden widths for every library, e.g. 100,100 (default: the protocol's 100)",
    )
    p.add_argument(
        "--shift",
        choices=SHIFTS,
        default=None,
        help="where dgm's MAF/IAF layers put their shift: the paper's (x − μ)·exp(−α) or x·exp(−α) + m "
        "(the same maps; zuko's form); default: each model's own (MAF after, IAF before)",
    )
    p.add_argument(
        "--residual-blocks",
        type=int,
        default=0,
        help="give MAF/IAF a ResMADE of this many residual blocks, dgm's and nflows' alike (nflows' default "
        "conditioner; zuko has none, so its MAF/IAF rows are skipped); 0: the protocol's MADE",
    )
    p.add_argument(
        "--dgm-option",
        action="append",
        default=[],
        metavar="MODEL.KEY=VALUE",
        help="an option of one dgm model beyond the protocol, VALUE as JSON, e.g. realnvp.scale_clamp=6.9 "
        "(repeatable; the peers are unchanged, the report lists it)",
    )
    p.add_argument(
        "--swap-xy",
        action="store_true",
        help="give every library the 2-D toys with their coordinates swapped: a flat coupling flow's first "
        "layer then transforms the other one (dgm and nflows transform coordinate 0 first, zuko 1)",
    )
    p.add_argument("--smoke", action="store_true", help="moons, MAF, 2 epochs; RESULTS.md untouched")
    args = p.parse_args()
    if args.maf_hidden:
        ARCH["maf"]["hidden_sizes"] = args.maf_hidden
    for name in ("maf", "iaf"):
        if args.shift is not None:
            DGM_OPTIONS[name]["shift"] = args.shift
        if args.residual_blocks:
            for arch in (ARCH, ARCH_DIGITS):
                arch[name]["residual_blocks"] = args.residual_blocks
    args.extra = {}
    for text in args.dgm_option:
        name, _, rest = text.partition(".")
        key, eq, value = rest.partition("=")
        if name not in DGM_OPTIONS or not key or not eq:
            p.error(
                f"--dgm-option wants MODEL.KEY=VALUE with MODEL one of {', '.join(DGM_OPTIONS)}, got {text!r}"
            )
        try:
            args.extra[name, key] = DGM_OPTIONS[name][key] = json.loads(value)
        except json.JSONDecodeError:
            p.error(f"--dgm-option {text!r}: {value!r} is not a JSON value (strings need quotes)")
    torch.set_num_threads(1)
    if args.smoke:
        args.toys, args.models, args.epochs = "moons", "maf", 2
    toys, models = args.toys.split(","), args.models.split(",")
    if args.swap_xy and "digits" in toys:
        p.error("--swap-xy is for the 2-D toys; digits has 64 coordinates")
    peer_libraries = args.peer_libraries.split(",")
    for lib in peer_libraries:
        if lib not in ("nflows", "zuko"):
            p.error(f"unknown peer library {lib!r}; choose from nflows, zuko")
    for m in models:
        if m not in ARCH:
            p.error(f"unknown model {m!r}; choose from {', '.join(ARCH)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for toy in toys:
            npz = Path(tmp) / f"{toy}.npz"
            if toy == "digits":
                data = dequantised_digits()
                arrays = {"train": data["train_integers"], "valid": data["valid"], "test": data["test"]}
                arrays |= {"mean": data["mean"], "std": data["std"], "offset": torch.tensor(data["offset"])}
                np.savez(npz, **{s: x.numpy() for s, x in arrays.items()})
            else:
                data = standardised(toy)
                if args.swap_xy:
                    data = {split: x.flip(1) for split, x in data.items()}
                np.savez(npz, **{s: x.numpy() for s, x in data.items()})
            trained = {}
            for m in models:
                ours_runs = [run_dgm(m, data, args, toy, seed) for seed in range(args.seeds)]
                trained[m] = ours_runs[0]["_model"]  # seed 0's model for the density plot
                for r in ours_runs:
                    r.pop("_model")
                results = [over_seeds(ours_runs)]
                if args.peers:
                    for lib in peer_libraries:
                        if lib == "nflows" and m == "gaussianization-flow":
                            continue  # nflows has no Gaussianization flow
                        if lib == "zuko" and "residual_blocks" in architecture(m, toy):
                            continue  # zuko's MADE has no residual blocks
                        runs = [
                            run_peer(args.peers, lib, m, npz, args, toy, seed) for seed in range(args.seeds)
                        ]
                        if all(r is not None for r in runs):
                            results.append(over_seeds(runs))
                ours = results[0]
                for r in results:
                    rows.append(
                        {
                            "toy": toy,
                            "model": m,
                            "library": r["library"],
                            "params": f"{r['params']:,}",
                            "time/epoch": f"{r['epoch_s']:.2f} s",
                            "test NLL (nats)": f"{r['test_nll']:.3f} ± {r['test_stderr']:.3f}",
                            "per seed": ", ".join(f"{v:.3f}" for v in r.get("per_seed", [])),
                            "vs dgm": "—" if r["library"] == "dgm" else versus(r, ours),
                            "_r": r,
                        }
                    )
                    print({k: v for k, v in rows[-1].items() if not k.startswith("_")}, flush=True)
            if not args.smoke and toy != "digits":
                density_plot(
                    trained, data["test"], FIGURES / f"{args.section}_{toy}.png", f"{toy}: dgm flows"
                )
    print(table(rows, SEED_COLUMNS if args.seeds > 1 else COLUMNS))
    if args.smoke:
        return
    update_results(args.section, report(rows, args))


NFLOWS_MADE_NOTE = (
    "nflows' MAF and IAF rows are not like for like: its MADE applies its activation only inside residual "
    "blocks, so its closest MADE 1×100 is a ResMADE of one block, with about 30 times the parameters of "
    "dgm's and zuko's MADE (the params column). `--residual-blocks 1` gives dgm's MAF and IAF that very "
    "network (the flows-toy-resmade sections)."
)


def report(rows: list[dict], args) -> str:
    dgm_rows = {(r["toy"], r["model"]): r["_r"] for r in rows if r["library"] == "dgm"}
    models, toys = dict.fromkeys(r["model"] for r in rows), dict.fromkeys(r["toy"] for r in rows)
    where = "dequantised 8×8 digits" if list(toys) == ["digits"] else f"the 2-D toys ({', '.join(toys)})"
    peers = [lib for lib in ("nflows", "zuko") if any(r["library"] == lib for r in rows)]
    verdicts = {"dgm": 0, "tie": 0, "peer": 0}
    wins_time = total = 0
    behind = []
    for r in rows:
        if r["library"] == "dgm":
            continue
        ours = dgm_rows[(r["toy"], r["model"])]
        total += 1
        v = verdict(r["_r"], ours)
        verdicts[v] += 1
        if v == "peer":
            behind.append(f"{r['toy']} {r['model']} vs {r['library']} ({versus(r['_r'], ours)})")
        wins_time += ours["epoch_s"] <= r["_r"]["epoch_s"]
    lines = [
        f"## {', '.join(models)} on {where} "
        + (f"against {' and '.join(peers)}" if peers else "(dgm only)")
        + f" (issue #6), {args.epochs} epochs\n",
        (
            "Each toy standardised (train mean/std), NLL in nats on the standardised scale"
            if "digits" not in toys
            else "NLL in nats per image on the integer scale (below)"
        )
        + ", best-validation weights, one thread per process; same architecture, data, optimiser and "
        "epochs for every library "
        "(see the docstring of `benchmarks/flows_toy.py`). \"vs dgm\": the peer's test NLL minus dgm's "
        "(positive: dgm better) ± the standard error of that difference, sqrt(se_peer² + se_dgm²)."
        + (
            f" Each library ran {args.seeds} times (seeds 0–{args.seeds - 1}: initialisation and batch "
            "order; the data split is fixed): test NLL is the mean over seeds ± the standard error of that "
            "mean, and each seed's figure is listed."
            if args.seeds > 1
            else ""
        )
        + "\n",
        table(rows, SEED_COLUMNS if args.seeds > 1 else COLUMNS),
        "",
    ]
    if total:
        lines.append(
            f"Test NLL, {total} comparisons: dgm lower by more than two standard errors of the difference in "
            f"{verdicts['dgm']}, within two in {verdicts['tie']}, the peer lower by more than two in "
            f"{verdicts['peer']}"
            + (f": {'; '.join(behind)}" if behind else "")
            + f". dgm's time per epoch is at most the peer's in {wins_time} of {total}."
        )
    maf_moons = dgm_rows.get(("moons", "maf"))
    if maf_moons is not None and not args.residual_blocks:  # the anchor's network is a plain MADE
        nll = maf_moons["test_nll"]
        hidden = ARCH["maf"]["hidden_sizes"]
        lines.append(
            f"Anchor: MAF (5 layers, MADE 1×100) on standardised two moons, 50 epochs: ≈ 1.19–1.2 nats "
            f"(Stanford CS236); target ≤ 1.19. dgm (MADE {'×'.join(map(str, hidden))}) after {args.epochs} "
            f"epochs: {nll:.3f} nats"
            + (f" (mean of {args.seeds} seeds)" if args.seeds > 1 else "")
            + " — "
            + ("met." if nll <= 1.19 else "not met.")
        )
        if hidden == [100, 100]:
            lines.append(
                "MADE 100×100 is the network of the CS236 reference code that the anchor comes from: its "
                "`MADE(hidden_size=100, n_hidden=1)` builds input → 100 → 100 → output (one input layer "
                "plus `n_hidden` hidden-to-hidden layers, ReLU), trained with Adam 1e-3 (weight decay 1e-6), "
                'batch 100, 50 epochs. The issue\'s "MADE 1×100" reads `n_hidden=1` as one hidden layer; '
                'with one layer of 100 (the section "maf on the 2-D toys (moons) … 50 epochs") the target '
                "is not met. "
                "nflows builds its MADE from the first width only (one residual block, as in every row)."
            )
    extra = [f"{m} `{k}={json.dumps(v)}`" for (m, k), v in args.extra.items() if m in models]
    if extra:
        lines.append(
            "dgm options beyond the protocol (dgm only; the peers keep theirs): " + ", ".join(extra) + "."
        )
    if not args.residual_blocks and any(
        r["model"] in ("maf", "iaf") and r["library"] == "nflows" for r in rows
    ):
        lines.append(NFLOWS_MADE_NOTE)
    if ("realnvp", "scale_clamp") in args.extra and "realnvp" in models:
        lines.append(
            "dgm's affine couplings soft-clamp their log-scales to ±c as c·tanh(s/c), c = 3 by default (the "
            "flows-toy section); zuko's bounds them to ±log(1000) ≈ 6.9 as s/(1 + |s|/6.9), nflows' scale "
            "is sigmoid(s + 2) + 0.001, below 1.001."
        )
    coupling = [m for m in ("nice", "realnvp") if m in models]
    if coupling and "digits" not in toys:
        lines.append(
            f"In these 2-D {' and '.join(coupling)} flows the couplings alternate which coordinate they "
            "transform; dgm and nflows transform coordinate 0 first, zuko coordinate 1. "
            + (
                "Here every library saw the toys with their two coordinates swapped (`--swap-xy`), so "
                "dgm's and nflows' first coupling transforms the coordinate zuko's first transforms in the "
                "other sections."
                if args.swap_xy
                else "`--swap-xy` gives every library the toys with their coordinates swapped."
            )
        )
    if args.residual_blocks and any(r["model"] in ("maf", "iaf") for r in rows):
        lines.append(
            "MAF and IAF conditioners here are ResMADEs of "
            + (
                "one residual block"
                if args.residual_blocks == 1
                else f"{args.residual_blocks} residual blocks"
            )
            + " (Nash & Durkan 2019) in dgm (`residual_blocks`) and in nflows (its MADE's `num_blocks`): "
            "the same network and parameter count; zuko has no residual MADE, so it has no MAF/IAF rows. "
        )
        for name in dict.fromkeys(r["model"] for r in rows if r["model"] in ("maf", "iaf")):
            if dgm_option(name, "scale_fn") == "softplus":
                scale = f"dgm's {name} uses nflows' scale here too (`scale_fn=\"softplus\"`)"
            else:
                scale = (
                    f"dgm's {name} scale is exp of a log-scale soft-clamped to "
                    f"±{dgm_option(name, 'scale_clamp'):g}, nflows' softplus(u) + 0.001 (no upper bound)"
                )
            start = (
                "starts each layer as the identity (its last layer zeroed), nflows from PyTorch's default"
                if dgm_option(name, "identity_init")
                else "keeps PyTorch's default last layer, as nflows (`identity_init=false`)"
            )
            lines[-1] += f"{scale}; it {start}. "
        lines[-1] = lines[-1].rstrip()
    if args.shift is None and any(r["model"] in ("maf", "iaf") for r in rows):
        lines.append(
            "dgm's MAF and IAF layers here keep their defaults: MAF puts the shift after the scale, "
            "z = x·exp(−α) + m (as nflows and zuko do), IAF the paper's (x − μ)·exp(−α); the same maps, "
            "reparametrised (`--shift` sets both)."
        )
    elif args.shift == "after" and any(r["model"] in ("maf", "iaf") for r in rows):
        lines.append(
            "dgm's MAF and IAF layers here put the shift after the scale (`shift='after'`: "
            "z = x·exp(−α) + m, as zuko's affine map does) instead of the paper's (x − μ)·exp(−α): the "
            "same maps and parameters, reparametrised; MAF's default since 2026-11-25, IAF's default is "
            "the paper's form."
        )
    elif any(r["model"] in ("maf", "iaf") for r in rows):
        lines.append(
            "dgm's MAF and IAF layers here use the paper's (x − μ)·exp(−α) (`--shift before`: IAF's "
            "default, and MAF's until 2026-11-25); nflows and zuko parametrise the same maps with the "
            "shift after the scale, x·s + t, which `--shift after` measures."
        )
    if any(r["toy"] == "digits" for r in rows):
        lines.append(
            "digits: `digits-dequantized` (8×8, 17 levels, 1,257/180/360), u ~ U[0, 1)^64 redrawn every "
            "training batch by every library, valid/test dequantised once; all splits standardised with "
            "one dequantised draw of train. NLL in nats per image on the integer scale x + u (the "
            "standardisation's Σ log σ and 64·log 17 added back for every library alike). Networks for "
            f"64-D: {json.dumps(ARCH_DIGITS)}."
        )
    if any(r["toy"] != "digits" for r in rows):
        lines.append(f"Density plots: `benchmarks/figures/{args.section}_<toy>.png`.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
