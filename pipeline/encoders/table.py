"""Text encoders that look class names up in precomputed embedding tables (no model runs).

- ``clip_vitb32_table`` (alias ``clip_table``): the shared CLIP ViT-B/32 tables of the COCO,
  LVIS v1, Objects365 and Open Images names (``$FUSIONER_TEXT_TABLES``), searched as one list in
  that order;
- ``table:PATH``: a user's own table (forms and checks: ``pipeline.text_tables.read``).

A name is matched by ``pipeline.vocabularies.find_name``: exactly anywhere first, else the first
name equal after folding case, ``_`` and whitespace. A name with no row is a one-line error
listing the closest names, never a fallback; the one exception is a dataset's ``background``
class in a text store (never queried): a zero row, listed in the store's ``unembedded``.
Rows are L2-normalised. Prompt templates do not apply (each row was embedded with the table's
one prompt, recorded as ``table_prompt``); nor do ``--random-init`` (a table has no weights to
randomise: it is read as it is) and ``--text-weights`` (refused).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from pipeline.data.splits import BACKGROUND
from pipeline.encoders.registry import EncoderSpec
from pipeline.encoders.templates import PROMPT_TEMPLATES
from pipeline.encoders.text import TextEncoder
from pipeline.encoders.weights import WeightsSource
from pipeline.errors import BadInputError, FusionerError, MissingWeightsError, UnknownNameError
from pipeline.text_tables.read import names_file, read_table
from pipeline.text_tables.source import (
    CATALOGUE_MODEL,
    CATALOGUE_PROMPT,
    CATALOGUE_TABLE,
    TABLE_FAMILY,
    file_key,
    file_sha256,
    files_digest,
    table_paths,
)
from pipeline.vocabularies import TABLES_ENV, find_name

FROM_TABLE = "table"  # a table encoder's ``weights_source``


def locate_table(slug: str, explicit: Path | str | None) -> WeightsSource:
    """Where table encoder ``slug`` reads from; one-line error if a table file is missing."""
    if explicit is not None:
        raise BadInputError(f"'{slug}' reads a precomputed table: --text-weights does not apply "
                            f"(the shared tables: ${TABLES_ENV}; your own: table:PATH)")
    paths = table_paths(slug)
    needed = [p for _, p in paths]
    if slug == CATALOGUE_TABLE:
        needed += [names_file(p) for p in needed]
    missing = [p for p in needed if not p.is_file()]
    if missing:
        hint = (f" (set ${TABLES_ENV} to the folder of the CLIP ViT-B/32 text tables)"
                if slug == CATALOGUE_TABLE else "")
        raise MissingWeightsError(f"no table for '{slug}': {missing[0]} is missing{hint}")
    return WeightsSource(FROM_TABLE, paths[0][1].parent if slug == CATALOGUE_TABLE
                         else paths[0][1])


class TableTextEncoder(TextEncoder):
    """Class embeddings read from tables; see the module docstring for the rules."""

    def __init__(self, spec: EncoderSpec, source: WeightsSource) -> None:
        tables = [(vocabulary, read_table(path)) for vocabulary, path in table_paths(spec.slug)]
        widths = sorted({table.vectors.shape[1] for _, table in tables})
        if len(widths) != 1:
            raise BadInputError(f"'{spec.slug}': its tables differ in width {widths}")
        super().__init__(spec, source, widths[0])
        self.names = [name for _, table in tables for name in table.names]
        self.vocabularies = [vocabulary for vocabulary, table in tables for _ in table.names]
        vectors = torch.from_numpy(np.concatenate([table.vectors for _, table in tables]))
        self.register_buffer("vectors", F.normalize(vectors, dim=-1), persistent=False)
        self.table_files = {file_key(spec.slug, path): file_sha256(path)
                            for _, table in tables for path in table.files}
        self.table_model = spec.options.get("model", tables[0][1].model)
        self.table_prompt = spec.options.get("prompt", tables[0][1].prompt)
        self.where = spec.options["where"]

    def weights_digest(self) -> str:
        return files_digest(self.table_files)

    def provenance(self) -> dict[str, Any]:
        """Model provenance, plus every table file's sha256, the model and the prompt."""
        return {**super().provenance(), "table_files": dict(self.table_files),
                "table_model": self.table_model, "table_prompt": self.table_prompt}

    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        raise FusionerError(f"'{self.slug}' looks class names up in a table: it cannot embed "
                            "free text")

    def lookup(self, names: list[str], unembedded: frozenset[str] = frozenset()
               ) -> list[int | None]:
        """The table row of each name (None: one of ``unembedded`` the table lacks); every
        other name without a row is listed, with its closest names, in one error."""
        rows: list[int | None] = []
        misses = []
        for name in names:
            try:
                rows.append(find_name(name, self.names, self.where))
            except UnknownNameError as exc:
                if name not in unembedded:
                    misses.append(str(exc))
                rows.append(None)
        if misses:
            raise UnknownNameError(f"{len(misses)} of {len(names)} class names have no row "
                                   f"(no fallback): {'; '.join(misses)}")
        return rows

    @torch.inference_mode()
    def encode_classes(self, class_names: list[str],
                       templates: tuple[str, ...] = PROMPT_TEMPLATES) -> torch.Tensor:
        """(K, D) L2-normalised rows of the names (``templates`` do not apply)."""
        return self.vectors[self.lookup(class_names)].clone()

    def store_attrs(self, class_names: list[str], templates: tuple[str, ...]) -> dict[str, Any]:
        """The table's own prompt as the template, each name's (vocabulary, table name), and
        the names the table lacks that get a zero row (``background`` only)."""
        rows = self._store_rows(class_names)
        prompt = self.table_prompt
        return {"templates": [prompt.replace("{name}", "{}")] if prompt else [],
                "table_matches": [None if row is None else [self.vocabularies[row],
                                                            self.names[row]] for row in rows],
                "unembedded": [name for name, row in zip(class_names, rows, strict=True)
                               if row is None]}

    @torch.inference_mode()
    def encode_store(self, class_names: list[str], templates: tuple[str, ...]) -> torch.Tensor:
        """The rows of a text store: as ``encode_classes``, with a zero row for a
        ``background`` class the table lacks (never queried)."""
        rows = self._store_rows(class_names)
        out = torch.zeros(len(rows), self.feature_dim)
        found = [index for index, row in enumerate(rows) if row is not None]
        out[found] = self.vectors[[rows[index] for index in found]].cpu()
        return out

    def _store_rows(self, class_names: list[str]) -> list[int | None]:
        return self.lookup(class_names, frozenset({BACKGROUND}))


