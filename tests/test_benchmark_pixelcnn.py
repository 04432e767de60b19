"""The PixelCNN benchmark's resumable pieces: its budget spans invocations, its step log survives a resume,
and the versioned store keeps a thinned log."""

import math
import statistics

import torch

import dgm
from benchmarks.pixelcnn import LOGGED_POINTS, Budget, StepLog, thin_log


def toy(n=96):
    return torch.randint(0, 2, (n, 6)).float()


def test_a_resumed_run_continues_its_step_log_and_its_budget(tmp_path):
    torch.manual_seed(int(torch.randint(1000, ())))
    data, opts = toy(), dict(method="gradient", batch_size=8, lr=0.05, progress=False, patience=None, seed=3)
    model = dgm.build("independent", event_shape=(6,))
    first = StepLog()
    dgm.train(model, data, out=tmp_path, epochs=2, callbacks=[first], **opts)
    assert first.steps == list(range(1, 25)) and all(math.isfinite(v) for v in first.losses)
    # The resumed invocation starts from the saved log; steps logged past the checkpoint (a run killed
    # after it: here 98, 99) are dropped when the run repeats them.
    again = StepLog([*first.steps[:-3], 98, 99], [*first.losses[:-3], 0.0, 0.0])
    res = dgm.train(model, data, out=tmp_path, resume=True, epochs=4, callbacks=[again], **opts)
    assert res.steps == 48 and again.steps == [*range(1, 22), *range(25, 49)]
    assert again.losses[:21] == first.losses[:21] and 0.0 not in again.losses

    class Trainer:  # what Budget reads
        def __init__(self, elapsed):
            self.elapsed_s, self.options, self.state = elapsed, type("O", (), {"max_steps": None}), None

    budget = Budget(seconds=60.0, eval_s=5.0)
    t = Trainer(54.0)
    t.state = type("S", (), {"step": 7})
    budget(t)
    assert t.options.max_steps is None and not budget.hit
    t.elapsed_s = 55.5  # elapsed over all invocations, less one validation pass
    budget(t)
    assert t.options.max_steps == 7 and budget.hit


def test_the_store_keeps_at_most_a_thousand_block_means():
    n = int(torch.randint(LOGGED_POINTS + 1, 7 * LOGGED_POINTS, ()))
    losses = torch.rand(n).tolist()
    entry = {"log_steps": list(range(1, n + 1)), "log_losses": losses, "nll": 80.0}
    thin = thin_log(entry)
    k = math.ceil(n / LOGGED_POINTS)
    assert len(thin["log_losses"]) <= LOGGED_POINTS and thin["nll"] == 80.0
    assert thin["log_steps"][-1] == n and thin["log_losses"][0] == statistics.fmean(losses[:k])
    short = {"log_steps": [1, 2], "log_losses": [3.0, 4.0]}
    assert thin_log(short) is short
