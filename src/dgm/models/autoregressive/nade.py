"""NADE: the neural autoregressive distribution estimator with tied input weights.

Larochelle & Murray (2011), "The Neural Autoregressive Distribution Estimator", AISTATS.
Each conditional has its own one-hidden-layer network, but all D networks share the input weights W
(H × D): in the ordering o, with a_1 = c and a_{d+1} = a_d + W[:, o_d] x_{o_d} (eqs. 4–5),

    h_d = σ(a_d),    p(x_{o_d} | x_{o_<d}) from the logits V_{o_d} h_d + b_{o_d}.

Sharing W is what makes a full evaluation O(HD) instead of O(HD²): all a_d are one exclusive cumulative
sum of the D contributions W[:, o_d] x_{o_d} (:meth:`NADE.log_prob`), where D separate networks would each
redo a sum over up to D inputs (:meth:`NADE.log_prob_naive`, kept as the reference). Sampling updates a
the same way, one column per step: O(HD) per sample.

The O(HD) pass is an autograd Function with its own backward (the gradient of a cumulative sum is a
reverse cumulative sum). It runs a few examples at a time in reused position-major (D, n, H) buffers
and keeps nothing of size D × N × H for the backward pass, which recomputes the activations chunk by
chunk. Binary inputs use that a_d only changes after a 1: each run of zeros shares one hidden state
(:class:`_Segments`), so only (K + 1) × H sigmoids are computed for an image with K ones (about 100 of
784 on MNIST). Real-valued inputs (RNADE) go through the positions 16 at a time (:class:`_RealBlocks`):
a block's pre-activations are one small product plus what the earlier blocks add, and all of its work
is done while its values are in cache. One-hot inputs take a blocked scan over all D positions (small
triangular products inside blocks of 16, a running sum across blocks). Left to autograd, the same
computation costs several times the time and memory.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Distribution

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError
from dgm.core.model import GenerativeModel
from dgm.core.progress import steps
from dgm.core.registry import register
from dgm.nn.masked import make_ordering

# Examples per chunk of the O(HD) pass: about this many activations (n × D × H) at a time. The per-segment
# route of binary inputs works on (K + 1) × H values and is fastest in small, cache-sized chunks, as is
# the one-hot route. The real route (RNADE) keeps only block-sized buffers, so its chunk bounds the
# (D/B, n, H) block offsets instead, and is large: its per-block products take the chunk as their row
# count, and with 2 MNIST images per chunk they ran far below the matmul rate.
_CHUNK_ELEMENTS = 1 << 20
_REAL_CHUNK_ELEMENTS = 1 << 24
# Positions per block of the blocked scan (see _exclusive_scan).
_BLOCK = 16


def _whole_blocks(length: int) -> int:
    """``length`` rounded up to a multiple of _BLOCK (the scans work on whole blocks)."""
    return -(-length // _BLOCK) * _BLOCK


def _activate(z: Tensor, activation: str, out: Tensor | None = None) -> Tensor:
    return torch.sigmoid(z, out=out) if activation == "sigmoid" else torch.clamp_min(z, 0, out=out)


def _times_activation_derivative(grad: Tensor, h: Tensor, activation: str) -> Tensor:
    """``grad`` times act'(z), in place, from the activations h = act(z), in one pass (torch's own backward
    kernels of the activations: σ' = h − h², ReLU' = [h > 0])."""
    if activation == "sigmoid":
        return torch.ops.aten.sigmoid_backward.grad_input(grad, h, grad_input=grad)
    return torch.ops.aten.threshold_backward.grad_input(grad, h, 0, grad_input=grad)


class _Workspace:
    """Scratch buffers of up to (rows, chunk, H), kept between calls (per thread, device and dtype).

    A fresh multi-megabyte tensor is new memory that the OS must map page by page on first touch; on
    CPU that costs about as much as the arithmetic done in it, so buffers are allocated once and reused.
    """

    _cache = threading.local()

    def __init__(self, like: Tensor, rows: int, chunk: int, H: int, count: int):
        key, size = (like.device, like.dtype), rows * chunk * H
        pool = getattr(self._cache, "pool", None)
        if pool is None:
            pool = self._cache.pool = {}
        buffers = pool.get(key, [])
        if len(buffers) < count or buffers[0].numel() < size:
            buffers = pool[key] = [like.new_empty(size) for _ in range(max(count, len(buffers)))]
        self.flat, self.rows, self.H = buffers, rows, H

    def get(self, i: int, n: int, rows: int | None = None) -> Tensor:
        """Buffer i as (rows, n, H) (``rows`` defaults to the workspace's)."""
        rows = self.rows if rows is None else rows
        return self.flat[i][: rows * n * self.H].view(rows, n, self.H)


def _exclusive_scan(src: Tensor, out: Tensor, reverse: bool = False) -> Tensor:
    """out[d] = Σ_{t<d} src[t] (``reverse``: Σ_{t>d}) along dim 0, whose length is a multiple of _BLOCK.

    A blocked scan: inside each block of B positions one small triangular matrix product (B × B by
    B × rest), across blocks a cumulative sum of the D/B block totals. Still O(D) per column, and two to
    three times faster on CPU than ``torch.cumsum`` along a leading dimension, a scalar loop.
    """
    nb = src.shape[0] // _BLOCK
    tri = torch.ones(_BLOCK, _BLOCK, dtype=src.dtype, device=src.device)
    tri = tri.triu(1) if reverse else tri.tril(-1)  # strictly after / before within the block
    blocks, result = src.view(nb, _BLOCK, -1), out.view(nb, _BLOCK, -1)
    torch.matmul(tri, blocks, out=result)
    totals = blocks.sum(1)  # (nb, rest)
    running = totals.flip(0).cumsum(0).flip(0) if reverse else totals.cumsum(0)
    offsets = running - totals
    return result.add_(offsets[:, None]).view_as(out)


def _input_table(W: Tensor, padded: int) -> Tensor:
    """W as a dense row table, zero rows appended up to ``padded`` positions: row d is W[:, d]
    (binary/real inputs), row d·k + v is W[:, d, v] (one-hot categorical). Rows read contiguously."""
    table = W.T if W.dim() == 2 else W.permute(1, 2, 0).reshape(-1, W.shape[0])
    rows_per_dim = 1 if W.dim() == 2 else W.shape[2]
    return torch.cat([table, table.new_zeros((padded - W.shape[1]) * rows_per_dim, W.shape[0])])


def _pre_activations(x: Tensor, table: Tensor, start: Tensor, contrib: Tensor, out: Tensor) -> Tensor:
    """a[d, n] = start[n] + Σ_{t<d} W[:, t, x[n, t]] for categorical x (one-hot inputs), into ``out``.

    Position-major (D', n, H) with D' ≥ D padded to whole scan blocks (the padding contributes zero):
    the observed value's row of W per position, then a blocked exclusive scan.
    """
    D, padded = x.shape[1], contrib.shape[0]
    k = len(table) // padded
    rows = (torch.arange(D, device=x.device)[:, None] * k + x.T).reshape(-1)
    torch.index_select(table, 0, rows, out=contrib[:D].view(-1, table.shape[1]))
    contrib[D:] = 0
    return _exclusive_scan(contrib, out).add_(start)


def _before(like: Tensor) -> Tensor:
    """[t < d] as a (B × B) matrix indexed [d, t]."""
    return torch.ones(_BLOCK, _BLOCK, dtype=like.dtype, device=like.device).tril(-1)


class _RealBlocks:
    """The O(HD) pass for real-valued inputs, one block of B positions at a time.

    With position d in block b, a_d = start + Σ_{earlier blocks} x_block W_block^T + Σ_{t in b, t<d} x_t
    W[:, t]: the first two terms are one (n, H) offset per block (a product per block and a running
    sum), the last a (B·n × B) by (B × H) product. Everything of size B × n × H (a, h, dL/dh) is made,
    used and dropped while it is still in cache, and the backward pass walks the blocks last to first,
    carrying Σ_{later blocks} dL/da. Nothing of size D × n × H is ever written to memory: on CPU these
    passes are bound by memory traffic, not arithmetic (RNADE at H = 500, 10 components, 100 images, one
    thread: a training step 630 ms when whole (D, n, H) arrays were written, 2.1–2.5 s before that).
    """

    def __init__(self, x: Tensor, table: Tensor, start: Tensor, rho: Tensor | None):
        n, D = x.shape
        padded, H = table.shape
        self.nb, self.D, self.n, self.H = padded // _BLOCK, D, n, H
        xb = x.new_zeros(padded, n)
        xb[:D] = x.T
        self.xb = xb.view(self.nb, _BLOCK, n)  # (block, t, n)
        self.W = table.view(self.nb, _BLOCK, H)
        # [t < d] x[n, t] per block: (block, d, n, t)
        self.x_before = _before(x)[None, :, None, :] * self.xb.transpose(1, 2)[:, None]
        totals = torch.bmm(self.xb.transpose(1, 2), self.W)  # (block, n, H)
        self.offsets = totals.cumsum(0).sub_(totals).add_(start)  # start + every earlier block
        self.rho = rho

    def positions(self, block: int) -> slice:
        return slice(block * _BLOCK, min((block + 1) * _BLOCK, self.D))

    def hidden(self, block: int, activation: str, need_a: bool = True) -> tuple[Tensor | None, Tensor]:
        """(a, h) of the block's k ≤ B positions, each (k, n, H); a is None unless ``need_a``."""
        pos = self.positions(block)
        k = pos.stop - pos.start
        W = self.W[block].expand(k, _BLOCK, self.H)
        if self.rho is not None and not need_a:  # z = ρ a straight from the products
            rho = self.rho[pos, None, None]
            z = torch.mul(self.offsets[block], rho).baddbmm_(self.x_before[block, :k] * rho, W)
            return None, _activate(z, activation, out=z)
        a = torch.baddbmm(self.offsets[block].expand(k, self.n, self.H), self.x_before[block, :k], W)
        z = a if self.rho is None else a * self.rho[pos, None, None]
        return a, _activate(z, activation)


def _real_forward(x, table, start, V, b, rho, activation: str) -> Tensor:
    """params (D, n, P) of one chunk of real-valued inputs."""
    blocks = _RealBlocks(x, table, start, rho)
    out = start.new_empty(x.shape[1], len(x), V.shape[1])
    for block in range(blocks.nb):
        pos = blocks.positions(block)
        _, h = blocks.hidden(block, activation, need_a=False)
        torch.baddbmm(b[pos, None, :], h, V[pos].transpose(1, 2), out=out[pos])
    return out


def _real_backward(x, table, start, V, rho, activation: str, g: Tensor, dV, drho, want_dx: bool, first: bool):
    """From g = dL/dparams ((D, P, n)) of one chunk: writes (``first`` chunk) or adds into dV and drho;
    returns the rows of dL/dW ((D', H)), dL/dstart (n, H) and dL/dx (n, D) or None."""
    blocks = _RealBlocks(x, table, start, rho)
    n, D = x.shape
    d_table = torch.zeros_like(table).view(blocks.nb, _BLOCK, -1)
    after = start.new_zeros(n, blocks.H)  # Σ of dL/da over the blocks after the current one
    dx = x.new_zeros(n, blocks.nb, _BLOCK) if want_dx else None
    before = _before(x)
    for block in reversed(range(blocks.nb)):
        pos = blocks.positions(block)
        k = pos.stop - pos.start
        a, h = blocks.hidden(block, activation)
        if first:
            torch.bmm(g[pos], h, out=dV[pos])
        else:
            dV[pos].baddbmm_(g[pos], h)
        dz = torch.bmm(g[pos].transpose(1, 2), V[pos])  # dL/dh, then dL/dz in place
        _times_activation_derivative(dz, h, activation)
        if rho is not None:
            drho_block = torch.mul(dz, a, out=a).sum((1, 2))
            drho[pos] = drho_block if first else drho[pos] + drho_block
            dz.mul_(rho[pos, None, None])  # now dL/da
        # W[:, t] feeds every later a_d: inside the block through [t < d] x_t, and every later block.
        rows = blocks.x_before[block, :k].reshape(k * n, _BLOCK)
        torch.addmm(d_table[block], rows.T, dz.view(k * n, -1), out=d_table[block])
        d_table[block].addmm_(blocks.xb[block], after)
        if dx is not None:  # dL/dx[n, t] = W[:, t] · Σ_{d>t} dL/da[d, n]
            per_pair = torch.matmul(dz, blocks.W[block].T)  # (d, n, t)
            dx[:, block] = (per_pair * before[:k, None, :]).sum(0) + after @ blocks.W[block].T
        after += dz.sum(0)
    d_x = dx.view(n, -1)[:, :D] if dx is not None else None
    return d_table.view(len(table), -1), after, d_x


class _Segments:
    """The hidden layer of binary inputs, computed once per run of zeros.

    With x ∈ {0, 1}, a_{d+1} = a_d + W[:, d] x_d changes only after the K positions where x_d = 1, so
    the D pre-activations of an example take K + 1 distinct values, one per segment between ones
    (K ≈ 100 of D = 784 on MNIST). They are a cumulative sum of K columns of W, and only (K + 1) × H
    activations are computed; the D × H work left is what every position needs on its own: reading its
    segment's h and its own output weights V_d. The backward pass sums dL/dh over each segment, so W
    and start get their gradients from (K + 1) × H values as well.
    """

    def __init__(self, x: Tensor, table: Tensor, start: Tensor, activation: str, ws: _Workspace):
        n, D = x.shape
        ones = x > 0.5  # x is exactly 0 or 1 here (checked by the caller)
        upto = ones.cumsum(1)  # ones among x[n, :d+1]
        K = int(upto[:, -1].max()) if D else 0
        self.example, self.position = ones.nonzero(as_tuple=True)  # sorted by example, then position
        self.rank = upto[self.example, self.position]  # the segment each one starts: 1..K_n
        # Segment-major (S, n, H) in workspace buffers 0 and 1, S ≥ K + 1 padded to whole scan blocks;
        # step k of example n is the W column of its k-th one (step 0: start), and segment k's a sums
        # steps 0..k.
        self.S = S = _whole_blocks(K + 1)
        steps = ws.get(0, n, S).zero_()
        steps[0] = start
        steps[self.rank, self.example] = torch.index_select(table, 0, self.position)
        self.h = _activate(
            _exclusive_scan(steps, ws.get(1, n, S)).add_(steps), activation, out=ws.get(1, n, S)
        )
        # Row of h[segment of (n, d), n] in h viewed as (S·n, H), position-major (D, n).
        segment = upto - ones.long()
        self.rows = (segment * n + torch.arange(n, device=x.device)[:, None]).T.reshape(-1)
        self.n, self.ws = n, ws

    def hidden(self, out: Tensor) -> Tensor:
        """h of every position into ``out`` ((D, n, H))."""
        torch.index_select(self.h.view(-1, self.h.shape[2]), 0, self.rows, out=out.view(-1, out.shape[2]))
        return out

    def backward(self, dh: Tensor, activation: str, d_table: Tensor) -> Tensor:
        """From dL/dh of every position (D, n, H): adds dL/dW's rows into ``d_table``; returns dL/dstart.
        Uses up the segments: h is overwritten."""
        H, h = dh.shape[2], self.h
        d_segment = self.ws.get(0, self.n, self.S).zero_()  # the steps are no longer needed
        d_segment.view(-1, H).index_add_(0, self.rows, dh.view(-1, H))
        _times_activation_derivative(d_segment, h, activation)
        # a of segment k sums the steps 0..k, so step j's gradient sums the segments k ≥ j.
        d_steps = _exclusive_scan(d_segment, h, reverse=True).add_(d_segment)
        d_table.index_add_(0, self.position, d_steps[self.rank, self.example])
        return d_steps[0]


class _TiedConditionals(torch.autograd.Function):
    """params[n, d] = V_d act(ρ_d a_nd) + b_d for every position d, in O(HD) per example.

    Inputs are in ordering order: x (N, D), float, or long for one-hot categorical inputs; W (H, D) or
    (H, D, k); start = a_1 per example (N, H); V (D, P, H); b (D, P); rho (D,) or None (float x only).
    Work is done ``chunk`` examples at a time. Binary inputs (without ρ, and unless x itself wants a
    gradient) take the per-segment route of :class:`_Segments`, other real inputs the per-block route of
    :class:`_RealBlocks`, one-hot inputs a blocked scan over all D positions, position-major (D, n, H),
    in reused buffers. Nothing of size D × N × H is kept for the backward pass: it recomputes each
    chunk's activations, which costs less than writing them to fresh memory and reading them back.
    """

    @staticmethod
    def _one_hot_hidden(x, table, start, activation, ws, n):
        """h of one chunk of one-hot inputs over all D positions, in workspace buffer 2 (buffers 0 and 1
        are scratch)."""
        D = x.shape[1]
        padded = _whole_blocks(D)
        a = _pre_activations(x, table, start, ws.get(0, n, padded), ws.get(1, n, padded))[:D]
        return _activate(a, activation, out=ws.get(2, n)[:D])

    @staticmethod
    def forward(ctx, x, W, start, V, b, rho, activation: str, chunk: int):
        N, D, H = len(x), x.shape[1], W.shape[0]
        padded = _whole_blocks(D)
        ctx.route = "one-hot" if not x.is_floating_point() else "real"
        if ctx.route == "one-hot" and rho is not None:
            raise NotImplementedError(
                "ρ (RNADE's per-position scale) is for real-valued inputs, not one-hot ones"
            )
        if rho is None and ctx.route == "real" and not ctx.needs_input_grad[0]:
            ctx.route = "segments" if bool(((x == 0) | (x == 1)).all()) else "real"
        if ctx.route == "real":  # its buffers are per block: the chunk only bounds the (D/B, n, H) offsets
            chunk = _REAL_CHUNK_ELEMENTS // (padded // _BLOCK * H)
        chunk = max(1, min(chunk, N))
        ws = _Workspace(start, padded + _BLOCK, chunk, H, 3) if ctx.route != "real" else None
        table = _input_table(W, padded)
        out = []
        for i in range(0, N, chunk):
            n = min(chunk, N - i)
            xc, sc = x[i : i + n], start[i : i + n]
            if ctx.route == "real":
                out.append(_real_forward(xc, table, sc, V, b, rho, activation).transpose(0, 1))
                continue
            if ctx.route == "segments":
                h = _Segments(xc, table, sc, activation, ws).hidden(ws.get(2, n)[:D])
            else:
                h = _TiedConditionals._one_hot_hidden(xc, table, sc, activation, ws, n)
            out.append((torch.matmul(h, V.transpose(1, 2)) + b[:, None, :]).transpose(0, 1))  # (n, D, P)
        ctx.save_for_backward(x, W, start, V, rho)
        ctx.activation, ctx.chunk = activation, chunk
        return torch.cat(out) if out else start.new_zeros(0, *b.shape)

    @staticmethod
    def backward(ctx, grad):
        x, W, start, V, rho = ctx.saved_tensors
        N, D, H = len(x), x.shape[1], W.shape[0]
        padded = _whole_blocks(D)
        table = _input_table(W, padded)
        d_table = torch.zeros_like(table)
        dstart = grad.new_zeros(N, H)
        # The real route writes its first chunk's dV and dρ in place of adding them to zeros.
        fill = torch.empty_like if ctx.route == "real" else torch.zeros_like
        dV = fill(V)
        drho = fill(rho) if rho is not None else None
        # Real (or binary) inputs may want their own gradient, e.g. for the autoregressive Jacobian check.
        dx = torch.zeros_like(x) if ctx.needs_input_grad[0] and x.is_floating_point() else None
        ws = _Workspace(grad, padded + _BLOCK, ctx.chunk, H, 4) if ctx.route != "real" else None
        for i in range(0, N, ctx.chunk):
            n = min(ctx.chunk, N - i)
            xc, sc = x[i : i + n], start[i : i + n]
            g = grad[i : i + n].permute(1, 2, 0).contiguous()  # (D, P, n)
            if ctx.route == "real":
                rows, dstart[i : i + n], dx_chunk = _real_backward(
                    xc, table, sc, V, rho, ctx.activation, g, dV, drho, dx is not None, first=i == 0
                )
                d_table += rows
                if dx is not None:
                    dx[i : i + n] = dx_chunk
                continue
            if ctx.route == "segments":
                segments = _Segments(xc, table, sc, ctx.activation, ws)
                h = segments.hidden(ws.get(2, n)[:D])
                dV.baddbmm_(g, h)
                # dL/dh = g^T V, with P = 1 (Bernoulli) an outer product: a broadcast beats a batched matmul
                product = torch.mul if V.shape[1] == 1 else torch.matmul
                dh = product(g.transpose(1, 2), V, out=ws.get(3, n)[:D])
                dstart[i : i + n] = segments.backward(dh, ctx.activation, d_table)
                continue
            h = _TiedConditionals._one_hot_hidden(xc, table, sc, ctx.activation, ws, n)
            dV.baddbmm_(g, h)
            dz_padded = ws.get(3, n, padded)
            dz_padded[D:] = 0
            dz = torch.matmul(g.transpose(1, 2), V, out=dz_padded[:D])  # dL/dh
            _times_activation_derivative(dz, h, ctx.activation)
            dstart[i : i + n] = dz.sum(0)
            # x_t feeds every later position, so its weight's gradient sums dL/da over positions d > t.
            later = _exclusive_scan(dz_padded, ws.get(0, n, padded), reverse=True)[:D]
            rows = (torch.arange(D, device=x.device)[:, None] * W.shape[2] + xc.T).reshape(-1)
            d_table.index_add_(0, rows, later.reshape(-1, H))
        if W.dim() == 2:
            dW = d_table[:D].T
        else:
            dW = d_table[: D * W.shape[2]].reshape(D, W.shape[2], H).permute(2, 0, 1)
        return dx, dW, dstart, dV, grad.sum(0), drho, None, None


class TiedAutoregressiveBody(GenerativeModel):
    """What NADE and RNADE share: the ordering, tied input weights W, the hidden activations h_d, and
    per-dimension output parameters V_d h_d + b_d (P values per dimension).

    Subclasses set ``num_inputs_per_dim`` (1, or k for one-hot categorical inputs), ``num_params`` (P),
    ``activation``, and define ``_distribution(params)`` (params (N, D, P) in dimension order → a
    distribution with batch shape (N, D)) and ``_draw(params, generator)`` (params (N, P) → values (N,)).
    """

    def _build_body(self, hidden_size: int, ordering, num_classes: int | None, seed: int, rho: bool = False):
        if hidden_size < 1:
            raise ConfigError(f"hidden_size must be positive, got {hidden_size}")
        if num_classes is not None and num_classes < 1:
            raise ConfigError(f"num_classes must be a positive int or None, got {num_classes}")
        D, H, P = self.num_dims, hidden_size, self.num_params
        self.hidden_size, self.num_classes = H, num_classes
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("ordering", make_ordering(ordering, D, g))
        # Whether the ordering is 0..D-1, known on the host: on a GPU, comparing per batch is a read back.
        self._is_natural_order: bool | None = torch.equal(self.ordering, torch.arange(D))
        p = self.num_inputs_per_dim
        # W[:, d] (or W[:, d, v] for the one-hot value v) is the tied input weight of dimension d.
        self.W = nn.Parameter(torch.randn((H, D) if p == 1 else (H, D, p), generator=g) * 0.01)
        self.c = nn.Parameter(torch.zeros(H))
        self.V = nn.Parameter(torch.randn(D, P, H, generator=g) * 0.01)
        self.b = nn.Parameter(torch.zeros(D, P))
        # RNADE's per-position activation scale ρ_d (Uria et al. 2013); absent in NADE.
        self.rho = nn.Parameter(torch.ones(D)) if rho else None
        # A class label shifts the hidden bias: a_1 = c + U[y], so every conditional depends on y.
        self.class_bias = nn.Embedding(num_classes, H) if num_classes else None
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    def _start(self, labels: Tensor | None, n: int) -> Tensor:
        """a_1 = c (+ U[y]), shape (n, H)."""
        a = self.c.expand(n, -1)
        return a if labels is None else a + self.class_bias(labels)

    def _ordered_inputs(self, x: Tensor) -> Tensor:
        x_o = x.reshape(len(x), -1)[:, self.ordering]
        return x_o.long() if self.num_inputs_per_dim > 1 else x_o.to(self.c.dtype)

    def _rho(self, positions=None) -> Tensor | None:
        if self.rho is None:
            return None
        return self.rho[self.ordering] if positions is None else self.rho[self.ordering[positions]]

    def _natural(self, params: Tensor) -> Tensor:
        """Per-position parameters (N, D, ...) in ordering order → dimension order."""
        return params[:, torch.argsort(self.ordering)]

    # ------------------------------------------------------------------ evaluation
    def params(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """Output parameters of every conditional, (N, D, P) in dimension order: O(HD) per example."""
        chunk = max(1, _CHUNK_ELEMENTS // (self.num_dims * self.hidden_size))
        if self._natural_order():  # no copies of W, V and b (V alone is D·P·H values) to put in order
            W, V, b, rho = self.W, self.V, self.b, self.rho
        else:
            o = self.ordering
            W, V, b, rho = self.W[:, o], self.V[o], self.b[o], self._rho()
        params = _TiedConditionals.apply(
            self._ordered_inputs(x), W, self._start(labels, len(x)), V, b, rho, self.activation, chunk
        )
        return params if self._natural_order() else self._natural(params)

    def _natural_order(self) -> bool:
        if self._is_natural_order is None:
            self._is_natural_order = torch.equal(self.ordering.cpu(), torch.arange(self.num_dims))
        return self._is_natural_order

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._is_natural_order = None  # the loaded ordering may be another

    def params_naive(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """The same parameters from D separate networks, each summing over its d-1 inputs: O(HD²)."""
        x_o = self._ordered_inputs(x)
        W = self.W[:, self.ordering]
        V, b = self.V[self.ordering], self.b[self.ordering]
        start = self._start(labels, len(x))
        out = []
        for d in range(self.num_dims):
            if self.num_inputs_per_dim == 1:
                a = start + x_o[:, :d] @ W[:, :d].T
            else:
                one_hot = nn.functional.one_hot(x_o[:, :d], self.num_inputs_per_dim).to(W.dtype)
                a = start + one_hot.reshape(len(x), -1) @ W[:, :d].reshape(self.hidden_size, -1).T
            rho = self._rho(d)
            h = _activate(a * rho if rho is not None else a, self.activation)
            out.append(h @ V[d].T + b[d])
        return self._natural(torch.stack(out, 1))

    def conditionals(self, x: Tensor, context: Tensor | None = None) -> Distribution:
        """p(x_d | x_<d in the ordering) for every dimension d, batch shape (N, D) in dimension order."""
        x = self.validate(x)
        return self._distribution(self.params(x, self.class_labels(context, len(x))))

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.validate(x)
        params = self.params(x, self.class_labels(context, len(x)))
        return self._distribution(params).log_prob(self._values(x)).sum(-1)

    def log_prob_naive(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Reference O(HD²) evaluation: each conditional's hidden layer computed from scratch."""
        x = self.validate(x)
        params = self.params_naive(x, self.class_labels(context, len(x)))
        return self._distribution(params).log_prob(self._values(x)).sum(-1)

    def _values(self, x: Tensor) -> Tensor:
        x = x.reshape(len(x), -1)
        return x.long() if self.support.kind == "categorical" else x.to(self.c.dtype)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        """Ancestral sampling with a updated one column per step: O(HD) per sample."""
        n = self.check_num_samples(num_samples)
        a = self._start(self.class_labels(context, n), n).clone()
        x = torch.zeros(n, self.num_dims, device=self.device, dtype=self.c.dtype)
        for t, d in enumerate(steps(self.ordering.tolist(), "dim")):
            rho = self._rho(t)
            h = _activate(a * rho if rho is not None else a, self.activation)
            value = self._draw(h @ self.V[d].T + self.b[d], generator)
            x[:, d] = value.to(x.dtype)
            if self.num_inputs_per_dim == 1:
                a += value[:, None].to(a.dtype) * self.W[:, d]
            else:
                a += self.W[:, d, value.long()].T
        return x.float().reshape(n, *self.event_shape)


@register(
    "nade",
    description="neural autoregressive distribution estimator: tied weights, O(HD) evaluation",
    paper="Larochelle & Murray 2011, The Neural Autoregressive Distribution Estimator",
    family="autoregressive",
    tiny={"hidden_size": 8, "ordering": "random"},
    supports=("binary", "categorical"),
)
class NADE(TiedAutoregressiveBody):
    """NADE with Bernoulli (binary) or softmax (categorical(k)) conditionals and sigmoid hidden units.

    Larochelle & Murray (2011), "The Neural Autoregressive Distribution Estimator", AISTATS.

    Args:
        event_shape: shape of one example (flattened to D values; raster order for images).
        support: ``"binary"`` or ``"categorical(k)"`` (inputs one-hot: W is H × D × k, outputs k logits).
        hidden_size: H, the number of hidden units (500 in the paper's MNIST experiments).
        ordering: ``"natural"``, ``"reverse"``, ``"random"`` (drawn from ``seed``) or a permutation;
            stored in the ``ordering`` buffer, so checkpoints keep it.
        num_classes: if set, the class label adds a learned vector to the hidden bias c: p(x | y).
        seed: seeds the initial weights and a random ordering.
    """

    activation = "sigmoid"

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        hidden_size: int = 500,
        ordering="natural",
        num_classes: int | None = None,
        seed: int = 0,
    ):
        super().__init__(event_shape, support)
        if not self.support.discrete:
            raise ConfigError("nade models binary or categorical(k) data; for real data use rnade")
        binary = self.support.kind == "binary"
        self.num_inputs_per_dim = self.num_params = 1 if binary else self.support.num_categories
        self._build_body(hidden_size, ordering, num_classes, seed)

    def _distribution(self, params: Tensor) -> Distribution:
        if self.support.kind == "binary":
            return Bernoulli(logits=params[..., 0])
        return Categorical(logits=params)

    def _draw(self, params: Tensor, generator) -> Tensor:
        return draw(self._distribution(params), (), generator)

    def num_parameters(self) -> int:
        """Free parameters: the last dimension's input column of W is never used, and softmax logits are
        invariant to a common shift, so each output dimension has (k-1)(H+1) free values."""
        D, H, k = self.num_dims, self.hidden_size, self.support.num_categories
        classes = self.num_classes * H if self.num_classes else 0
        return H * (D - 1) * self.num_inputs_per_dim + H + D * (k - 1) * (H + 1) + classes