def build_table(spec: EncoderSpec, source: WeightsSource) -> TextEncoder:
    return TableTextEncoder(spec, source)


def catalogue_table_spec() -> EncoderSpec:
    """``clip_vitb32_table``: the shared CLIP ViT-B/32 tables (one prompt, no ensembling)."""
    return EncoderSpec(
        CATALOGUE_TABLE, "table:openai-ViT-B-32", build_table, (),
        description="precomputed OpenAI CLIP ViT-B/32 text (512-d) of the COCO, LVIS, Objects365 "
                    "and Open Images names, prompt 'a {name}' (one prompt: no template "
                    "ensembling); the shared tables in $FUSIONER_TEXT_TABLES",
        options={"locate": partial(locate_table, CATALOGUE_TABLE), "model": CATALOGUE_MODEL,
                 "prompt": CATALOGUE_PROMPT,
                 "where": "the CLIP ViT-B/32 tables"})


def user_table_spec(path: str) -> EncoderSpec:
    """``table:PATH``: a user's own table file (``.npy`` + names, or a torch file)."""
    slug = f"{TABLE_FAMILY}:{path}"
    return EncoderSpec(slug, slug, build_table, (), description="a user's embedding table",
                       options={"locate": partial(locate_table, slug), "where": f"table {path}"})
