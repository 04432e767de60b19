"""Masked linear layers and MADE's degree construction (Germain et al. 2015, §4).

Germain, Gregor, Murray & Larochelle (2015), "MADE: Masked Autoencoder for Distribution Estimation".
Each unit k of layer l gets a *degree* m^l(k): an input's degree is its position (1..D) in the ordering, a
hidden unit's degree is the largest input position it may depend on (in [1, D-1]). A weight from a unit of
degree m' into a hidden unit of degree m is kept iff m >= m' (eq. 12); into an output of degree d iff
d > m' (strict, eq. 13). Then output d depends only on inputs earlier in the ordering, for any depth.

Written once for every masked network in `dgm`: MADE (several masks, one or several outputs per
dimension, categorical inputs encoded one-hot) and the flows' MAF/IAF (shift and log-scale per dimension,
an optional conditioning input). Layout convention everywhere: a tensor with ``P`` values per dimension
is laid out block-major, index ``j * D + d`` for value ``j`` of dimension ``d``, i.e. it reshapes to
``(N, P, D)``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn, overrides
from torch.autograd.function import once_differentiable
from torch.utils import _python_dispatch

from dgm.core.errors import ConfigError
from dgm.core.progress import steps
from dgm.nn.functional import hidden_sizes_list

ORDERINGS = ("natural", "reverse", "random")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


# ---------------------------------------------------------------------------- orderings and degrees
def natural_ordering(num_dims: int) -> Tensor:
    """The identity ordering 0, 1, ..., D-1 (raster order for images)."""
    return torch.arange(num_dims)


def random_ordering(num_dims: int, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random permutation of 0..D-1."""
    return torch.randperm(num_dims, generator=generator)


def make_ordering(spec, num_dims: int, generator: torch.Generator | None = None) -> Tensor:
    """An ordering from ``"natural"``, ``"reverse"``, ``"random"`` or an explicit permutation (list)."""
    if isinstance(spec, str):
        if spec == "natural":
            return natural_ordering(num_dims)
        if spec == "reverse":
            return natural_ordering(num_dims).flip(0)
        if spec == "random":
            return random_ordering(num_dims, generator)
        raise ConfigError(f"unknown ordering {spec!r}; use {', '.join(ORDERINGS)} or a list permutation")
    return check_ordering(spec, num_dims)


def check_ordering(ordering, num_dims: int) -> Tensor:
    """``ordering`` as a long tensor, or a ConfigError unless it is a permutation of 0..D-1."""
    try:
        o = torch.as_tensor(ordering).long().flatten().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"ordering must be a permutation of 0..{num_dims - 1}, got {ordering!r}") from None
    if len(o) != num_dims or not torch.equal(o.sort().values, torch.arange(num_dims)):
        raise ConfigError(f"ordering must be a permutation of 0..{num_dims - 1}")
    return o


def input_degrees(ordering: Tensor) -> Tensor:
    """Degree of each input dimension: its 1-based position in ``ordering`` (degree[ordering[t]] = t+1)."""
    degrees = torch.empty_like(ordering)
    degrees[ordering] = torch.arange(1, len(ordering) + 1, device=ordering.device)
    return degrees


