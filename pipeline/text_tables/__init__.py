"""Precomputed text-embedding tables: reading and checking them (``read``), and the files a
table text encoder depends on with the check that they are unchanged (``source``)."""

from pipeline.text_tables.read import Table, names_file, read_table
from pipeline.text_tables.source import (
    CATALOGUE_TABLE,
    TABLE_FAMILY,
    TABLE_KEYS,
    check_table_source,
)

__all__ = [
    "CATALOGUE_TABLE",
    "TABLE_FAMILY",
    "TABLE_KEYS",
    "Table",
    "check_table_source",
    "names_file",
    "read_table",
]
