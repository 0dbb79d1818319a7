"""Model registry: ``create_model(name, num_classes, in_channels, image_size)`` for 1×28×28 and 3×32×32."""

from delusive.models import cifar_nets as _cifar_nets  # noqa: F401  (registers vgg/resnet/densenet)
from delusive.models import small as _small  # noqa: F401  (registers small-cnn)
from delusive.models.io import load_checkpoint, load_model, model_hash, save_checkpoint, save_model
from delusive.models.registry import DEFAULT_MODEL, MODELS, create_model, model_names

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "create_model",
    "load_checkpoint",
    "load_model",
    "model_hash",
    "model_names",
    "save_checkpoint",
    "save_model",
]