def hidden_degrees(
    size: int,
    num_dims: int,
    low: int = 1,
    mode: str = "random",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Degrees of one hidden layer, in [low, D-1]: uniform draws (MADE) or spread evenly (deterministic).

    ``low`` is the smallest degree of the layer below: a unit of smaller degree would be connected to
    nothing. With D = 1 no input may feed any hidden unit, so every degree is 0 (bias-only units).
    """
    high = num_dims - 1
    low = min(low, high)
    if mode == "random":
        return torch.randint(low, high + 1, (size,), generator=generator)
    if mode == "even":
        return torch.arange(size) % (high - low + 1) + low
    raise ConfigError(f"hidden degree mode must be 'random' or 'even', got {mode!r}")


def made_degrees(
    ordering: Tensor,
    hidden_sizes: Sequence[int],
    mode: str = "random",
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    """[input degrees (D,), degrees of hidden layer 1 (H1,), ...] for one MADE mask."""
    degrees = [input_degrees(ordering)]
    low = 1
    for size in hidden_sizes:
        degrees.append(hidden_degrees(size, len(ordering), low, mode, generator))
        low = int(degrees[-1].min()) if size else low
    return degrees


class DegreeMask(NamedTuple):
    """The mask of one layer given by degrees, M[k, j] = [d_out[k] >= d_in[j] + strict], not materialised:
    a wide layer's mask is built inside the fused kernel that applies it (:func:`masked_linear`)."""

    out_degrees: Tensor
    in_degrees: Tensor
    strict: bool

    def dense(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return (self.out_degrees[:, None] >= self.in_degrees[None, :] + int(self.strict)).to(dtype)


def made_degree_masks(
    degrees: Sequence[Tensor], num_inputs_per_dim: int = 1, num_outputs_per_dim: int = 1
) -> list[DegreeMask]:
    """Every layer's mask from ``made_degrees`` as degrees (:class:`DegreeMask`); the last is the output's.

    Hidden layers keep m_out >= m_in; the output layer keeps d > m_in (strict), so that output d sees
    only inputs before d. Inputs and outputs with several values per dimension repeat the dimension's
    degree block-major (index j * D + d).
    """
    masks, previous = [], degrees[0].repeat(num_inputs_per_dim)
    for d_hidden in degrees[1:]:
        masks.append(DegreeMask(d_hidden, previous, False))
        previous = d_hidden
    masks.append(DegreeMask(degrees[0].repeat(num_outputs_per_dim), previous, True))
    return masks


def made_masks(
    degrees: Sequence[Tensor], num_inputs_per_dim: int = 1, num_outputs_per_dim: int = 1
) -> list[Tensor]:
    """The (out, in) 0/1 masks of :func:`made_degree_masks`."""
    return [m.dense() for m in made_degree_masks(degrees, num_inputs_per_dim, num_outputs_per_dim)]


def direct_mask(input_degrees: Tensor, num_inputs_per_dim: int = 1, num_outputs_per_dim: int = 1) -> Tensor:
    """The (out, in) mask of a direct input → output connection: output d keeps inputs of degree < d.

    It is the output mask of a network without hidden layers (an FVSBN-like linear term), the
    ``direct_input_connect="Output"`` of Germain et al.'s code.
    """
    return made_masks([input_degrees], num_inputs_per_dim, num_outputs_per_dim)[-1]


def _degree_schedule(degrees: Tensor, num_dims: int) -> tuple[Tensor, Tensor, Tensor]:
    """For hidden degrees (masks, H): units sorted by degree (masks, H), where each degree's run starts
    (masks, D) and its length (masks, D); the units of degree t of mask m are
    ``order[m, offsets[m, t] : offsets[m, t] + counts[m, t]]``."""
    order = torch.argsort(degrees, dim=1, stable=True)
    counts = torch.zeros(len(degrees), num_dims, dtype=torch.long, device=degrees.device)
    counts.scatter_add_(1, degrees, torch.ones_like(degrees))
    return order, torch.cumsum(counts, 1) - counts, counts


# ---------------------------------------------------------------------------- layers
# Weights at least this large take the compiled kernel; below it the elementwise passes are cheap and a
# compilation (seconds) would not pay for itself.
FUSED_MIN_NUMEL = 1 << 22
_fused_kernels: dict = {}


def _fused(key: tuple):
    """The compiled mask kernel for ``key`` = (device type, input dtype, output dtype), built on first
    use; None with DGM_FUSED_MASKS=0 or after a failure (no C++ compiler, no Triton): the eager path runs.

    One compiled function per key, called in one fixed state (no autocast, no grad, no torch-function
    mode, plain tensors), so that it compiles once: dynamo guards on all of these, and a kernel that
    recompiled past its limit would silently run uncompiled. (The kernels share one code object, so
    dynamo counts their variants together: three in training with bf16 autocast, under its limit of 8.)
    """
    if key not in _fused_kernels:
        kernel = None
        if os.environ.get("DGM_FUSED_MASKS", "1") != "0":
            dtype = key[-1]

            def mask_cast(w: Tensor, d_out: Tensor, d_in: Tensor) -> Tensor:
                return torch.where(d_out[:, None] >= d_in[None, :], w, 0).to(dtype)

            kernel = torch.compile(mask_cast, dynamic=True, fullgraph=True)
        _fused_kernels[key] = kernel
    return _fused_kernels[key]


@contextlib.contextmanager
def _without_function_modes():
    """Leave the torch-function modes (the trainer's fp32 reductions) for a while: dynamo guards on the
    mode stack, which differs between a forward under the trainer's autocast and its backward."""
    stack = overrides._get_current_function_mode_stack()
    for _ in stack:
        overrides._pop_mode()
    try:
        yield
    finally:
        for mode in stack:
            overrides._push_mode(mode)


def _apply_degree_mask(w: Tensor, mask: DegreeMask, dtype: torch.dtype) -> Tensor:
    """(w ⊙ M).to(dtype) in one pass over w where the fused kernel is available, else eagerly."""
    key = (w.device.type, w.dtype, dtype)
    # Under a dispatch mode (e.g. torch's FLOP counter) the eager ops are what the mode expects to see.
    eager = w.numel() < FUSED_MIN_NUMEL or _python_dispatch._get_current_dispatch_mode() is not None
    kernel = None if eager else _fused(key)
    if kernel is not None:
        try:
            device = w.device.type
            with _without_function_modes(), torch.no_grad(), torch.autocast(device, enabled=False):
                return kernel(w.detach(), mask.out_degrees, mask.in_degrees + int(mask.strict))
        except Exception as error:  # a missing or broken compiler: fall back for the rest of the process
            warnings.warn(
                f"dgm: fused mask kernel unavailable ({type(error).__name__}); using eager ops", stacklevel=2
            )
            _fused_kernels[key] = None
    return (w * mask.dense(w.dtype)).to(dtype)


def _compute_dtype(x: Tensor, weight: Tensor) -> torch.dtype:
    """The dtype ``F.linear`` would compute in: autocast's (bf16 under the trainer's autocast) for float32
    operands, else the operands' own."""
    device = x.device.type
    if weight.dtype == torch.float32 and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(x.dtype, weight.dtype)


class _MaskedLinearFunction(torch.autograd.Function):
    """y = x (W ⊙ M)ᵀ + b, with the mask applied and the weight cast to the compute dtype in one pass,
    and the weight gradient masked as it is cast back.

    Written as ``F.linear(x, W * M)`` under autocast, a training step reads and writes every weight
    about five times beside the products (M built as floats, W * M, its cast to bf16; in backward the
    cast of the weight gradient to fp32 and its product with M): for a MADE with two hidden layers of
    8,000 units that elementwise traffic was about three quarters of a step of 100 images. With a
    :class:`DegreeMask` on a wide layer M is never materialised: one compiled kernel compares degrees,
    masks and casts.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, mask, dtype):
        w = (
            _apply_degree_mask(weight, mask, dtype)
            if isinstance(mask, DegreeMask)
            else (weight * mask).to(dtype)
        )
        xc = x.to(dtype)
        y = F.linear(xc, w, None if bias is None else bias.to(dtype))
        ctx.mask = mask
        ctx.save_for_backward(xc, w, None if isinstance(mask, DegreeMask) else mask)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        return y

    @staticmethod
    @once_differentiable  # the fused kernel runs without autograd: a second derivative must not be zero
    def backward(ctx, grad):
        xc, w, dense_mask = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype = ctx.dtypes
        grad = grad.to(w.dtype)
        grad_x = grad_w = grad_b = None
        g2 = grad.reshape(-1, grad.shape[-1])
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ w).to(x_dtype)
        if ctx.needs_input_grad[1]:
            product = g2.T @ xc.reshape(-1, xc.shape[-1])
            if dense_mask is None:
                grad_w = _apply_degree_mask(product, ctx.mask, w_dtype)
            else:
                grad_w = product.to(w_dtype).mul_(dense_mask)
        if ctx.needs_input_grad[2]:
            grad_b = g2.sum(0, dtype=b_dtype)
        return grad_x, grad_w, grad_b, None, None


def masked_linear(x: Tensor, weight: Tensor, mask: Tensor | DegreeMask, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight * mask, bias)``, autocast-aware, with the mask (a 0/1 tensor or a
    :class:`DegreeMask`) applied in the weight's cast and in its gradient (:class:`_MaskedLinearFunction`)."""
    return _MaskedLinearFunction.apply(x, weight, bias, mask, _compute_dtype(x, weight))


class MaskedLinear(nn.Linear):
    """``y = x (W ⊙ M)ᵀ + b`` with a fixed 0/1 mask M held in a buffer (saved with the weights).

    The mask multiplies the weight inside the forward pass, so a forward pass never writes to ``weight``
    and masked-out entries get zero gradient. ``forward(x, mask)`` uses another mask for one call
    (MADE's mask ensemble) without touching the stored one.
    """

    def __init__(self, in_features: int, out_features: int, mask: Tensor | None = None, bias: bool = True):
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features))
        if mask is not None:
            self.set_mask(mask)

    def set_mask(self, mask: Tensor) -> None:
        if tuple(mask.shape) != tuple(self.mask.shape):
            raise ConfigError(f"mask has shape {tuple(mask.shape)}, layer expects {tuple(self.mask.shape)}")
        with torch.no_grad():
            self.mask.copy_(mask)

    def masked_weight(self, mask: Tensor | DegreeMask | None = None) -> Tensor:
        if isinstance(mask, DegreeMask):
            mask = mask.dense(self.weight.dtype)
        return self.weight * (self.mask if mask is None else mask)

    def forward(self, x: Tensor, mask: Tensor | DegreeMask | None = None) -> Tensor:
        return masked_linear(x, self.weight, self.mask if mask is None else mask, self.bias)

    def extra_repr(self) -> str:
        kept = int(self.mask.count_nonzero())
        return f"{super().extra_repr()}, connections={kept}/{self.mask.numel()}"


