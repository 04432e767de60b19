import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical

import dgm
from dgm.training.precision import autocast


def test_bf16_products_with_fp32_reductions():
    """Inside autocast("cpu", "bf16") products come out in bf16, but a categorical log-likelihood built
    on them (logsumexp, log_softmax, sum) is computed in fp32: equal to the fp32 computation on the same
    bf16 logits, where plain torch.autocast would round it to bf16."""
    x, w = torch.randn(64, 32), torch.randn(32, 50)
    y = torch.randint(50, (64,))
    with autocast("cpu", "bf16"):
        logits = x @ w
        ll = Categorical(logits=logits).log_prob(y).sum()
        lse, lsm, mean = logits.logsumexp(-1), F.log_softmax(logits, -1), logits.mean()
        explicit = logits.sum(dtype=torch.bfloat16)  # an explicit dtype is kept
    assert logits.dtype == torch.bfloat16
    assert ll.dtype == lse.dtype == lsm.dtype == mean.dtype == torch.float32
    assert explicit.dtype == torch.bfloat16
    exact = Categorical(logits=logits.float()).log_prob(y).sum()
    torch.testing.assert_close(ll, exact, rtol=1e-6, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what the fp32 upcasts are for
        rounded = Categorical(logits=x @ w).log_prob(y).sum()
    assert rounded.dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert (x @ w).dtype == torch.float32
    with pytest.raises(ValueError, match="precision"), autocast("cpu", "fp16"):
        pass


def test_bf16_loss_of_a_categorical_model_is_fp32_and_close():
    torch.manual_seed(int(torch.randint(1000, ())))
    model = dgm.build("made", event_shape=(20,), support="categorical(5)", hidden_sizes=[64])
    x = torch.randint(5, (50, 20))
    exact = model.loss(x)
    with autocast("cpu", "bf16"):
        loss = model.loss(x)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - exact.item()) < 1e-2 * abs(exact.item())
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())
