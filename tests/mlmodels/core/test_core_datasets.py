"""The committed data files: checksums, formats and clear errors when damaged."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from mlmodels import datasets
from mlmodels.datasets import CHECKSUMS, DatasetError, load_mnist, load_titanic, verify_all


def test_every_committed_file_matches_its_checksum() -> None:
    for name, digest in verify_all().items():
        assert hashlib.sha256(datasets.dataset_path(name).read_bytes()).hexdigest() == digest


def test_mnist_has_the_original_split_shapes_and_labels() -> None:
    data = load_mnist()

    assert data.train_images.shape == (60000, 28, 28) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (10000, 28, 28)
    assert data.train_labels.shape == (60000,) and data.test_labels.shape == (10000,)
    assert data.train_labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
    assert data.test_labels[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]
    assert np.bincount(data.train_labels).min() > 5000
    assert data.train_images.max() == 255 and data.train_images[:, 0, 0].max() == 0


def test_titanic_has_891_passengers_with_raw_fields() -> None:
    data = load_titanic()

    assert len(data.records) == 891 and data.y.shape == (891,)
    assert int(data.y.sum()) == 342
    assert sum(r["age"] is None for r in data.records) == 177
    assert sum(r["embarked"] is None for r in data.records) == 2
    assert data.records[0]["name"] == "Braund, Mr. Owen Harris"
    assert data.description["sha256"] == CHECKSUMS["titanic.csv.gz"]


@pytest.fixture
def data_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(datasets.DATA_DIR / "titanic.csv.gz", tmp_path / "titanic.csv.gz")
    monkeypatch.setattr(datasets, "DATA_DIR", tmp_path)
    return tmp_path


def test_a_corrupt_file_is_reported_with_its_checksum(data_copy: Path) -> None:
    path = data_copy / "titanic.csv.gz"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")

    with pytest.raises(DatasetError, match="corrupt: sha256"):
        load_titanic()


def test_a_missing_file_is_reported_with_how_to_restore_it(data_copy: Path) -> None:
    with pytest.raises(DatasetError, match="missing"):
        load_mnist()


def test_a_file_with_a_wrong_header_is_rejected(data_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (data_copy / "mnist").mkdir()
    bad = gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05" + bytes(5), mtime=0)
    (data_copy / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(bad)
    checksums = dict(CHECKSUMS, **{"mnist/t10k-labels-idx1-ubyte.gz": hashlib.sha256(bad).hexdigest()})
    monkeypatch.setattr(datasets, "CHECKSUMS", checksums)

    with pytest.raises(DatasetError, match="5 items, expected 10000"):
        datasets._parse_idx("mnist/t10k-labels-idx1-ubyte.gz", 2049, 10000)