class MaskedMLP(nn.Module):
    """A MADE network: masked MLP mapping D dimensions to ``num_outputs_per_dim`` values per dimension.

    Holds ``num_masks`` masks. Mask m is defined by an ordering (``orderings[m]``, a buffer) and the
    degrees of every hidden layer (``degrees_l[m]``, buffers), so the whole mask set is saved with the
    weights and rebuilt identically from ``seed``. ``order_agnostic`` draws a random ordering per mask;
    ``connectivity_agnostic`` draws fresh hidden degrees per mask. The layers' own ``mask`` buffers hold
    mask 0, used when ``forward`` is called without ``mask_index`` (the single-mask case, e.g. MAF).

    Args:
        num_dims: D.
        hidden_sizes: widths of the hidden layers (may be empty: one masked linear map, an FVSBN).
        num_inputs_per_dim: values per input dimension (1 for real/binary, k for one-hot categorical).
        num_outputs_per_dim: values per output dimension (1 logit, k logits, shift and log-scale ...).
        context_size: width of an optional conditioning input, connected unmasked to the first hidden
            layer and to the outputs (so even the first dimension's conditional depends on it).
        num_masks, order_agnostic, connectivity_agnostic: the mask set (see above).
        ordering: ``"natural"``, ``"reverse"``, ``"random"`` or a permutation, for every mask when not
            order-agnostic.
        hidden_degrees: ``"random"`` (MADE's uniform draws) or ``"even"`` (deterministic spread).
        activation: ``"relu"``, ``"tanh"``, ``"sigmoid"`` or ``"elu"``.
        condition_on_mask: tell every hidden unit which of its inputs the current mask keeps, by adding
            (U ⊙ M) 1 / fan-in to its pre-activation with a learned U shaped like the layer's weight
            (Germain et al. 2015, §4.3, for several masks, where a unit's input set changes from mask to
            mask; divided by the fan-in so that Adam's per-entry steps do not add up across the row).
        direct_connection: add a masked linear map straight from the inputs to the outputs (output d sees
            the inputs before d), so every conditional has a logistic-regression term beside the hidden
            layers'. Germain et al.'s MNIST results use it (their code's ``direct_input_connect="Output"``);
            with connectivity-agnostic masks it carries the conditionals while the hidden units, whose
            input sets change from mask to mask, learn the rest.
        init: ``"default"`` (PyTorch's uniform fan-in initialisation) or ``"orthogonal"``: every weight
            matrix (before masking) a random orthogonal one (Saxe et al. 2014), biases zero, as Germain
            et al.'s code (``weights_initialization="Orthogonal"``).
        dropout: probability of zeroing each hidden unit's activation in training (Srivastava et al.
            2014); evaluation and ``generate`` use the whole network. Dropping a unit removes inputs from
            later units but never adds any, so the autoregressive structure holds in training as well.
        seed: seeds the orderings and degrees, so a config rebuilds the same masks.
    """

    def __init__(
        self,
        num_dims: int,
        hidden_sizes: Sequence[int] = (),
        *,
        num_inputs_per_dim: int = 1,
        num_outputs_per_dim: int = 1,
        context_size: int = 0,
        num_masks: int = 1,
        order_agnostic: bool = False,
        connectivity_agnostic: bool = False,
        ordering="natural",
        hidden_degrees: str = "random",
        activation: str = "relu",
        condition_on_mask: bool = False,
        direct_connection: bool = False,
        init: str = "default",
        dropout: float = 0.0,
        seed: int = 0,
    ):
        super().__init__()
        if not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        if init not in ("default", "orthogonal"):
            raise ConfigError(f"unknown init {init!r}; use 'default' or 'orthogonal'")
        hidden_sizes = hidden_sizes_list(hidden_sizes)
        if num_dims < 1:
            raise ConfigError(f"num_dims and hidden sizes must be positive, got {num_dims}, {hidden_sizes}")
        if num_masks < 1:
            raise ConfigError(f"num_masks must be >= 1, got {num_masks}")
        if num_masks > 1 and not (order_agnostic or connectivity_agnostic):
            raise ConfigError(
                "num_masks > 1 needs order_agnostic and/or connectivity_agnostic (else they coincide)"
            )
        if connectivity_agnostic and hidden_degrees == "even":
            raise ConfigError(
                "connectivity_agnostic needs hidden_degrees='random' ('even' gives one connectivity)"
            )
        if connectivity_agnostic and not hidden_sizes:
            raise ConfigError("connectivity_agnostic needs at least one hidden layer")
        if direct_connection and not hidden_sizes:
            raise ConfigError(
                "direct_connection needs hidden layers (without them the net is already direct)"
            )
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}")
        self.num_dims, self.hidden_sizes = num_dims, hidden_sizes
        self.num_inputs_per_dim, self.num_outputs_per_dim = num_inputs_per_dim, num_outputs_per_dim
        self.context_size, self.num_masks = context_size, num_masks
        self.activation = ACTIVATIONS[activation]()

        g = torch.Generator().manual_seed(seed)
        fixed_order = None if order_agnostic else make_ordering(ordering, num_dims, g)
        orderings, degrees = [], []
        for m in range(num_masks):
            order = fixed_order if fixed_order is not None else random_ordering(num_dims, g)
            if m == 0 or connectivity_agnostic:
                hidden = made_degrees(order, hidden_sizes, hidden_degrees, g)[1:]
            orderings.append(order)
            degrees.append(hidden)
        self.register_buffer("orderings", torch.stack(orderings))
        for layer in range(len(hidden_sizes)):
            self.register_buffer(f"degrees_{layer}", torch.stack([d[layer] for d in degrees]))

        sizes = [num_dims * num_inputs_per_dim, *hidden_sizes, num_dims * num_outputs_per_dim]
        masks = self.masks(0)
        self.layers = nn.ModuleList(
            MaskedLinear(a, b, mask) for a, b, mask in zip(sizes[:-1], sizes[1:], masks, strict=True)
        )
        # The direct map's stored mask is mask 0's, like the layers'; the output layer holds the bias.
        self.direct = (
            MaskedLinear(sizes[0], sizes[-1], self.direct_mask(0), bias=False) if direct_connection else None
        )
        if context_size:
            self.context_hidden = nn.Linear(context_size, sizes[1], bias=False) if hidden_sizes else None
            self.context_output = nn.Linear(context_size, sizes[-1], bias=False)
        if init == "orthogonal":
            # Drawn from the seeded generator, so the config alone fixes the starting weights as well.
            for layer in [*self.layers, *([self.direct] if self.direct is not None else [])]:
                nn.init.orthogonal_(layer.weight, generator=g)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        # Zero at the start: the network begins as the unconditioned one.
        self.mask_weights = (
            nn.ParameterList(nn.Parameter(torch.zeros(b, a)) for a, b in itertools.pairwise(sizes[:-1]))
            if condition_on_mask
            else None
        )

    # ------------------------------------------------------------------ masks
    def degrees(self, mask_index: int = 0, ordering: Tensor | None = None) -> list[Tensor]:
        """[input degrees, hidden degrees ...] of mask ``mask_index``, optionally with another ordering.

        Hidden degrees count positions, not dimensions, so any ordering combined with a trained set of
        hidden degrees is a valid mask; order-agnostic training makes such unseen orderings usable.
        """
        self._check_index(mask_index)
        order = self.orderings[mask_index] if ordering is None else check_ordering(ordering, self.num_dims)
        hidden = [getattr(self, f"degrees_{layer}")[mask_index] for layer in range(len(self.hidden_sizes))]
        return [input_degrees(order.to(self.orderings.device)), *hidden]

    def masks(self, mask_index: int = 0, ordering: Tensor | None = None) -> list[Tensor]:
        """The 0/1 masks of every layer (last: output) for mask ``mask_index`` (and ``ordering``)."""
        return made_masks(
            self.degrees(mask_index, ordering), self.num_inputs_per_dim, self.num_outputs_per_dim
        )

    def direct_mask(self, mask_index: int = 0, ordering: Tensor | None = None) -> Tensor:
        """The direct input → output connection's mask for mask ``mask_index`` (and ``ordering``)."""
        return direct_mask(
            self.degrees(mask_index, ordering)[0], self.num_inputs_per_dim, self.num_outputs_per_dim
        )

    def ordering(self, mask_index: int = 0) -> Tensor:
        self._check_index(mask_index)
        return self.orderings[mask_index]

    def _check_index(self, mask_index: int) -> None:
        if not 0 <= int(mask_index) < self.num_masks:
            raise ConfigError(f"mask index {mask_index} out of range 0..{self.num_masks - 1}")

    def degree_masks(self, mask_index: int = 0, ordering: Tensor | None = None) -> list[DegreeMask]:
        """:meth:`masks` as :class:`DegreeMask` s (degrees, not 0/1 matrices), then the direct connection's
        if there is one: what a training step hands its layers."""
        degrees = self.degrees(mask_index, ordering)
        p_in, p_out = self.num_inputs_per_dim, self.num_outputs_per_dim
        masks = made_degree_masks(degrees, p_in, p_out)
        if self.direct is not None:  # the output mask of a network without hidden layers
            masks += made_degree_masks(degrees[:1], p_in, p_out)
        return masks

    def _layer_masks(self, mask_index, ordering) -> list[DegreeMask | None]:
        if mask_index is None and ordering is None:
            return [None] * (len(self.layers) + (self.direct is not None))  # the stored mask 0
        return self.degree_masks(0 if mask_index is None else mask_index, ordering)

    def num_connected_parameters(self) -> int:
        """Weights kept by at least one mask, plus biases and context weights.

        Masked-out weights are not free parameters: no mask ever lets them act.
        """
        union = [torch.zeros_like(layer.mask, dtype=torch.bool) for layer in self.layers]
        for m in range(self.num_masks):
            for u, mask in zip(union, self.masks(m), strict=True):
                u |= mask.bool()
        total = sum(int(u.sum()) + layer.bias.numel() for u, layer in zip(union, self.layers, strict=True))
        if self.mask_weights is not None:
            total += sum(int(u.sum()) for u in union[:-1])
        if self.direct is not None:
            direct = torch.zeros_like(self.direct.mask, dtype=torch.bool)
            for m in range(self.num_masks):
                direct |= self.direct_mask(m).bool()
            total += int(direct.sum())
        if self.context_size:
            total += sum(p.numel() for n, p in self.named_parameters() if n.startswith("context_"))
        return total

    # ------------------------------------------------------------------ evaluation
    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask_index: int | None = None,
        ordering: Tensor | None = None,
    ) -> Tensor:
        """Outputs ``(N, P_out, D)`` for inputs ``(N, P_in · D)`` or ``(N, P_in, D)`` (P: values per dim).

        Output ``[:, :, d]`` depends only on inputs of dimensions before ``d`` in the mask's ordering (and on
        ``context``). Without ``mask_index``/``ordering`` the stored mask 0 is used.
        """
        h = x_flat = x.reshape(len(x), -1)
        masks = self._layer_masks(mask_index, ordering)
        last = len(self.layers) - 1
        for i, (layer, mask) in enumerate(zip(self.layers, masks[: len(self.layers)], strict=True)):
            h = layer(h, mask)
            if self.context_size and i == 0 and i < last:
                h = h + self.context_hidden(context)
            if self.mask_weights is not None and i < last:
                dense = layer.mask if mask is None else mask.dense(h.dtype)
                h = h + (self.mask_weights[i] * dense).mean(1)
            if i < last:
                h = self.activation(h)
                if self.dropout:
                    h = F.dropout(h, self.dropout, self.training)
        if self.direct is not None:
            h = h + self.direct(x_flat, masks[-1])
        if self.context_size:
            h = h + self.context_output(context)
        return h.reshape(len(x), self.num_outputs_per_dim, self.num_dims)

    @torch.no_grad()
    def generate(
        self,
        step: Callable[[Tensor, Tensor], Tensor],
        inputs: Tensor,
        context: Tensor | None = None,
        mask_index: int | Tensor = 0,
        ordering: Tensor | None = None,
        start: int = 0,
    ) -> Tensor:
        """Fill ``inputs`` ``(N, P_in, D)`` one position at a time (ancestral sampling), returning the result.

        ``mask_index`` is one mask for all rows or a long tensor ``(N,)`` giving each row its own mask (a
        draw from the mask mixture). At position t each row's dimension is d = ordering[t] of its mask, and
        ``step(d, params)`` receives those dimensions ``(N,)`` and their network outputs
        ``(N, num_outputs_per_dim)`` and returns their new inputs ``(N, num_inputs_per_dim)``. The first
        ``start`` positions keep the values given in ``inputs`` (conditioning, e.g. inpainting); inputs of
        later positions are ignored.

        Cost: one network evaluation in all, as the architecture requires, for all rows and masks
        together (rows are grouped by mask and every layer is one batched product over the groups).
        A hidden unit of degree k depends only on the positions before k, so it is computed exactly
        once, at position k, when its inputs are final; the first layer's pre-activation gains one input
        column per position (O(H1) each), and only the rows of the current dimension's outputs are
        formed. Summed over the D positions this is the work of one forward pass, not D of them.
        """
        n, p_in, num_dims = inputs.shape
        device, dtype = inputs.device, self.layers[0].weight.dtype
        if isinstance(mask_index, int):
            self._check_index(mask_index)
            mask_index = torch.full((n,), mask_index, dtype=torch.long)
        mask_index = mask_index.to(device).long()
        if n == 0:
            return inputs.clone()
        used, group = torch.unique(mask_index, return_inverse=True)  # masks in use; each row's group
        counts = torch.bincount(group, minlength=len(used))
        first = torch.cumsum(counts, 0) - counts
        slot = torch.empty_like(group)
        by_group = torch.argsort(group, stable=True)
        slot[by_group] = torch.arange(n, device=device) - first[group[by_group]]
        shape = (len(used), int(counts.max()))  # rows laid out (mask, slot), padded to the largest group

        def grouped(t: Tensor) -> Tensor:
            out = t.new_zeros(*shape, *t.shape[1:])
            out[group, slot] = t
            return out

        orders = self.orderings[used] if ordering is None else check_ordering(ordering, num_dims).to(device)
        orders = orders.expand(len(used), num_dims)
        hidden_degrees = [getattr(self, f"degrees_{i}")[used] for i in range(len(self.hidden_sizes))]
        inputs = inputs.to(dtype).clone()
        if start == 0:
            inputs.zero_()
        else:  # only the conditioning positions count
            keep = torch.zeros(len(used), num_dims, dtype=torch.bool, device=device)
            keep.scatter_(1, orders[:, :start], True)
            inputs = inputs * keep[group][:, None, :]
        first_layer, out_layer = self.layers[0], self.layers[-1]
        deep = len(self.layers) > 1
        if deep:
            # a1 of every row under its own mask; from the bias alone when nothing is conditioned on.
            a1 = first_layer.bias.expand(n, -1).clone()
            if start > 0 or self.mask_weights is not None:
                for g, m in enumerate(used.tolist()):
                    rows = group == g
                    mask = self.masks(m, ordering)[0].to(dtype)
                    a1[rows] = first_layer(inputs[rows].reshape(int(rows.sum()), -1), mask)
                    if self.mask_weights is not None:
                        a1[rows] += (self.mask_weights[0] * mask).mean(1)
            if self.context_size:
                a1 = a1 + self.context_hidden(context)
            a1 = grouped(a1)
            # Later hidden layers: a bias per mask (with condition_on_mask, a mask-dependent one).
            biases = [None]
            for i, layer in enumerate(self.layers[1:-1], start=1):
                bias = layer.bias.expand(len(used), -1)
                if self.mask_weights is not None:
                    keeps = [
                        hidden_degrees[i][g, :, None] >= hidden_degrees[i - 1][g] for g in range(len(used))
                    ]
                    bias = bias + torch.stack([(self.mask_weights[i] * keep).mean(-1) for keep in keeps])
                biases.append(bias)
            # Activations of the units computed so far; the rest stay 0, so a product over a whole layer
            # sees exactly the units a mask would keep. The extra last column is a sink for padding.
            hs = [a1.new_zeros(*shape, size + 1) for size in self.hidden_sizes]
            schedules = [_degree_schedule(deg, num_dims) for deg in hidden_degrees]
            widest = [counts_t.max(0).values.tolist() for _, _, counts_t in schedules]  # per degree
        out_bias = out_layer.bias.expand(n, -1)
        if self.context_size:
            out_bias = out_bias + self.context_output(context)
        out_bias = grouped(out_bias)
        p_out = self.num_outputs_per_dim
        blocks_out = torch.arange(p_out, device=device) * num_dims
        blocks_in = torch.arange(p_in, device=device) * num_dims
        rows_all = torch.arange(n, device=device)
        # Every masked product below needs no mask: inputs not yet drawn are 0, units not yet computed are
        # 0 in hs, and a unit's pre-activation a1 is read only once, at its own degree, before the inputs
        # it must not see arrive. The first layer's columns are read as rows of its transpose (contiguous).
        w_in = first_layer.weight.t().contiguous() if deep else None
        for t in steps(num_dims, "dim"):
            if deep:  # the units of degree t: their inputs (positions < t, units of degree <= t) are final
                for i, (order, offsets, counts_t) in enumerate(schedules):
                    k = widest[i][t]
                    if k == 0:
                        continue
                    size = self.hidden_sizes[i]
                    ar = torch.arange(k, device=device)
                    units = order.gather(1, (offsets[:, t, None] + ar).clamp(max=size - 1))  # (masks, k)
                    sink = torch.where(ar < counts_t[:, t, None], units, size)
                    if i == 0:
                        pre = a1.gather(2, units[:, None, :].expand(*shape, k))
                    else:
                        w = self.layers[i].weight[units]  # (masks, k, H_{i-1})
                        pre = (
                            torch.bmm(hs[i - 1][..., :-1], w.transpose(1, 2))
                            + biases[i].gather(1, units)[:, None, :]
                        )
                    hs[i].scatter_(2, sink[:, None, :].expand(*shape, k), self.activation(pre))
            if t < start:
                continue
            d = orders[:, t]  # (masks,) this position's dimension under each mask
            rows = blocks_out[None, :] + d[:, None]  # (masks, p_out) output rows of those dimensions
            # Output degree t+1 keeps units of degree <= t (hidden) or inputs at positions < t: exactly
            # the units computed and the inputs drawn so far.
            drawn = grouped(inputs.reshape(n, -1)) if self.direct is not None or not deep else None
            h = hs[-1][..., :-1] if deep else drawn
            # bmm with the rows transposed: einsum chose a path 10× slower for these shapes.
            params = torch.bmm(h, out_layer.weight[rows].transpose(1, 2)) + out_bias.gather(
                2, rows[:, None, :].expand(*shape, p_out)
            )
            if self.direct is not None:  # O(D) per row
                params = params + torch.bmm(drawn, self.direct.weight[rows].transpose(1, 2))
            d_rows = d[group]
            new = step(d_rows, params[group, slot]).to(dtype).reshape(n, p_in)
            if deep:
                cols = blocks_in[None, :] + d[:, None]  # (masks, p_in) input columns of those dimensions
                delta = grouped(new - inputs[rows_all, :, d_rows])
                a1.baddbmm_(delta, w_in[cols])  # w_in[cols]: (masks, p_in, H1)
            inputs[rows_all, :, d_rows] = new
        return inputs


