"""Evaluation: the supervised objective, frozen-feature checks (kNN, linear probe), metrics, review, their plots."""

from .features import extract_features, predict  # noqa: F401
from .knn import knn_accuracy, knn_predict  # noqa: F401
from .linear_probe import linear_probe  # noqa: F401
from .metrics import accuracy, confusion_matrix, mean_std, per_class_accuracy  # noqa: F401
from .objective import Classification  # noqa: F401
from .plots import image_grid, plot_confusion, plot_pretext_mistakes  # noqa: F401
from .review import (  # noqa: F401
    least_confident_correct,
    pretext_mistakes,
    top_mistakes,
    worst_classes,
)
