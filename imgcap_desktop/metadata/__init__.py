"""Captions where photo tools read them: XMP sidecars, embedded descriptions, CSV, and folder scans.

Nothing here imports Qt or TensorFlow, so the CLI, the app's workers and the tests share it freely.
"""

from imgcap_desktop.metadata.sidecar import (
    SidecarCollisionError,
    SidecarError,
    StoredCaption,
    find_sidecar,
    read_caption,
    sidecar_path,
    write_caption,
)

__all__ = [
    "SidecarCollisionError",
    "SidecarError",
    "StoredCaption",
    "find_sidecar",
    "read_caption",
    "sidecar_path",
    "write_caption",
]
