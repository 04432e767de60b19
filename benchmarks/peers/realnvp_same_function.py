"""dgm's flat RealNVP and zuko's compute the same density once given the same weights.

The 2-D toy comparison (``benchmarks/flows_toy.py``) builds both with six couplings of 100×100 ReLU
conditioners. Two conventions differ and are the only differences: zuko bounds a log-scale s as
s / (1 + |s| / log 1000) where dgm uses c·tanh(s / c), and zuko's first coupling transforms coordinate 1
where dgm's transforms coordinate 0. This script substitutes zuko's bound into dgm, copies zuko's weights
into dgm's conditioners (zuko emits (shift, log-scale), dgm (log-scale, shift)), swaps the coordinates for
dgm, and prints the largest difference of the two log-densities over random points in float64.

Run with dgm's environment, naming the peers' python (``make peers``), from the repository root:

    PYTHONPATH=src python benchmarks/peers/realnvp_same_function.py .peers/bin/python
"""

import math
import subprocess
import sys

import torch

import dgm
import dgm.models.flows.transforms.coupling as coupling


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    site = subprocess.run(
        [sys.argv[1], "-c", "import os, zuko; print(os.path.dirname(os.path.dirname(zuko.__file__)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    sys.path.append(site)  # zuko is pure Python over torch: import it from the peers' environment
    import zuko

    torch.manual_seed(0)
    bound = math.log(1000.0)  # zuko's MonotonicAffineTransform: slope 1e-3
    coupling.soft_clamp = lambda s, c: s / (1 + (s / c).abs())
    ours = dgm.build(
        "realnvp",
        event_shape=(2,),
        architecture="flat",
        num_layers=6,
        hidden_sizes=[100, 100],
        scale_clamp=bound,
    ).double()
    theirs = zuko.flows.RealNVP(2, transforms=6, hidden_features=[100, 100]).double()
    with torch.no_grad():
        for layer, hyper in zip(ours.transform.transforms, theirs.transform.transforms, strict=True):
            net = layer.conditioner.net
            for i in (0, 2):
                net[i].weight.copy_(hyper.hyper[i].weight)
                net[i].bias.copy_(hyper.hyper[i].bias)
            net[4].weight.copy_(hyper.hyper[4].weight.flip(0))
            net[4].bias.copy_(hyper.hyper[4].bias.flip(0))
        x = 2 * torch.randn(10_000, 2, dtype=torch.float64)
        diff = (ours.log_prob(x.flip(1)) - theirs().log_prob(x)).abs().max().item()
    print("| pair | points | max abs difference of log p (nats) |\n| --- | --- | --- |")
    print(f"| dgm realnvp (flat) vs zuko RealNVP | 10,000 | {diff:.1e} |")
    if diff > 1e-9:
        raise SystemExit("the two flows differ")


if __name__ == "__main__":
    main()
