"""Model registry: ``create_model(name, num_classes, in_channels, image_size)`` for C×H×W inputs in [0, 1]
(``image_size`` an int for square images or an (H, W) pair). docs/models.md lists the architectures."""

from delusive.models import cifar_nets as _cifar_nets  # noqa: F401  (registers vgg/resnet/densenet)
from delusive.models import l2c_generator as _l2c_generator  # noqa: F401  (registers the L2C generators)
from delusive.models import small as _small  # noqa: F401  (registers the small CPU family)
from delusive.models.io import (
    MODEL_FILES,
    load_checkpoint,
    load_model,
    load_state_dict_file,
    model_file,
    model_hash,
    save_checkpoint,
    save_model,
)
from delusive.models.registry import (
    DEFAULT_MODEL,
    MODELS,
    as_image_size,
    classifier_names,
    create_model,
    model_kind,
    model_names,
    register_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "as_image_size",
    "classifier_names",
    "create_model",
    "load_checkpoint",
    "MODEL_FILES",
    "load_model",
    "load_state_dict_file",
    "model_file",
    "model_hash",
    "model_kind",
    "model_names",
    "register_model",
    "save_checkpoint",
    "save_model",
]
