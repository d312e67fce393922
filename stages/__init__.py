"""Thin command-line entry points, one per DVC stage; the logic lives in ``pipeline``."""
