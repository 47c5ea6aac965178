"""NumPy core against its references, measured in the same run on the same data.

* MLP epoch time: ``MLPClassifier`` against the same network, batch size and optimizer in PyTorch (CPU).
* CNN epoch time: ``CNNClassifier`` against the same network in PyTorch.
* Logistic regression fit time on the Titanic features: ours against scikit-learn's ``lbfgs``.
* L1 / elastic-net optimum at default settings: objective of ours (default solver, and FISTA) relative to
  scikit-learn's ``saga`` at ``tol=1e-10`` on unscaled, ill-conditioned data and on the Titanic features.

PyTorch runs with ``torch.set_num_threads`` equal to NumPy's BLAS thread count. Epochs of the two
frameworks alternate, so load from other processes on a shared machine hits both alike; the figure
reported for each is the median over rounds. Ratios > 1 mean the NumPy core is slower.

    python benchmarks/mlmodels.py                 # everything, full MNIST epochs (several minutes)
    python benchmarks/mlmodels.py --quick         # 10,000-image epochs, fewer rounds
    python benchmarks/mlmodels.py --only logreg --json results.json
    python benchmarks/mlmodels.py --threads 1      # one core each, e.g. when the machine is shared
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlmodels.core.linear import LogisticRegression
from mlmodels.core.model_selection import StratifiedKFold
from mlmodels.core.neural_net import CNNClassifier, MLPClassifier
from mlmodels.core.preprocessing import StandardScaler
from mlmodels.core.titanic import TitanicFeatures
from mlmodels.datasets import load_mnist, load_titanic

MLP_HIDDEN = (1024, 1024)
MLP_DROPOUT = 0.2
CNN_CHANNELS = (32, 64)
CNN_DENSE = 128
CNN_DROPOUT = 0.25
BATCH = 128
MLP_LR = 1e-3
CNN_LR = 2e-3


def blas_threads() -> int:
    try:
        from threadpoolctl import threadpool_info

        counts = [info["num_threads"] for info in threadpool_info() if info.get("user_api") == "blas"]
        if counts:
            return int(max(counts))
    except ImportError:
        pass
    return os.cpu_count() or 1


def blas_kernel() -> str:
    """The BLAS library NumPy runs with and the CPU kernel it chose, e.g. "openblas 0.3.31 (SkylakeX)"."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl is not installed)"
    found = [
        f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture') or 'kernel not reported'})"
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]
    return ", ".join(found) or "none found"


class BackgroundMeter:
    """Share of the machine's CPU time used by *other* processes while a block ran (Linux only).

    Busy time comes from /proc/stat, this process's own CPU time is subtracted; 0.0 means the cores
    were ours alone, 0.5 means half of all core-seconds went to someone else.
    """

    def __enter__(self) -> BackgroundMeter:
        self.busy, self.own, self.wall = _busy_seconds(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall
        busy, own = _busy_seconds(), time.process_time() - self.own
        cpus = os.cpu_count() or 1
        self.share = (
            float("nan")
            if busy is None or self.busy is None
            else max(0.0, (busy - self.busy) - own) / (wall * cpus)
        )


def _busy_seconds() -> float | None:
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def load_load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# ----------------------------------------------------------------------------------------- MNIST
def mnist_arrays(n_train: int) -> tuple[np.ndarray, ...]:
    data = load_mnist()
    X = data.train_images[:n_train].reshape(n_train, 784).astype(np.float32) / 255.0
    y = data.train_labels[:n_train].astype(np.int64)
    X_test = data.test_images.reshape(-1, 784).astype(np.float32) / 255.0
    return X, y, X_test, data.test_labels.astype(np.int64)


def numpy_model(kind: str, seed: int) -> Any:
    common = {
        "batch_size": BATCH,
        "max_epochs": 1,
        "lr_schedule": "constant",
        "early_stopping": False,
        "random_state": seed,
    }
    if kind == "mlp":
        return MLPClassifier(MLP_HIDDEN, dropout=MLP_DROPOUT, learning_rate=MLP_LR, **common)
    return CNNClassifier(
        CNN_CHANNELS,
        kernel_size=3,
        dense_units=(CNN_DENSE,),
        dropout=CNN_DROPOUT,
        learning_rate=CNN_LR,
        input_shape=(28, 28, 1),
        **common,
    )


def torch_model(torch: Any, kind: str) -> Any:
    nn = torch.nn
    if kind == "mlp":
        layers: list[Any] = []
        width = 784
        for units in MLP_HIDDEN:
            layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(MLP_DROPOUT)]
            width = units
        return nn.Sequential(*layers, nn.Linear(width, 10))
    first, second = CNN_CHANNELS
    return nn.Sequential(
        nn.Conv2d(1, first, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(first),
        nn.ReLU(),
        nn.Conv2d(first, second, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(second),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(second * 49, CNN_DENSE),
        nn.ReLU(),
        nn.Dropout(CNN_DROPOUT),
        nn.Linear(CNN_DENSE, 10),
    )


def torch_epoch(torch: Any, model: Any, optimizer: Any, data: tuple[Any, Any], generator: Any) -> float:
    X, y = data
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    started = time.perf_counter()
    order = torch.randperm(X.shape[0], generator=generator)
    # Inputs are normalized per batch, as the NumPy estimator does with its learned mean and std.
    mean, std = float(X.mean()), float(X.std())
    for start in range(0, X.shape[0], BATCH):
        index = order[start : start + BATCH]
        batch = (X[index] - mean) / std
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch), y[index])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def torch_accuracy(torch: Any, model: Any, data: tuple[Any, Any], mean: float, std: float) -> float:
    X, y = data
    model.eval()
    with torch.no_grad():
        predicted = torch.cat(
            [model((X[s : s + 1000] - mean) / std).argmax(1) for s in range(0, X.shape[0], 1000)]
        )
    return float((predicted == y).float().mean())


