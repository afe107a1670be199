"""Clip-feature extraction from raw videos: decoding, 3D-CNN backbones (I3D, C3D), HDF5 writer.

See :mod:`dynpath.extract.extractor` for the clip and store semantics, :mod:`.video` for decoding
and :mod:`.backbones` for the registry and checkpoint loading.
"""

from dynpath.extract.backbones import BACKBONES, BackboneSpec, LoadedBackbone, build_backbone
from dynpath.extract.extractor import (
    ClipFeatureExtractor,
    extract_directory,
    extract_video_features,
    iter_clips,
    num_clips,
)
from dynpath.extract.video import VideoReader, list_videos, read_frames

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "ClipFeatureExtractor",
    "LoadedBackbone",
    "VideoReader",
    "build_backbone",
    "extract_directory",
    "extract_video_features",
    "iter_clips",
    "list_videos",
    "num_clips",
    "read_frames",
]
