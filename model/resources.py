"""Find imgcap's shipped files (model bundles, icons, samples) the same way everywhere.

A source checkout, an installed wheel and the PyInstaller build each keep ``resources/`` in a
different place; this is the one function that knows all three.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
from pathlib import Path


def resources_root() -> Path:
    """The folder that holds ``models/``, ``icons/``, ``samples/`` and ``encoders/``.

    Order: ``$IMGCAP_RESOURCES`` (tests, packagers), the frozen app's unpacked folder, a source
    checkout (``resources/`` beside the packages), then ``share/imgcap/resources`` where a wheel
    installs them (under the environment's prefix, or the user base for ``pip install --user``).
    """
    override = os.environ.get("IMGCAP_RESOURCES")
    if override:
        return Path(override)
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    checkout = Path(__file__).resolve().parent.parent / "resources"
    if checkout.is_dir():
        return checkout
    installed = [Path(sys.prefix), Path(sysconfig.get_path("data"))]
    if site.ENABLE_USER_SITE and site.USER_BASE:
        installed.append(Path(site.USER_BASE))
    for prefix in installed:
        candidate = prefix / "share" / "imgcap" / "resources"
        if candidate.is_dir():
            return candidate
    return installed[0] / "share" / "imgcap" / "resources"


def resource_path(*parts: str) -> Path:
    """Path of a shipped resource, e.g. ``resource_path("icons", "imgcap.svg")`` (it may not exist)."""
    return resources_root().joinpath(*parts)


def user_cache_dir() -> Path:
    """Where converted encoder weights are cached (``$IMGCAP_CACHE_DIR`` overrides, for tests)."""
    override = os.environ.get("IMGCAP_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("imgcap", appauthor=False))