def bench_network(kind: str, *, n_train: int, rounds: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    X, y, X_test, y_test = mnist_arrays(n_train)
    shape = (-1, 1, 28, 28) if kind == "cnn" else (-1, 784)
    tX, ty = torch.from_numpy(X).reshape(shape), torch.from_numpy(y)
    tX_test, ty_test = torch.from_numpy(X_test).reshape(shape), torch.from_numpy(y_test)
    numpy_times, torch_times, numpy_acc, torch_acc, background = [], [], [], [], []
    for round_index in range(rounds):
        # NumPy: one real training epoch of the estimator (no validation pass inside the timing).
        with BackgroundMeter() as numpy_meter:
            model = numpy_model(kind, seed=round_index).fit(X, y)
        numpy_times.append(model.history_[0]["seconds"])
        numpy_acc.append(float(np.mean(model.predict(X_test) == y_test)))

        torch.manual_seed(round_index)
        net = torch_model(torch, kind)
        optimizer = torch.optim.Adam(net.parameters(), lr=MLP_LR if kind == "mlp" else CNN_LR)
        generator = torch.Generator().manual_seed(round_index)
        with BackgroundMeter() as torch_meter:
            torch_times.append(torch_epoch(torch, net, optimizer, (tX, ty), generator))
        background.append((numpy_meter.share, torch_meter.share))
        torch_acc.append(torch_accuracy(torch, net, (tX_test, ty_test), float(tX.mean()), float(tX.std())))
        print(
            f"  {kind} round {round_index + 1}/{rounds}: numpy {numpy_times[-1]:.2f} s "
            f"(test acc {numpy_acc[-1]:.4f}), torch {torch_times[-1]:.2f} s (test acc {torch_acc[-1]:.4f}); "
            f"CPU taken by other processes: {background[-1][0]:.0%} / {background[-1][1]:.0%}",
            flush=True,
        )
    numpy_median, torch_median = statistics.median(numpy_times), statistics.median(torch_times)
    return {
        "ratio_of_fastest": min(numpy_times) / min(torch_times),
        "background_cpu_share": background,
        "images_per_epoch": n_train,
        "batch_size": BATCH,
        "optimizer": "adam",
        "numpy_epoch_seconds": numpy_median,
        "torch_epoch_seconds": torch_median,
        "ratio": numpy_median / torch_median,
        "numpy_test_accuracy_after_1_epoch": statistics.median(numpy_acc),
        "torch_test_accuracy_after_1_epoch": statistics.median(torch_acc),
        "numpy_epoch_seconds_all": numpy_times,
        "torch_epoch_seconds_all": torch_times,
    }


# --------------------------------------------------------------------------------------- Titanic
def titanic_matrix() -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]], list[Any]]:
    data = load_titanic()
    folds = list(StratifiedKFold(5, random_state=0).split(data.records, data.y))
    fold_data = []
    for train, test in folds:
        features = TitanicFeatures().fit([data.records[i] for i in train])
        scaler = StandardScaler().fit(features.transform([data.records[i] for i in train]))
        fold_data.append(
            (
                scaler.transform(features.transform([data.records[i] for i in train])),
                data.y[train],
                scaler.transform(features.transform([data.records[i] for i in test])),
                data.y[test],
            )
        )
    features = TitanicFeatures().fit(data.records)
    X = StandardScaler().fit_transform(features.transform(data.records))
    return X, data.y, folds, fold_data


