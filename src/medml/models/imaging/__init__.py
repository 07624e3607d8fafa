"""Image classifiers on MONAI and PyTorch (the ``imaging`` extra). Importing this package imports neither: they are
loaded when a network is built, trained or run."""

from medml.models.imaging.calibration import PlattScaling
from medml.models.imaging.ensemble import ensemble_state, member_states
from medml.models.imaging.fhir import ImageSource, image_reports
from medml.models.imaging.network import ARCHITECTURES, ImageNetConfig, as_network_input, build_network
from medml.models.imaging.predict import predict_images
from medml.models.imaging.predictor import (
    INSTALL_HINT,
    ImageBundle,
    ImagePredictor,
    net_config_of,
    predict_bundle,
    require_imaging,
)
from medml.models.imaging.train import EpochRecord, ImageTrainConfig, ImageTrainResult, train_image_model
from medml.models.imaging.weights import load_weights, save_weights

__all__ = [
    "ARCHITECTURES",
    "INSTALL_HINT",
    "EpochRecord",
    "ImageBundle",
    "ImageNetConfig",
    "ImagePredictor",
    "ImageSource",
    "ImageTrainConfig",
    "ImageTrainResult",
    "PlattScaling",
    "as_network_input",
    "build_network",
    "ensemble_state",
    "image_reports",
    "load_weights",
    "member_states",
    "net_config_of",
    "predict_bundle",
    "predict_images",
    "require_imaging",
    "save_weights",
    "train_image_model",
]
