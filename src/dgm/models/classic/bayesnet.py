"""Discrete Bayesian networks with conditional probability tables (CS236 lecture 2: representation).

A Bayesian network factorises a joint over D categorical variables along a DAG,

    p(x) = Π_i p(x_i | x_pa(i)),

one table p(x_i | x_pa(i)) per variable with (Π_{j∈pa(i)} k_j) rows of k_i probabilities. The structure
decides the number of free parameters Σ_i (k_i − 1) Π_{j∈pa(i)} k_j, and with it what the model can
represent: independent marginals (no parents), a Markov chain of order m (the m previous variables in an
ordering), the full chain rule (all previous variables: every joint, but Π k_i − 1 parameters), or any DAG.

Maximum likelihood is closed-form: the conditional frequencies in the training data, smoothed with a
symmetric Dirichlet prior of ``alpha`` pseudo-counts per cell (Laplace's rule for alpha = 1).

Storage: all tables live in one ``(rows, k_max)`` logits tensor, variable i owning rows
``offset_i .. offset_i + Π k_pa``. A variable's row for an example is a mixed-radix number formed from its
parents' values, so ``log_prob`` is one gather for all D variables instead of D Python-level lookups.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from dgm.core.distributions import sample as draw
from dgm.core.errors import ConfigError, DataError
from dgm.core.model import GenerativeModel
from dgm.core.registry import register

# Tables above this many entries are refused: 2^26 float32 values are 256 MiB.
MAX_TABLE_ENTRIES = 2**26


def parse_structure(structure, num_vars: int, ordering: Sequence[int]) -> list[list[int]]:
    """Parent lists from ``"independent"``, ``"markov(m)"``, ``"full"`` or an explicit list of lists."""
    if isinstance(structure, str):
        name = structure.strip().lower().replace(" ", "")
        if name == "independent":
            return [[] for _ in range(num_vars)]
        if name == "full":
            m = num_vars
        elif match := re.fullmatch(r"markov\((\d+)\)", name):
            m = int(match.group(1))
        else:
            raise ConfigError(
                f"unknown structure {structure!r}; use 'independent', 'markov(m)', 'full' or a list of "
                "parent lists"
            )
        parents: list[list[int]] = [[] for _ in range(num_vars)]
        for pos, var in enumerate(ordering):
            parents[var] = [ordering[p] for p in range(max(0, pos - m), pos)]
        return parents
    if not isinstance(structure, list | tuple) or len(structure) != num_vars:
        got = len(structure) if isinstance(structure, list | tuple) else type(structure).__name__
        raise ConfigError(f"structure must give one parent list per variable ({num_vars}), got {got}")
    parents = []
    for i, pa in enumerate(structure):
        if not isinstance(pa, list | tuple) or not all(
            isinstance(j, int) and not isinstance(j, bool) for j in pa
        ):
            raise ConfigError(f"parents of variable {i} must be a list of ints, got {pa!r}")
        bad = [j for j in pa if not 0 <= j < num_vars]
        if bad:
            raise ConfigError(f"parents of variable {i} out of range 0..{num_vars - 1}: {bad}")
        if i in pa:
            raise ConfigError(f"variable {i} lists itself as a parent")
        if len(set(pa)) != len(pa):
            raise ConfigError(f"parents of variable {i} repeat a variable: {list(pa)}")
        parents.append(list(pa))
    return parents


def topological_order(parents: list[list[int]]) -> list[int]:
    """Kahn's algorithm; raises ConfigError naming a cycle when the graph is not a DAG."""
    children: list[list[int]] = [[] for _ in parents]
    indegree = [len(pa) for pa in parents]
    for i, pa in enumerate(parents):
        for j in pa:
            children[j].append(i)
    order = [i for i, d in enumerate(indegree) if d == 0]
    for i in order:  # the list grows while it is walked
        for c in children[i]:
            indegree[c] -= 1
            if indegree[c] == 0:
                order.append(c)
    if len(order) < len(parents):
        # Walk parent links inside the remaining set until a variable repeats: that loop is a cycle.
        left = {i for i, d in enumerate(indegree) if d > 0}
        node, seen = next(iter(left)), []
        while node not in seen:
            seen.append(node)
            node = next(j for j in parents[node] if j in left)
        cycle = [*seen[seen.index(node) :], node][::-1]
        raise ConfigError(
            f"structure has a cycle: {' -> '.join(map(str, cycle))}; a Bayesian network needs a DAG"
        )
    return order


def _approx(n: int) -> str:
    """A possibly astronomically large int as '1.2e+236' (float() would overflow for 256^784)."""
    digits = len(str(n))
    return f"{n:.3g}" if digits < 300 else f"{str(n)[0]}.{str(n)[1:3]}e+{digits - 1}"


