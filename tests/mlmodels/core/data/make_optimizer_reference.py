"""Writes optimizer_reference.json: PyTorch's SGD and Adam/AdamW on fixed random starts and gradients.

tests/mlmodels/core/test_core_neural_net.py checks the NumPy optimizers against these trajectories' end points.
Run it where torch is installed (the optional `scripts/install_python_deps.sh --torch`):
    python tests/mlmodels/core/data/make_optimizer_reference.py
"""

import json
from pathlib import Path

import numpy as np
import torch

ADAM_SIZE = 70_000  # more than one update chunk of the NumPy Adam
# Adam's end point is kept at these indices: both ends and around every 2**k boundary up to the size
ADAM_INDICES = sorted(
    {i for k in range(17) for i in (2**k - 1, 2**k, 2**k + 1) if i < ADAM_SIZE}
    | set(range(0, ADAM_SIZE, 997))
    | {ADAM_SIZE - 2, ADAM_SIZE - 1}
)


def sgd(nesterov: bool) -> list[float]:
    rng = np.random.default_rng(4)
    start = rng.standard_normal(6).astype(np.float32)
    grads = [rng.standard_normal(6).astype(np.float32) for _ in range(4)]
    w, b = torch.nn.Parameter(torch.tensor(start[:4])), torch.nn.Parameter(torch.tensor(start[4:]))
    optimizer = torch.optim.SGD(
        [{"params": [w], "weight_decay": 0.01}, {"params": [b], "weight_decay": 0.0}],
        lr=0.1,
        momentum=0.9,
        nesterov=nesterov,
    )
    for grad in grads:
        w.grad, b.grad = torch.tensor(grad[:4]), torch.tensor(grad[4:])
        optimizer.step()
    return [float(x) for x in np.concatenate([w.detach().numpy(), b.detach().numpy()])]


def adam(decoupled: bool) -> list[float]:
    rng = np.random.default_rng(5)
    start = rng.standard_normal(ADAM_SIZE).astype(np.float32)
    grads = [rng.standard_normal(ADAM_SIZE).astype(np.float32) for _ in range(3)]
    parameter = torch.nn.Parameter(torch.tensor(start))
    optimizer = (torch.optim.AdamW if decoupled else torch.optim.Adam)(
        [parameter], lr=0.01, weight_decay=0.05
    )
    for grad in grads:
        parameter.grad = torch.tensor(grad)
        optimizer.step()
    end = parameter.detach().numpy()
    return [float(end[i]) for i in ADAM_INDICES]


reference = {
    "made_by": f"torch {torch.__version__}",
    "sgd": {"plain": sgd(False), "nesterov": sgd(True)},
    "adam_indices": ADAM_INDICES,
    "adam": {"coupled": adam(False), "decoupled": adam(True)},
}
target = Path(__file__).with_name("optimizer_reference.json")
target.write_text(json.dumps(reference) + "\n", encoding="utf-8")
print(f"written {target} with torch {torch.__version__}")