def median_fit_seconds(make: Any, X: np.ndarray, y: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        model = make()
        started = time.perf_counter()
        model.fit(X, y)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_logreg(*, repeats: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

    X, y, _, fold_data = titanic_matrix()
    # Both libraries stop on max|gradient| of the objective divided by C * n; ours defaults to a 100x
    # tighter tol than scikit-learn's 1e-4, so L-BFGS is also timed at scikit-learn's tolerance.
    makers = {
        "numpy_auto": lambda: LogisticRegression(C=1.0),
        "numpy_lbfgs": lambda: LogisticRegression(C=1.0, solver="lbfgs"),
        "numpy_lbfgs_tol4": lambda: LogisticRegression(C=1.0, solver="lbfgs", tol=1e-4),
        "sklearn_lbfgs": lambda: SklearnLogisticRegression(C=1.0, solver="lbfgs"),
    }
    result: dict[str, Any] = {"n_samples": int(X.shape[0]), "n_features": int(X.shape[1])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for make in makers.values():
            make().fit(X, y)  # warm-up (imports, caches)
        # Interleave the contestants so background load is shared.
        samples: dict[str, list[float]] = {name: [] for name in makers}
        for _ in range(5):
            for name, make in makers.items():
                samples[name].append(median_fit_seconds(make, X, y, max(repeats // 5, 1)))
        for name, make in makers.items():
            result[f"{name}_fit_seconds"] = statistics.median(samples[name])
            accuracies = [
                float(np.mean(make().fit(Xtr, ytr).predict(Xte) == yte)) for Xtr, ytr, Xte, yte in fold_data
            ]
            result[f"{name}_cv_accuracy"] = float(np.mean(accuracies))
        fitted = {name: make().fit(X, y) for name, make in makers.items()}
    reference = fitted["sklearn_lbfgs"]
    for name in ("numpy_auto", "numpy_lbfgs", "numpy_lbfgs_tol4"):
        result[f"{name}_iterations"] = fitted[name].n_iter_
        result[f"{name}_max_abs_coef_difference"] = float(
            np.max(np.abs(fitted[name].coef_ - reference.coef_))
        )
        result[f"ratio_{name.removeprefix('numpy_')}"] = (
            result[f"{name}_fit_seconds"] / result["sklearn_lbfgs_fit_seconds"]
        )
    result["sklearn_lbfgs_iterations"] = int(reference.n_iter_[0])
    result["numpy_auto_solver"] = fitted["numpy_auto"].solver_
    return result


def bench_l1() -> list[dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

    # The tests' data and scikit-learn's objective, so that the figures here are the tests' own case.
    from tests.mlmodels.core.test_core_linear import ill_conditioned_data, sklearn_objective

    titanic, titanic_y, _, _ = titanic_matrix()
    ill, ill_y = ill_conditioned_data()
    cases = [
        ("ill-conditioned 300 x 6", ill, ill_y, "l1", 1.0, 1.0),
        ("ill-conditioned 300 x 6", ill, ill_y, "elasticnet", 0.5, 1.0),
        ("Titanic 891 x 40 (standardized, collinear one-hot groups)", titanic, titanic_y, "l1", 1.0, 0.5),
        ("Titanic 891 x 40 (standardized, collinear one-hot groups)", titanic, titanic_y, "l1", 1.0, 5.0),
    ]
    rows = []
    for name, X, y, penalty, l1_ratio, C in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            started = time.perf_counter()
            saga = SklearnLogisticRegression(
                l1_ratio=l1_ratio, C=C, solver="saga", tol=1e-10, max_iter=100_000
            ).fit(X, y)
            saga_seconds = time.perf_counter() - started
            started = time.perf_counter()
            ours = LogisticRegression(penalty=penalty, l1_ratio=l1_ratio, C=C).fit(X, y)  # type: ignore[arg-type]
            ours_seconds = time.perf_counter() - started
            fista = LogisticRegression(penalty=penalty, l1_ratio=l1_ratio, C=C, solver="fista").fit(X, y)  # type: ignore[arg-type]
        reference = sklearn_objective(saga, X, y, C=C, l1_ratio=l1_ratio)
        rows.append(
            {
                "data": name,
                "penalty": penalty,
                "C": C,
                "saga_epochs": int(saga.n_iter_[0]),
                "saga_seconds": saga_seconds,
                "saga_objective": reference,
                "default_solver": ours.solver_,
                "default_iterations": ours.n_iter_,
                "default_seconds": ours_seconds,
                "default_gap": (sklearn_objective(ours, X, y, C=C, l1_ratio=l1_ratio) - reference)
                / reference,
                "fista_iterations": fista.n_iter_,
                "fista_gap": (sklearn_objective(fista, X, y, C=C, l1_ratio=l1_ratio) - reference) / reference,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", default="logreg,l1,mlp,cnn", help="comma-separated subset of logreg,l1,mlp,cnn"
    )
    parser.add_argument("--quick", action="store_true", help="10,000-image epochs and fewer rounds")
    parser.add_argument("--rounds", type=int, default=None, help="epochs per framework (default 3, quick 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--threads", type=int, default=None, help="limit NumPy's BLAS (and so PyTorch) to this many threads"
    )
    args = parser.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads, user_api="blas")
    wanted = {part.strip() for part in args.only.split(",") if part.strip()}
    threads = blas_threads()
    n_train = 10000 if args.quick else 55000
    rounds = args.rounds or (2 if args.quick else 3)
    kernel = blas_kernel()
    print(
        f"NumPy {np.__version__}, BLAS {kernel}, BLAS threads {threads}, cpu count {os.cpu_count()}, "
        f"load {load_load()}"
    )
    results: dict[str, Any] = {"threads": threads, "numpy": np.__version__, "blas": kernel}

    if "logreg" in wanted:
        r = bench_logreg(repeats=100 if not args.quick else 25)
        print(f"logistic regression on Titanic features ({r['n_samples']} x {r['n_features']}, C=1, L2)")
        results["logreg"] = r
        rows = [
            (f"numpy auto ({r['numpy_auto_solver']}, tol 1e-6)", "numpy_auto", "auto"),
            ("numpy lbfgs (tol 1e-6)", "numpy_lbfgs", "lbfgs"),
            ("numpy lbfgs (tol 1e-4)", "numpy_lbfgs_tol4", "lbfgs_tol4"),
        ]
        print(
            f"  sklearn lbfgs (tol 1e-4): {r['sklearn_lbfgs_fit_seconds'] * 1e3:.2f} ms, "
            f"{r['sklearn_lbfgs_iterations']} iterations, 5-fold accuracy {r['sklearn_lbfgs_cv_accuracy']:.4f}"
        )
        for label, key, ratio in rows:
            print(
                f"  {label}: {r[key + '_fit_seconds'] * 1e3:.2f} ms, {r[key + '_iterations']} iterations, "
                f"5-fold accuracy {r[key + '_cv_accuracy']:.4f}, max |coef - sklearn| "
                f"{r[key + '_max_abs_coef_difference']:.1e}, ratio {r['ratio_' + ratio]:.2f}x (target <= 2x)"
            )

    if "l1" in wanted:
        print(
            "L1 / elastic net at default settings: relative objective gap to saga (tol 1e-10, max 100,000 epochs)"
        )
        results["l1"] = bench_l1()
        for row in results["l1"]:
            print(
                f"  {row['data']}, {row['penalty']}, C={row['C']:g}: saga {row['saga_epochs']} epochs "
                f"{row['saga_seconds'] * 1e3:.0f} ms; default ({row['default_solver']}) {row['default_iterations']} "
                f"iterations {row['default_seconds'] * 1e3:.1f} ms, gap {row['default_gap']:+.1e} (target |gap| <= 1e-4); "
                f"fista {row['fista_iterations']} iterations, gap {row['fista_gap']:+.1e}"
            )

    for kind, target in (("mlp", 1.5), ("cnn", 1.25)):
        if kind not in wanted:
            continue
        print(f"{kind.upper()} epoch, {n_train} images, batch {BATCH}, Adam, {threads} threads each")
        r = bench_network(kind, n_train=n_train, rounds=rounds, threads=threads)
        results[kind] = r
        print(
            f"  median epoch: numpy {r['numpy_epoch_seconds']:.2f} s, torch {r['torch_epoch_seconds']:.2f} s, "
            f"ratio {r['ratio']:.2f}x (fastest epochs {r['ratio_of_fastest']:.2f}x; target <= {target}x); "
            "test accuracy after one epoch: "
            f"numpy {r['numpy_test_accuracy_after_1_epoch']:.4f}, torch {r['torch_test_accuracy_after_1_epoch']:.4f}"
        )
    results["load_after"] = load_load()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