@register(
    "bayesnet",
    description="discrete Bayesian network with tables: independent, markov(m), full chain rule or any DAG",
    paper="Pearl 1988; Koller & Friedman 2009 (CS236 lecture 2)",
    family="classic",
    tiny={"structure": "markov(2)"},
    supports=("binary", "categorical"),
)
class BayesNet(GenerativeModel):
    """Categorical Bayesian network over the D values of one example.

    Pearl (1988); Koller & Friedman (2009).

    Args:
        event_shape: shape of one example (flattened into D variables).
        support: ``"binary"`` or ``"categorical(k)"``.
        structure: ``"independent"``, ``"markov(m)"`` (each variable's parents are the m previous ones in
            ``ordering``), ``"full"`` (all previous ones: the chain rule with tables) or a list giving each
            variable's parent list (any DAG).
        ordering: the variable order for ``markov(m)`` and ``full``; None is the natural order 0..D-1.
        cardinalities: k_i per variable (each at most the support's k); None gives every variable k values.
        alpha: Dirichlet pseudo-count per table cell used by :meth:`fit`.
    """

    def __init__(
        self,
        event_shape,
        support: str = "binary",
        structure: str | list = "markov(1)",
        ordering: list[int] | None = None,
        cardinalities: list[int] | None = None,
        alpha: float = 1.0,
    ):
        super().__init__(event_shape, support)
        if not self.support.discrete:
            raise ConfigError("bayesnet needs discrete data (binary or categorical(k)); got real")
        if alpha < 0:
            raise ConfigError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        D, k = self.num_dims, self.support.num_categories
        if ordering is None:
            ordering = list(range(D))
        if sorted(ordering) != list(range(D)):
            raise ConfigError(f"ordering must be a permutation of 0..{D - 1}")
        if cardinalities is None:
            cardinalities = [k] * D
        if len(cardinalities) != D or any(not 2 <= int(c) <= k for c in cardinalities):
            raise ConfigError(f"cardinalities must give D={D} values, each in 2..{k} (the support's k)")
        self.cardinalities = [int(c) for c in cardinalities]
        self.parents = parse_structure(structure, D, list(ordering))
        self.order = topological_order(self.parents)

        rows = [math.prod(self.cardinalities[j] for j in pa) for pa in self.parents]
        total = sum(rows) * k
        if total > MAX_TABLE_ENTRIES:
            raise ConfigError(
                f"structure {structure!r} needs {_approx(total)} table entries ({_approx(total * 4)} bytes) "
                f"for D={D}, more than the {_approx(MAX_TABLE_ENTRIES)} that fit; 'full' is usable only for "
                "small D (about 24 binary variables): use 'markov(m)' or a sparser DAG"
            )
        self.num_rows = rows
        max_parents = max((len(pa) for pa in self.parents), default=0)
        # Parent index D points at a constant-zero column; its stride is 0, so padding changes nothing.
        padded = torch.full((D, max(max_parents, 1)), D, dtype=torch.long)
        strides = torch.zeros(D, max(max_parents, 1), dtype=torch.long)
        for i, pa in enumerate(self.parents):
            stride = 1
            for s, j in reversed(list(enumerate(pa))):
                padded[i, s], strides[i, s] = j, stride
                stride *= self.cardinalities[j]
        offsets = torch.tensor([0, *rows[:-1]], dtype=torch.long).cumsum(0)
        valid = torch.arange(k)[None, :] < torch.tensor(self.cardinalities)[:, None]  # (D, k)
        self.register_buffer("parent_index", padded, persistent=False)
        self.register_buffer("parent_stride", strides, persistent=False)
        self.register_buffer("row_offset", offsets, persistent=False)
        row_var = torch.repeat_interleave(torch.arange(D), torch.tensor(rows))
        self.register_buffer("row_variable", row_var, persistent=False)
        self.register_buffer("value_valid", valid[row_var], persistent=False)  # (rows, k)
        self.logits = nn.Parameter(torch.zeros(sum(rows), k))

    # ------------------------------------------------------------------ tables
    def log_tables(self) -> Tensor:
        """log p(x_i = v | row) for every table row, shape ``(rows, k)``; impossible values are −inf."""
        return self.logits.masked_fill(~self.value_valid, float("-inf")).log_softmax(-1)

    def table(self, i: int) -> Tensor:
        """Variable i's conditional probability table, shape ``(k_pa1, ..., k_pam, k_i)``."""
        start, n = int(self.row_offset[i]), self.num_rows[i]
        probs = self.log_tables()[start : start + n, : self.cardinalities[i]].exp()
        return probs.reshape(*[self.cardinalities[j] for j in self.parents[i]], self.cardinalities[i])

    @torch.no_grad()
    def set_tables(self, tables: Sequence) -> None:
        """Load conditional probability tables (one per variable, shaped as :meth:`table` returns).

        Each table must be non-negative and sum to one over its last axis.
        """
        if len(tables) != self.num_dims:
            raise ConfigError(f"expected {self.num_dims} tables, got {len(tables)}")
        for i, t in enumerate(tables):
            t = torch.as_tensor(t, dtype=torch.float64)
            shape = (*[self.cardinalities[j] for j in self.parents[i]], self.cardinalities[i])
            if tuple(t.shape) != shape:
                raise ConfigError(f"table {i} has shape {tuple(t.shape)}, expected {shape}")
            if (t < 0).any() or not torch.isfinite(t).all():
                raise ConfigError(f"table {i} has negative or non-finite probabilities")
            sums = t.sum(-1)
            if not torch.allclose(sums, torch.ones_like(sums), atol=1e-6):
                raise ConfigError(
                    f"table {i} does not normalise: rows sum to {sums.min():.6g}..{sums.max():.6g}"
                )
            start = int(self.row_offset[i])
            block = self.logits[start : start + self.num_rows[i]]
            block.zero_()
            block[:, : shape[-1]] = t.reshape(-1, shape[-1]).log().clamp_min(-1e4).to(block.dtype)

    def rows_of(self, x: Tensor) -> Tensor:
        """Index of the table row each variable uses, from its parents' values: shape ``(N, D)``."""
        xe = torch.cat([x, x.new_zeros(len(x), 1)], 1)  # column D: the zero the padding points at
        return self.row_offset + (xe[:, self.parent_index] * self.parent_stride).sum(-1)

    # ------------------------------------------------------------------ contract
    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.validate(x).reshape(len(x), -1).long()
        self.class_labels(context, len(x))  # refuses a context: this model has none
        self._check_cardinalities(x)
        return self._log_prob_flat(x)

    def _log_prob_flat(self, x: Tensor) -> Tensor:
        return self.log_tables()[self.rows_of(x), x].sum(-1)

    def _check_cardinalities(self, x: Tensor) -> None:
        if len(set(self.cardinalities)) > 1 and len(x):
            over = x >= torch.tensor(self.cardinalities, device=x.device)
            if over.any():
                i = int(over.any(0).nonzero()[0])
                raise DataError(
                    f"variable {i} takes values 0..{self.cardinalities[i] - 1}, got {int(x[:, i].max())}"
                )

    @torch.no_grad()
    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        """Ancestral sampling: each variable after its parents, in topological order."""
        n = self.check_num_samples(num_samples)
        self.class_labels(context, n)
        tables = self.log_tables()
        x = torch.zeros(n, self.num_dims + 1, dtype=torch.long, device=self.device)
        for i in self.order:
            row = self.row_offset[i] + (x[:, self.parent_index[i]] * self.parent_stride[i]).sum(-1)
            x[:, i] = draw(Categorical(logits=tables[row]), (), generator)
        return x[:, :-1].float().reshape(n, *self.event_shape)

    def num_parameters(self) -> int:
        """Σ_i (k_i − 1) Π_{j ∈ pa(i)} k_j: one free probability per value but the last, per table row."""
        return sum((self.cardinalities[i] - 1) * r for i, r in enumerate(self.num_rows))

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def fit(self, data, *, initialize: bool = True, generator=None) -> Iterator[dict[str, float]]:
        """Maximum-likelihood tables (smoothed by ``alpha``) from conditional counts, in one pass."""
        x, _ = self.training_arrays(data, generator)
        x = x.reshape(len(x), -1).long()
        self._check_cardinalities(x)
        k = self.support.num_categories
        counts = torch.zeros(self.logits.numel(), dtype=torch.float64, device=x.device)
        for chunk in x.split(4096):
            cells = self.rows_of(chunk) * k + chunk
            counts += torch.bincount(cells.flatten(), minlength=counts.numel())
        counts = counts.reshape(self.logits.shape) + self.alpha
        counts = counts.masked_fill(~self.value_valid, 0)
        totals = counts.sum(-1, keepdim=True)
        # A row never seen with alpha = 0 has no data: leave it uniform rather than 0/0.
        probs = torch.where(
            totals > 0, counts / totals.clamp_min(1e-300), 1.0 / self.value_valid.sum(-1, keepdim=True)
        )
        self.logits.copy_(probs.log().clamp_min(-1e4).to(self.logits.dtype))
        yield {"train_loss": -self._log_prob_flat(x).mean().item()}
