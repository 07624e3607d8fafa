"""A registered image model ready to use: its network(s) rebuilt from the stored state dict and network config, its
calibration, and how its images are prepared. Prediction from files (``medml image predict``), the training
pipeline's evaluation and the image service all predict through :class:`ImagePredictor`.

The bundle is taken duck-typed (:class:`ImageBundle`): models sits below the registry and imports none of it.
torch and MONAI are imported when a network is first built, never on import.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

from medml.data.images import ImagePreparation, PreparedImage, prepare_files, prepare_image
from medml.data.images.prepare import Resize
from medml.errors import ConfigError, IntegrityError
from medml.models.imaging.calibration import PlattScaling
from medml.models.imaging.ensemble import member_states
from medml.models.imaging.fhir import ImageSource, image_reports
from medml.models.imaging.network import ImageNetConfig, as_network_input, build_network
from medml.models.imaging.predict import predict_with

if TYPE_CHECKING:
    import torch

__all__ = [
    "INSTALL_HINT",
    "ImageBundle",
    "ImagePredictor",
    "net_config_of",
    "predict_bundle",
    "require_imaging",
]

FloatArray = npt.NDArray[np.float64]
INSTALL_HINT = "install the imaging extra: pip install -e '.[imaging]'"


def require_imaging() -> None:
    """ConfigError naming the install command when torch or MONAI cannot be imported."""
    import importlib

    for module in ("torch", "monai"):
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise ConfigError(f"image models need {module}, which cannot be imported ({e})", INSTALL_HINT) from None


class ImageMetadata(Protocol):
    """The parts of a bundle's metadata an image model is rebuilt from (``medml.registry.BundleMetadata``)."""

    @property
    def ref(self) -> str: ...
    @property
    def model_kind(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def extra(self) -> Mapping[str, Any]: ...


class ImageBundle(Protocol):
    """A registered image model (``medml.registry.ModelBundle``): a torch state dict and its metadata."""

    @property
    def model(self) -> Any: ...
    @property
    def artifact(self) -> str: ...
    @property
    def metadata(self) -> ImageMetadata: ...


def net_config_of(bundle: ImageBundle) -> ImageNetConfig:
    """The :class:`ImageNetConfig` stored with an image bundle's weights; ConfigError for a model of another kind."""
    md = bundle.metadata
    raw = md.params.get("net")
    if bundle.artifact != "torch-state-dict" or not isinstance(raw, Mapping):
        raise ConfigError(
            f"{md.ref} is a {md.model_kind} model, not an image classifier",
            "give an image model (trained with `medml image train`)",
        )
    try:
        return ImageNetConfig(**{**raw, "image_size": tuple(raw["image_size"]), "widths": tuple(raw["widths"])})
    except (TypeError, KeyError) as e:
        raise IntegrityError(
            f"{md.ref}: the stored network config is not valid ({e})", "retrain the model with this version of medml"
        ) from None


class ImagePredictor:
    """An image model's network(s), calibration and image preparation: prepares files or uploads as the training
    images were, predicts probabilities (an ensemble's members averaged, then calibrated) and exposes the networks
    for Grad-CAM. Networks are built on first use; one predictor may be shared, one call at a time for Grad-CAM."""

    def __init__(
        self,
        model_state: Mapping[str, Any],
        net: ImageNetConfig,
        *,
        calibration: PlattScaling | None = None,
        preparation: ImagePreparation | None = None,
        ref: str = "the model",
        target: str = "",
        class_names: Sequence[str] = (),
    ) -> None:
        self.model_state = model_state
        self.net = net
        self.calibration = calibration
        self.preparation = preparation or ImagePreparation()
        self.ref = ref
        self.target = target
        self.class_names = tuple(str(c) for c in class_names)
        self._networks: list[torch.nn.Module] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_bundle(cls, bundle: ImageBundle) -> ImagePredictor:
        """The predictor of a registered image bundle: its weights, network config, calibration and preparation."""
        md = bundle.metadata
        calibration = md.params.get("calibration")
        return cls(
            bundle.model,
            net_config_of(bundle),
            calibration=PlattScaling.from_dict(calibration) if isinstance(calibration, Mapping) else None,
            preparation=ImagePreparation.from_dict(md.params.get("input")),
            ref=md.ref,
            target=md.target,
            class_names=[str(c) for c in md.extra.get("class_names", [])],
        )

    @property
    def task(self) -> str:
        """binary, multiclass or multilabel."""
        return self.net.task

    @property
    def n_members(self) -> int:
        """Networks in the model: 1, or an ensemble's members."""
        return len(member_states(self.model_state))

    @property
    def networks(self) -> list[torch.nn.Module]:
        """Every network (one, or an ensemble's members) with its weights loaded, in eval mode; built once."""
        with self._lock:
            if self._networks is None:
                self._networks = [self._build(state) for state in member_states(self.model_state)]
            return self._networks

    def _build(self, state: Mapping[str, Any]) -> torch.nn.Module:
        module = build_network(self.net)
        try:
            module.load_state_dict(dict(state))
        except RuntimeError as e:
            raise IntegrityError(
                f"the weights of {self.ref} do not fit a {self.net.architecture} of this config ({e})",
                "load the config saved with these weights",
            ) from e
        return module.eval()

    def network_input(self, images: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """N x H x W x C images (uint8 or float 0-1) as N x C x H x W float32, checked against the network."""
        return as_network_input(images, self.net)

    def score(self, x: npt.NDArray[np.float32], *, batch_size: int = 256) -> FloatArray:
        """Uncalibrated probabilities for network input ``x`` (N x C x H x W), the members' mean: what Grad-CAM's
        class choice and the deletion check score."""
        parts = [predict_with(n, x, self.net, batch_size=batch_size) for n in self.networks]
        return parts[0] if len(parts) == 1 else np.asarray(np.mean(parts, axis=0), dtype=np.float64)

    def predict(self, images: npt.ArrayLike, *, batch_size: int = 256, calibrated: bool = True) -> FloatArray:
        """Probabilities for N x H x W x C images: shape (N,) of the positive class for a binary model, (N, K) of
        the classes otherwise; an ensemble's members averaged, then the calibration applied (unless not asked)."""
        raw = self.score(self.network_input(images), batch_size=batch_size)
        return self.calibration.apply(raw) if calibrated and self.calibration is not None else raw

    def prepare(
        self,
        source: str | Path | bytes,
        *,
        resize: Resize = "as-trained",
        kind: Literal["picture", "dicom"] | None = None,
        frame: int | Literal["stored"] | None = "stored",
        name: str = "",
    ) -> PreparedImage:
        """A picture or DICOM file (a path or its bytes) read and sized as the training images were. ``frame``:
        the frame training took ("stored"), or the one given (an upload's ``?frame=N``; None for a single frame).
        See :func:`medml.data.images.prepare_image`; the image service passes ``resize="always", kind="dicom"``."""
        how = self.preparation if frame == "stored" else self.preparation.with_frame(frame)
        return prepare_image(
            source,
            how,
            image_size=self.net.image_size,
            in_channels=self.net.in_channels,
            resize=resize,
            kind=kind,
            name=name,
            model=self.ref,
        )

    def read_files(self, paths: Sequence[str | Path]) -> tuple[npt.NDArray[np.float32], list[ImageSource]]:
        """PNG/JPEG, DICOM or MedMNIST ``.npz`` files as one N x H x W x C float32 array for the network, with each
        image's source (``file`` or ``file[i]``, and its DICOM study and patient when it has them)."""
        prepared = prepare_files(
            paths,
            self.preparation,
            image_size=self.net.image_size,
            in_channels=self.net.in_channels,
            model=self.ref,
        )
        want = (*self.net.image_size, self.net.in_channels)
        images = np.stack([p.pixels for p in prepared]) if prepared else np.zeros((0, *want), np.float32)
        return images, [source_of(p) for p in prepared]

    def headline(self, probabilities: npt.ArrayLike) -> str:
        """One image's result in a few words, e.g. for a heat map's title: ``P(target) 0.83`` or ``class 0.91``."""
        row = np.atleast_1d(np.asarray(probabilities, dtype=np.float64))
        if row.size == 1:
            return f"P({self.target}) {row[0]:.2f}"
        return f"{self.class_names[int(row.argmax())]} {float(row.max()):.2f}"

    def fhir_bundle(
        self,
        sources: Sequence[ImageSource],
        probabilities: npt.ArrayLike,
        *,
        heatmap_pngs: Sequence[bytes | None] | None = None,
    ) -> dict[str, Any]:
        """A FHIR R4 collection Bundle of one DiagnosticReport per image (see :func:`fhir.image_reports`)."""
        return image_reports(
            sources,
            probabilities,
            model=self.ref,
            target=self.target,
            class_names=self.class_names,
            multiclass=self.task == "multiclass",
            heatmap_pngs=heatmap_pngs,
        )


def source_of(image: PreparedImage) -> ImageSource:
    """Where a prepared image came from, as its FHIR report references it."""
    return ImageSource(image.label, image.path or Path(image.label), image.study_id, image.patient_id)


def predict_bundle(bundle: ImageBundle, images: npt.ArrayLike, *, batch_size: int = 256) -> FloatArray:
    """Probabilities for N x H x W x C images from a registered image bundle (see :meth:`ImagePredictor.predict`)."""
    return ImagePredictor.from_bundle(bundle).predict(images, batch_size=batch_size)
