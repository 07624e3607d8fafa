"""Medical images: one reader per source (MedMNIST ``.npz``, PNG/JPEG class folders, DICOM with a labels CSV) into
an :class:`ImageDataset` for training, and one preparation path that reads new images (files or uploaded bytes)
exactly as a model's training images were read. numpy, Pillow and pydicom only."""

from medml.data.images.dataset import NPZ_SPLITS, ImageDataset, TaskKind
from medml.data.images.dicom import (
    DicomHeader,
    DicomImage,
    apply_window,
    load_dicom_folder,
    modality_values,
    read_dicom,
    read_dicom_header,
)
from medml.data.images.load import load_images
from medml.data.images.npz import load_npz
from medml.data.images.pictures import IMAGE_SUFFIXES, load_image_folder, read_picture
from medml.data.images.prepare import (
    ChannelMismatch,
    ImagePreparation,
    PreparedImage,
    prepare_files,
    prepare_image,
    to_unit_float,
)
from medml.data.images.resize import resize_image

__all__ = [
    "IMAGE_SUFFIXES",
    "NPZ_SPLITS",
    "ChannelMismatch",
    "DicomHeader",
    "DicomImage",
    "ImageDataset",
    "ImagePreparation",
    "PreparedImage",
    "TaskKind",
    "apply_window",
    "load_dicom_folder",
    "load_image_folder",
    "load_images",
    "load_npz",
    "modality_values",
    "prepare_files",
    "prepare_image",
    "read_dicom",
    "read_dicom_header",
    "read_picture",
    "resize_image",
    "to_unit_float",
]
