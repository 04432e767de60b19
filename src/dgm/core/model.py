"""The one interface every model answers (DESIGN.md §1)."""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import json
import math
import operator
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dgm.core.errors import ConfigError, DataError
from dgm.core.support import Support, check_input


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list | torch.Size):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def _empty_batch_log_prob(log_prob):
    """``log_prob`` that answers a batch of zero examples (still checked for shape and support) with an
    empty ``(0,)`` tensor."""

    @functools.wraps(log_prob)
    def guarded(self, x, *args, **kwargs):
        if isinstance(x, Tensor) and x.device.type != self.device.type and self.device.type != "meta":
            # e.g. a model that dgm.train left on the GPU, scored on CPU data: torch's own error names
            # neither the input nor the fix, from deep inside the first layer
            raise DataError(
                f"input is on {x.device} but the model is on {self.device}; move one of them "
                f"(x.to(model.device) or model.to({str(x.device)!r}))"
            )
        if isinstance(x, Tensor) and x.dim() >= 1 and x.shape[0] == 0:
            self.validate(x)
            return torch.zeros(0, dtype=self._float_dtype(), device=self.device)
        return log_prob(self, x, *args, **kwargs)

    return guarded


def _no_samples(sample):
    """``sample`` that answers ``num_samples = 0`` with an empty ``(0, *event_shape)`` tensor."""

    @functools.wraps(sample)
    def guarded(self, num_samples, *args, **kwargs):
        n = self.check_num_samples(num_samples)
        generator = kwargs.get("generator", args[1] if len(args) > 1 else None)
        if isinstance(generator, torch.Generator) and generator.device.type != self.device.type:
            # torch's own message names neither the model nor the fix, and comes from deep inside a sampler.
            raise ConfigError(
                f"{type(self).name or type(self).__name__}: the generator is on {generator.device.type} but "
                f"the model is on {self.device}; pass torch.Generator(device=model.device)"
            )
        if n == 0:
            return torch.zeros(0, *self.event_shape, device=self.device)
        return sample(self, n, *args, **kwargs)

    return guarded


