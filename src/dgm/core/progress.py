"""Progress of the long sequential loops inside models, shown only where a caller asks for it.

Ancestral sampling runs one step per position: 784 network passes for a PixelCNN sample of MNIST, minutes
on a CPU. Models mark such loops with :func:`steps`; inside :func:`shown` (the CLI's ``dgm sample`` and
the samples ``dgm train`` draws) each marked loop counts its steps on a progress bar on the terminal.
Elsewhere :func:`steps` is a plain ``range`` and costs nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator

_SHOWN: contextvars.ContextVar[str | None] = contextvars.ContextVar("dgm_progress", default=None)


@contextlib.contextmanager
def shown(what: str = "sampling") -> Iterator[None]:
    """Inside this block, the loops models mark with :func:`steps` show a bar titled ``what``."""
    token = _SHOWN.set(what)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def steps(n: int | Iterable, unit: str = "step") -> Iterable:
    """``range(n)`` (or the iterable ``n``), counted on a bar inside :func:`shown` (on a terminal only)."""
    items = range(n) if isinstance(n, int) else n
    title = _SHOWN.get()
    if title is None:
        return items
    from tqdm.auto import tqdm

    # Nested marked loops (a MAF's layers, each sampled position by position) show one bar each in turn.
    return tqdm(items, desc=title, unit=unit, leave=False, disable=None, dynamic_ncols=True)