class ResidualMaskedMLP(nn.Module):
    """ResMADE: a MADE whose hidden layers are pre-activation residual blocks.

    Nash & Durkan (2019), "Autoregressive Energy Machines", §3.1; the MADE inside nflows' MAF and the
    neural spline flows (Durkan et al. 2019). With one hidden width H and ``num_blocks`` = B:

        h_0 = W_0 x (+ V c),   h_b = h_{b−1} + W_{b,2} σ(W_{b,1} σ(h_{b−1})),   out = W_out h_B (+ U c)

    Every hidden vector (the residual stream and the inside of each block) has width H and the same
    degrees, so a skip connection adds units of equal degree and every masked product keeps MADE's rules
    (Germain et al. 2015, eqs. 12–13): output d still depends only on the inputs before d. Each block's
    last layer starts at zero, so the network starts as the linear MADE ``W_out W_0 x`` and each block
    begins as the identity (the stream is never squashed: σ acts only inside the blocks).

    One mask (MAF's conditioner); the layout is :class:`MaskedMLP`'s: outputs ``(N, P_out, D)``. ``layers``
    lists the masked layers in order, ``layers[-1]`` being the output layer. :meth:`generate` costs one
    network evaluation in all, as :meth:`MaskedMLP.generate` does.

    Args:
        num_dims: D.
        hidden_size: H, the width of every hidden vector.
        num_blocks: B ≥ 1 residual blocks (two masked layers each).
        num_outputs_per_dim, context_size, ordering, hidden_degrees, activation, seed: as :class:`MaskedMLP`.
    """

    def __init__(
        self,
        num_dims: int,
        hidden_size: int,
        num_blocks: int = 1,
        *,
        num_outputs_per_dim: int = 1,
        context_size: int = 0,
        ordering="natural",
        hidden_degrees: str = "even",
        activation: str = "relu",
        seed: int = 0,
    ):
        super().__init__()
        if num_dims < 1 or int(hidden_size) < 1:
            raise ConfigError(f"num_dims and hidden_size must be positive, got {num_dims}, {hidden_size}")
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise ConfigError(f"num_blocks must be a positive int, got {num_blocks!r}")
        if activation not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}")
        H = int(hidden_size)
        self.num_dims, self.hidden_size, self.num_blocks = num_dims, H, num_blocks
        self.num_inputs_per_dim, self.num_outputs_per_dim = 1, num_outputs_per_dim
        self.context_size = int(context_size)
        self.activation = ACTIVATIONS[activation]()
        g = torch.Generator().manual_seed(seed)
        order = make_ordering(ordering, num_dims, g)
        self.register_buffer("orderings", order[None])
        inputs, hidden = made_degrees(order, [H], hidden_degrees, g)
        self.register_buffer("degrees", hidden)  # of every hidden vector
        into_hidden, into_output = made_masks([inputs, hidden], 1, num_outputs_per_dim)
        within = (hidden[:, None] >= hidden[None, :]).float()  # hidden → hidden (eq. 12)
        self.layers = nn.ModuleList(
            [
                MaskedLinear(num_dims, H, into_hidden),
                *(MaskedLinear(H, H, within) for _ in range(2 * num_blocks)),
                MaskedLinear(H, num_dims * num_outputs_per_dim, into_output),
            ]
        )
        for second in self.layers[2:-1:2]:
            nn.init.zeros_(second.weight)
            nn.init.zeros_(second.bias)
        if self.context_size:
            self.context_hidden = nn.Linear(self.context_size, H, bias=False)
            self.context_output = nn.Linear(self.context_size, num_dims * num_outputs_per_dim, bias=False)

    def ordering(self, mask_index: int = 0) -> Tensor:
        if int(mask_index) != 0:
            raise ConfigError(f"a residual MADE has one mask, got mask index {mask_index}")
        return self.orderings[0]

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Outputs ``(N, P_out, D)`` for inputs ``(N, D)`` (or ``(N, 1, D)``)."""
        h = self.layers[0](x.reshape(len(x), -1))
        if self.context_size:
            h = h + self.context_hidden(context)
        blocks = self.layers[1:-1]
        for first, second in zip(blocks[0::2], blocks[1::2], strict=True):
            h = h + second(self.activation(first(self.activation(h))))
        out = self.layers[-1](h)
        if self.context_size:
            out = out + self.context_output(context)
        return out.reshape(len(x), self.num_outputs_per_dim, self.num_dims)

    @torch.no_grad()
    def generate(
        self,
        step: Callable[[Tensor, Tensor], Tensor],
        inputs: Tensor,
        context: Tensor | None = None,
        start: int = 0,
    ) -> Tensor:
        """:meth:`MaskedMLP.generate` for the one mask: fill ``inputs`` ``(N, 1, D)`` position by position.

        Every hidden vector's units of degree k depend only on the positions before k and on units of
        degree <= k, so they are computed once, at position k; the first layer's pre-activation gains one
        input column per position. Summed over the D positions this is one network evaluation.
        """
        n, dtype = len(inputs), self.layers[0].weight.dtype
        order, D = self.orderings[0], self.num_dims
        inputs = inputs.to(dtype).clone()
        later = torch.ones(D, dtype=torch.bool, device=inputs.device)
        later[order[:start]] = False
        inputs[:, :, later] = 0
        first, *hidden, out = self.layers
        w_in = first.masked_weight()
        weights = [(layer.masked_weight(), layer.bias) for layer in hidden]
        w_out = out.masked_weight().reshape(self.num_outputs_per_dim, D, -1)
        b_out = out.bias.reshape(self.num_outputs_per_dim, D).expand(n, -1, -1)
        if self.context_size:
            b_out = b_out + self.context_output(context).reshape(n, self.num_outputs_per_dim, D)
        a1 = first(inputs.reshape(n, D))  # positions not yet drawn are 0
        if self.context_size:
            a1 = a1 + self.context_hidden(context)
        # σ of each block's input and of its inner layer, on the units computed so far (0 elsewhere, so a
        # product over the whole vector sees exactly the units a mask keeps); h: the final stream.
        streams = [a1.new_zeros(n, self.hidden_size) for _ in range(2 * self.num_blocks)]
        h = a1.new_zeros(n, self.hidden_size)
        for t in steps(D, "dim"):
            units = (self.degrees == t).nonzero()[:, 0]
            if len(units):
                u = a1[:, units]
                for b in range(self.num_blocks):
                    (w1, b1), (w2, b2) = weights[2 * b], weights[2 * b + 1]
                    streams[2 * b][:, units] = self.activation(u)
                    streams[2 * b + 1][:, units] = self.activation(streams[2 * b] @ w1[units].T + b1[units])
                    u = u + streams[2 * b + 1] @ w2[units].T + b2[units]
                h[:, units] = u
            if t < start:
                continue
            d = order[t]
            params = h @ w_out[:, d].T + b_out[:, :, d]
            new = step(d.expand(n), params).to(dtype)  # (N, 1)
            a1 += new * w_in[:, d]
            inputs[:, :, d] = new
        return inputs
