"""Errors that the command-line entry points turn into one clear line and a non-zero exit."""

from __future__ import annotations


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
