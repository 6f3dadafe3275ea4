"""Model registry and families. ``build_model(name, **kwargs)`` is the one way in.

Importing this package registers every family (classifiers and segmenters).
"""

from visiontune.models import classifiers, resnet, segmenters  # noqa: F401  (registers the builders)
from visiontune.models.registry import build_model, count_parameters, list_models, model_entry, register_model

__all__ = ["build_model", "count_parameters", "list_models", "model_entry", "register_model"]
