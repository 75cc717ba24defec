"""The one kind of error that says, in words for the user, why the model cannot be set up here."""

from __future__ import annotations


class ModelSetupError(Exception):
    """The model cannot be set up here (a damaged bundle, missing weights, no runtime for it); the
    message says which and what to do, so it is shown as it is, without the error's type."""
