"""``Learner.fit`` draws its randomness from states of its own: the caller's global random state is left as it was."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from transferlab.engine.inputs import TensorInputs
from transferlab.engine.learner import Learner
from transferlab.engine.runtime import Runtime


def dropout_fit(epochs: int = 3, seed: int = 0) -> nn.Module:
    """A dropout MLP trained by ``fit`` (dropout draws from torch's global generator)."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(48) % 3
    x = torch.randn(48, 8, generator=generator) + nn.functional.one_hot(y, 8).float() * 3
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    Learner(model, Runtime(), nn.CrossEntropyLoss(), lambda m, stage: torch.optim.SGD(m.parameters(), lr=0.1),
            TensorInputs(x, y), batch_size=16, seed=seed).fit(epochs)
    return model


def test_fit_leaves_the_callers_torch_and_numpy_random_state_alone():
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()

    dropout_fit()

    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]


def test_fit_gives_the_same_model_whatever_the_callers_random_state():
    torch.manual_seed(1)
    first = dropout_fit()
    torch.manual_seed(2)
    torch.rand(100)
    second = dropout_fit()

    for a, b in zip(first.parameters(), second.parameters()):
        assert torch.equal(a, b)


def test_fit_seeds_dropout_from_its_own_seed():
    a, b = dropout_fit(seed=0), dropout_fit(seed=1)

    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
