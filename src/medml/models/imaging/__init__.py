"""Image classifiers on MONAI and PyTorch (the ``imaging`` extra). Importing this package imports neither: they are
loaded when a network is built, trained or run."""

from medml.models.imaging.network import ARCHITECTURES, ImageNetConfig, as_network_input, build_network
from medml.models.imaging.predict import predict_images
from medml.models.imaging.train import EpochRecord, ImageTrainConfig, ImageTrainResult, train_image_model
from medml.models.imaging.weights import load_weights, save_weights

__all__ = [
    "ARCHITECTURES",
    "EpochRecord",
    "ImageNetConfig",
    "ImageTrainConfig",
    "ImageTrainResult",
    "as_network_input",
    "build_network",
    "load_weights",
    "predict_images",
    "save_weights",
    "train_image_model",
]