class GenerativeModel(nn.Module):
    """Base class of every `dgm` model.

    Subclasses implement :meth:`log_prob` (nats per example) and :meth:`sample`; :meth:`loss` defaults to
    the mean negative log-likelihood. The constructor's arguments are recorded automatically, so
    ``dgm.build(model.config)`` rebuilds the same architecture: keep them JSON-serialisable.

    Class attributes:
        name:  the registry name (set by :func:`dgm.register`).
        exact: True where ``log_prob`` is exact; False where it is an estimate or a bound.
        legacy_options: options whose default changed after checkpoints were written without them,
            mapped to the value those checkpoints were built with (applied by ``dgm.load`` and resumes
            to a stored config that lacks the key).
    """

    name: ClassVar[str] = ""
    exact: ClassVar[bool] = True
    legacy_options: ClassVar[dict] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Empty batches are answered here, once, so that no model's own code meets a zero-length batch.
        if "log_prob" in cls.__dict__:
            cls.log_prob = _empty_batch_log_prob(cls.__dict__["log_prob"])
        if "sample" in cls.__dict__ and not getattr(cls, "discriminative", False):
            cls.sample = _no_samples(cls.__dict__["sample"])
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            init(self, *args, **kw)
            # Wrappers finish innermost first, so the outermost (the class actually built) writes last.
            bound = signature.bind(self, *args, **kw)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(signature.parameters)))  # self
            for p in signature.parameters.values():
                if p.kind is p.VAR_KEYWORD:
                    arguments.update(arguments.pop(p.name))
                elif p.kind is p.VAR_POSITIONAL:
                    arguments.pop(p.name)
            self._config = {"model": type(self).name or type(self).__name__.lower(), **_jsonable(arguments)}

        cls.__init__ = recording_init

    def __init__(self, event_shape, support: str = "real"):
        super().__init__()
        if isinstance(event_shape, int):
            event_shape = (event_shape,)
        try:
            self.event_shape = tuple(int(d) for d in event_shape)
        except (TypeError, ValueError):
            raise ConfigError(f"event_shape must be a tuple of ints, got {event_shape!r}") from None
        if not self.event_shape or any(d <= 0 for d in self.event_shape):
            raise ConfigError(f"event_shape must be non-empty with positive sizes, got {self.event_shape}")
        self.support = Support.parse(support)

    # ------------------------------------------------------------------ contract
    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Log-likelihood of each example in nats, shape ``(N,)``."""
        raise NotImplementedError

    def sample(
        self, num_samples: int, context: Tensor | None = None, generator: torch.Generator | None = None
    ):
        """Draw ``num_samples`` examples, shape ``(num_samples, *event_shape)``."""
        raise NotImplementedError

    def loss(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Training objective in nats per example (mean NLL unless a subclass says otherwise)."""
        return -self.log_prob(x, context).mean()

    def loss_and_metrics(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float | Tensor]]:
        """The loss plus any extra per-batch figures worth logging (e.g. a VAE's KL and reconstruction), as
        floats or 0-dim tensors (which the trainer reads back from the device with the loss, in one go)."""
        return self.loss(x, context), {}

    @property
    def config(self) -> dict:
        cfg = copy.deepcopy(self._config)
        try:
            json.dumps(cfg)
        except TypeError as e:
            raise ConfigError(f"{cfg['model']}: config is not JSON-serialisable ({e})") from None
        return cfg

    # ------------------------------------------------------------------ helpers
    @property
    def num_dims(self) -> int:
        """D, the number of values in one example (bits/dim divides by it)."""
        return math.prod(self.event_shape)

    @property
    def conditional(self) -> bool:
        """Whether the model takes a ``context`` (class index or conditioning tensor)."""
        return False

    @property
    def device(self) -> torch.device:
        # Lazily: the first tensor found, not a tuple of all of them (this runs on every batch).
        t = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if t is None else t.device

    def num_parameters(self) -> int:
        """Number of free parameters (subclasses override where parameterisation has redundancy)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def validate(self, x, what: str = "input") -> Tensor:
        """Check a batch against ``event_shape`` and ``support``; a clear DataError otherwise."""
        return check_input(x, self.event_shape, self.support, what).to(self.device)

    def training_arrays(self, data, generator=None) -> tuple[Tensor, Tensor | None]:
        """(x, y) for a closed-form or EM ``fit``: from a Dataset, an (x, y) pair or a tensor of x.

        A dataset's random transform (dynamic binarisation) is drawn once with ``generator``; x is
        validated against the model's event shape and support.
        """
        if isinstance(data, tuple) and len(data) == 2:
            x, y = data
        else:
            x, y = getattr(data, "x", data), getattr(data, "y", None)
        if getattr(data, "transform", None) is not None:
            x = data.transform(x, generator)
        return self.validate(x, "training data"), y

    def check_classes(self, context, num_classes: int, batch_size: int | None = None) -> Tensor:
        """Validate a class-label context: integer-valued, in 0..num_classes-1, one per example.

        Accepts an int (broadcast to ``batch_size``) or a tensor of shape ``(N,)``; returns a long tensor
        on the model's device, or raises a one-line DataError naming what is wrong.
        """
        if isinstance(context, bool):
            raise DataError(f"class context must be an int or a tensor of labels, got {context!r}")
        if isinstance(context, int):
            if batch_size is None:
                raise DataError("an int class context needs a batch size; pass a tensor of labels")
            context = torch.full((batch_size,), context)
        if not isinstance(context, Tensor):
            raise DataError(f"class context must be a torch.Tensor of labels, got {type(context).__name__}")
        if context.dim() != 1:
            raise DataError(f"class context must have shape (N,), got {tuple(context.shape)}")
        if batch_size is not None and len(context) != batch_size:
            raise DataError(f"class context has {len(context)} labels for a batch of {batch_size}")
        if context.dtype == torch.bool or context.is_complex():
            raise DataError(f"class context must hold integer labels, got dtype {context.dtype}")
        # One read back for the valid case (on a GPU every read waits for the queue); the error's details
        # are worked out only once something is wrong.
        bad = (context < 0) | (context >= num_classes)
        if context.is_floating_point():
            bad = bad | ~torch.isfinite(context) | (context != context.round())
        if len(context) and bool(bad.any()):
            if context.is_floating_point() and not torch.isfinite(context).all():
                raise DataError("class context contains NaN or inf")
            if context.is_floating_point() and (context != context.round()).any():
                raise DataError("class context has non-integer labels")
            raise DataError(
                f"class context out of range: labels must be in 0..{num_classes - 1}, "
                f"got {int(context.min())}..{int(context.max())}"
            )
        return context.long().to(self.device)

    def class_labels(self, context, batch_size: int) -> Tensor | None:
        """The validated labels of an optionally class-conditional model (``self.num_classes`` set or None).

        None for an unconditional model, which refuses a context rather than ignoring it; a conditional
        model needs one. Errors are one-line DataErrors (see :meth:`check_classes`).
        """
        num_classes = getattr(self, "num_classes", None)
        if num_classes is None:
            if context is not None:
                raise DataError(f"{self.name} was built without num_classes: it takes no context")
            return None
        if context is None:
            raise DataError(
                f"{self.name} is class-conditional (num_classes={num_classes}): pass context=labels"
            )
        return self.check_classes(context, num_classes, batch_size)

    def check_num_samples(self, num_samples) -> int:
        """``num_samples`` as an int ≥ 0 (NumPy and 0-d tensor integers accepted); a DataError otherwise."""
        try:
            n = operator.index(num_samples) if not isinstance(num_samples, bool) else None
        except TypeError:
            n = None
        if n is None or n < 0:
            raise DataError(f"num_samples must be a non-negative integer, got {num_samples!r}")
        return n

    def _float_dtype(self) -> torch.dtype:
        return next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.get_default_dtype())

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, support={self.support}"
