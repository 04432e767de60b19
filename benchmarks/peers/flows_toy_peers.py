"""Peer side of benchmarks/flows_toy.py: the same flows built with nflows or zuko, trained on the same
data with the same loop. Runs in the peers' environment (benchmarks/peers/requirements.txt), which has
no dgm: it reads the data from an .npz file and prints one JSON line per run.

    .peers/bin/python benchmarks/peers/flows_toy_peers.py DATA.npz '{"library": "zuko", "model": "maf", ...}'
"""

from __future__ import annotations

import copy
import itertools
import json
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn


class MLP(nn.Sequential):
    """ReLU MLP; nflows calls coupling networks as ``net(x, context)``."""

    def __init__(self, sizes: list[int]):
        layers = []
        for i, (a, b) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)

    def forward(self, x, context=None):
        return super().forward(x)


def build_nflows(model: str, arch: dict, D: int):
    from nflows import transforms as T
    from nflows.distributions import StandardNormal
    from nflows.flows import Flow

    L, hidden = arch["num_layers"], arch["hidden_sizes"]
    layers = []
    for i in range(L):
        if model in ("maf", "iaf"):
            # nflows applies its activation inside residual blocks only: num_blocks=0 would be a linear MADE.
            # One block: out = W3 (h + W2 relu(W1 relu(h))), h = W0 x (a ResMADE; dgm's residual_blocks=1).
            blocks = arch.get("residual_blocks") or 1
            layer = T.MaskedAffineAutoregressiveTransform(
                features=D, hidden_features=hidden[0], num_blocks=blocks
            )
            layers += [layer if model == "maf" else T.InverseTransform(layer), T.ReversePermutation(D)]
        else:
            mask = torch.arange(D) % 2 == i % 2  # alternate which half is transformed

            def net(a, b):
                return MLP([a, *hidden, b])

            cls = T.AdditiveCouplingTransform if model == "nice" else T.AffineCouplingTransform
            layers.append(cls(mask.int(), net))
    if model == "nice":  # NICE's final diagonal scaling
        layers.append(_nflows_scale(D))
    return Flow(T.CompositeTransform(layers), StandardNormal([D]))


def _nflows_scale(D: int):
    from nflows.transforms.base import Transform

    class LearnedScale(Transform):
        def __init__(self):
            super().__init__()
            self.log_scale = nn.Parameter(torch.zeros(D))

        def forward(self, x, context=None):
            return x * self.log_scale.exp(), self.log_scale.sum().expand(len(x))

        def inverse(self, z, context=None):
            return z * (-self.log_scale).exp(), -self.log_scale.sum().expand(len(z))

    return LearnedScale()


def build_zuko(model: str, arch: dict, D: int):
    import zuko

    L, hidden = arch["num_layers"], arch.get("hidden_sizes")
    if arch.get("residual_blocks"):
        raise SystemExit("zuko's MADE has no residual blocks")
    if model == "maf":
        return zuko.flows.MAF(D, transforms=L, hidden_features=hidden)
    if model == "iaf":
        maf = zuko.flows.MAF(D, transforms=L, hidden_features=hidden)
        return zuko.flows.Flow(zuko.flows.LazyInverse(maf.transform), maf.base)
    if model == "nice":
        # zuko's NICE uses affine couplings unless told otherwise (its docstring: "as in RealNVP"); NICE is
        # additive couplings plus a final diagonal scaling (here an elementwise affine, D more parameters).
        from zuko.lazy import UnconditionalTransform
        from zuko.transforms import AdditiveTransform, MonotonicAffineTransform

        nice = zuko.flows.NICE(
            D, transforms=L, hidden_features=hidden, univariate=AdditiveTransform, shapes=[()]
        )
        scale = UnconditionalTransform(MonotonicAffineTransform, torch.zeros(D), torch.zeros(D))
        return zuko.flows.Flow([*nice.transform.transforms, scale], nice.base)
    if model == "realnvp":
        return zuko.flows.RealNVP(D, transforms=L, hidden_features=hidden)
    if model == "gaussianization-flow":
        return zuko.flows.GF(D, transforms=L, components=arch.get("num_components", 8))
    raise SystemExit(f"zuko has no {model}")


def main():
    data = np.load(sys.argv[1])
    spec = json.loads(sys.argv[2])
    torch.manual_seed(spec.get("seed", 0))
    torch.set_num_threads(spec.get("threads", 1))
    train, valid, test = (torch.as_tensor(data[s], dtype=torch.float32) for s in ("train", "valid", "test"))
    D = train.shape[1]
    levels = spec.get("dequantize_levels")
    if levels:  # train holds integers: dequantise every batch afresh, then standardise, as dgm does
        mean, std = (torch.as_tensor(data[s], dtype=torch.float32) for s in ("mean", "std"))

        def batch_of(x):
            v = torch.minimum(x + torch.rand(x.shape, generator=gen), torch.nextafter(x + 1, x))
            return (v / levels - mean) / std
    else:

        def batch_of(x):
            return x

    lib, model = spec["library"], spec["model"]
    if lib == "nflows":
        if model not in ("maf", "iaf", "nice", "realnvp"):
            raise SystemExit(f"nflows has no {model}")
        flow = build_nflows(model, spec["arch"], D)
        log_prob = flow.log_prob
    else:
        flow = build_zuko(model, spec["arch"], D)

        def log_prob(x):
            return flow().log_prob(x)

    opt = torch.optim.Adam(flow.parameters(), lr=spec["lr"])
    gen = torch.Generator().manual_seed(spec.get("seed", 0))
    best, best_state, epoch_times = float("inf"), None, []
    B = spec["batch_size"]

    @torch.no_grad()
    def nll(x):
        return -torch.cat([log_prob(c) for c in x.split(1000)]).mean().item()

    for _ in range(spec["epochs"]):
        perm = torch.randperm(len(train), generator=gen)
        t0 = time.perf_counter()
        for i in range(0, len(train), B):
            loss = -log_prob(batch_of(train[perm[i : i + B]])).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
            opt.step()
        epoch_times.append(time.perf_counter() - t0)
        v = nll(valid)
        if v < best:
            best, best_state = v, copy.deepcopy(flow.state_dict())
    flow.load_state_dict(best_state)
    lp = torch.cat([log_prob(c).detach() for c in test.split(1000)])
    print(
        json.dumps(
            {
                "library": lib,
                "model": model,
                "params": sum(p.numel() for p in flow.parameters()),
                "epoch_s": statistics.median(epoch_times),
                "valid_nll": best,
                "test_nll": -lp.mean().item(),
                "test_stderr": lp.std().item() / len(lp) ** 0.5,
            }
        )
    )


if __name__ == "__main__":
    main()
