"""The serving contract a bundle carries: how the deployed model reads its input, written at training time.

A tabular model served from FHIR stores its :class:`~medml.fhir.features.ServingSpec` (feature definition and
index-time rule), declared with its task; an image model the preparation of its training images
(:class:`ImageServing`). Stored as JSON tagged by ``kind`` and read back typed when the bundle is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from medml.errors import MedmlError

if TYPE_CHECKING:
    from medml.data.images import ImagePreparation
    from medml.data.task import ServingContract


@dataclass(frozen=True)
class ImageServing:
    """How an image model reads a new image: exactly as its training images were read."""

    kind: ClassVar[str] = "image"

    preparation: ImagePreparation

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "preparation": self.preparation.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageServing:
        from medml.data.images import ImagePreparation

        if not isinstance(d.get("preparation"), Mapping):
            raise ValueError("an image serving contract needs its 'preparation'")
        return cls(ImagePreparation.from_dict(d["preparation"]))


def _readers() -> dict[str, Callable[[Mapping[str, Any]], ServingContract]]:
    """Each serving contract's reader, by its ``kind`` (imported here: each pulls in its own layer)."""
    from medml.fhir.features import ServingSpec

    return {ServingSpec.kind: ServingSpec.from_dict, ImageServing.kind: ImageServing.from_dict}


def read_serving(d: Any) -> ServingContract:
    """A stored serving contract, typed; a ValueError says why one does not parse (the caller names the bundle)."""
    if not isinstance(d, Mapping):
        raise ValueError(f"it is a {type(d).__name__}, not a JSON object")
    readers = _readers()
    kind = d.get("kind", "fhir")  # FHIR specs were stored without a kind before image contracts existed
    if kind not in readers:
        raise ValueError(f"its kind {kind!r} is none of {', '.join(readers)}")
    try:
        return readers[kind](d)
    except MedmlError as e:
        raise ValueError(e.what) from None


def legacy_serving(params: Mapping[str, Any], extra: Mapping[str, Any]) -> ServingContract | None:
    """The contract of a bundle stored before bundles carried one, where its metadata has what it takes: an image
    network's input preparation (``params["input"]``), or a serving spec kept in ``extra``."""
    if isinstance(extra.get("serving"), Mapping):
        return read_serving(extra["serving"])
    if isinstance(params.get("net"), Mapping):
        from medml.data.images import ImagePreparation

        stored = params.get("input")
        return ImageServing(ImagePreparation.from_dict(stored if isinstance(stored, Mapping) else None))
    return None
