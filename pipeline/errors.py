"""Errors that the command-line entry points turn into one clear line and a non-zero exit."""

from __future__ import annotations

import re


class FusionerError(Exception):
    """A user-facing error: its message is shown as one line, without a traceback."""


class MissingWeightsError(FusionerError):
    """Pretrained weights were asked for but no local file was found."""


class UnknownNameError(FusionerError):
    """An unknown encoder, dataset or class name."""


class StoreError(FusionerError):
    """A feature store is missing, incomplete, or made by another encoder/version."""


class BadInputError(FusionerError):
    """An input file (image, mask, params) is unreadable or invalid."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# torch re-raises a DataLoader worker's exception as the same type, its message wrapped in the
# worker's traceback ("Caught X in DataLoader worker process N.\nOriginal Traceback ...")
_WORKER_WRAPPER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")


def one_line(exc: BaseException) -> str:
    """The message of a user-facing error on one line (a DataLoader worker's error: its own
    message, unwrapped from the worker's traceback)."""
    text = str(exc)
    if _WORKER_WRAPPER.match(text):
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())
