"""Machine learning from scratch in NumPy: no Django, no torch, no scikit-learn at run time.

Estimators follow scikit-learn's shape (hyperparameters in ``__init__``, ``fit`` returns ``self`` and sets
attributes ending in ``_``). Models are saved to one ``.npz`` without pickle (:func:`save_model`,
:func:`load_model`). Training entry points for commands and tasks live in :mod:`mlmodels.core.training`,
not imported here because it reads the committed data sets through :mod:`mlmodels.datasets`.
"""

from mlmodels.core.augmentation import ImageAugmenter
from mlmodels.core.conv import Conv2D, MaxPool2D
from mlmodels.core.exceptions import (
    ConvergenceWarning,
    DataConversionWarning,
    InvalidFields,
    MLModelsError,
    ModelFormatError,
    NotFittedError,
)
from mlmodels.core.layers import GELU, BatchNorm1D, BatchNorm2D, Dense, Dropout, Flatten, Layer, ReLU, Tanh
from mlmodels.core.linear import LogisticRegression
from mlmodels.core.losses import SoftmaxCrossEntropy
from mlmodels.core.metrics import (
    accuracy_score,
    brier_score_loss,
    calibration_curve,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from mlmodels.core.model_selection import StratifiedKFold, train_test_split_indices
from mlmodels.core.network import Sequential
from mlmodels.core.neural_net import CNNClassifier, MLPClassifier, NeuralNetClassifier
from mlmodels.core.optimizers import SGD, Adam
from mlmodels.core.pipeline import Pipeline
from mlmodels.core.preprocessing import OneHotEncoder, SimpleImputer, StandardScaler
from mlmodels.core.serialization import (
    load_metadata,
    load_model,
    model_from_bytes,
    model_to_bytes,
    save_model,
)
from mlmodels.core.titanic import (
    PassengerPrediction,
    TitanicFeatures,
    make_titanic_model,
    predict_passenger,
    validate_passenger,
)

__all__ = [
    "GELU",
    "SGD",
    "Adam",
    "BatchNorm1D",
    "BatchNorm2D",
    "CNNClassifier",
    "Conv2D",
    "ConvergenceWarning",
    "DataConversionWarning",
    "Dense",
    "Dropout",
    "Flatten",
    "ImageAugmenter",
    "InvalidFields",
    "Layer",
    "LogisticRegression",
    "MLModelsError",
    "MLPClassifier",
    "MaxPool2D",
    "ModelFormatError",
    "NeuralNetClassifier",
    "NotFittedError",
    "OneHotEncoder",
    "PassengerPrediction",
    "Pipeline",
    "ReLU",
    "Sequential",
    "SimpleImputer",
    "SoftmaxCrossEntropy",
    "StandardScaler",
    "StratifiedKFold",
    "Tanh",
    "TitanicFeatures",
    "accuracy_score",
    "brier_score_loss",
    "calibration_curve",
    "confusion_matrix",
    "f1_score",
    "load_metadata",
    "load_model",
    "log_loss",
    "make_titanic_model",
    "model_from_bytes",
    "model_to_bytes",
    "precision_recall_fscore_support",
    "precision_score",
    "predict_passenger",
    "recall_score",
    "roc_auc_score",
    "roc_curve",
    "save_model",
    "train_test_split_indices",
    "validate_passenger",
]
