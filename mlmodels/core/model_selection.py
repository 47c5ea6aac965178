"""Data splits: stratified K-fold and a stratified hold-out split, seeded through ``default_rng``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mlmodels.core.base import Component


class StratifiedKFold(Component):
    """K folds whose class proportions match the whole set's (each class is dealt round-robin).

    With ``shuffle=True`` the order inside each class is permuted by ``default_rng(random_state)``
    before dealing, so the same seed always gives the same folds.
    """

    def __init__(self, n_splits: int = 5, *, shuffle: bool = True, random_state: int | None = None) -> None:
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def split(self, X: Any, y: ArrayLike) -> Iterator[tuple[NDArray[np.intp], NDArray[np.intp]]]:
        labels = np.asarray(y)
        n = labels.shape[0]
        if self.n_splits < 2:
            raise ValueError("n_splits must be at least 2")
        if X is not None and len(X) != n:
            raise ValueError(f"X has {len(X)} rows but y has {n}")
        classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if counts.max() < self.n_splits:
            raise ValueError(f"n_splits={self.n_splits} is more than the members of every class")
        rng = np.random.default_rng(self.random_state)
        fold_of = np.empty(n, dtype=np.intp)
        offset = 0
        for k in range(classes.shape[0]):
            members = np.flatnonzero(codes == k)
            if self.shuffle:
                members = rng.permutation(members)
            # Continue dealing where the previous class stopped so fold sizes differ by at most one.
            fold_of[members] = (offset + np.arange(members.shape[0])) % self.n_splits
            offset += members.shape[0]
        for fold in range(self.n_splits):
            test = np.flatnonzero(fold_of == fold)
            train = np.flatnonzero(fold_of != fold)
            yield train, test

    def get_n_splits(self) -> int:
        return self.n_splits


def train_test_split_indices(
    y: ArrayLike, *, test_size: float | int, random_state: int | None = None, stratify: bool = True
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Indices of a (stratified) random split; ``test_size`` is a fraction or a count."""
    labels = np.asarray(y)
    n = labels.shape[0]
    n_test = round(test_size * n) if isinstance(test_size, float) else int(test_size)
    if not 0 < n_test < n:
        raise ValueError(f"test_size gives {n_test} test rows out of {n}")
    rng = np.random.default_rng(random_state)
    if not stratify:
        order = rng.permutation(n)
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    # Largest-remainder allocation keeps every class's share and the exact total.
    exact = counts * n_test / n
    per_class = np.floor(exact).astype(np.intp)
    shortfall = n_test - int(per_class.sum())
    per_class[np.argsort(-(exact - per_class), kind="stable")[:shortfall]] += 1
    test_parts = []
    for k in range(classes.shape[0]):
        members = rng.permutation(np.flatnonzero(codes == k))
        test_parts.append(members[: per_class[k]])
    test = np.sort(np.concatenate(test_parts))
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test
