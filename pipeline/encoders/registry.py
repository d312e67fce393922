"""A timm-style registry of named encoders: register a spec, build by slug through one door."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.encoders.hub import HubRef
from pipeline.errors import UnknownNameError
from pipeline.names import TEXT_ALIASES, VISUAL_ALIASES


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one named encoder and where its pretrained weights live.

    Args:
        slug: short name used on the command line and in store paths (``dino_vits16``).
        library_id: the exact model in its library (``timm:vit_small_patch16_224.dino``).
        build: ``build(spec, WeightsSource_or_None)`` returns the encoder; None = random init.
        weight_files: file names looked up in ``$FUSIONER_WEIGHTS``.
        packaged_weights: returns the weights shipped inside an installed package, if any.
        hub: where the library's own loader finds the weights on the Hugging Face hub (None:
            local files only, e.g. MoCo v3).
        pretrained: the library's name for those weights: a timm pretrained tag (in
            ``library_id``), an open_clip ``pretrained=`` tag, or a transformers repo id.
        options: builder-specific settings (patch size, pooling, ...).
    """

    slug: str
    library_id: str
    build: Callable[..., Any]
    weight_files: tuple[str, ...]
    packaged_weights: Callable[[], Path | None] | None = None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    hub: HubRef | None = None
    pretrained: str | None = None


class EncoderRegistry:
    """Named specs of one kind (visual or text), plus ``prefix:NAME`` dynamic families."""

    def __init__(self, kind: str, aliases: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self.aliases = dict(aliases or {})
        self._specs: dict[str, EncoderSpec] = {}
        self._families: dict[str, Callable[[str], EncoderSpec]] = {}

    def register(self, spec: EncoderSpec) -> EncoderSpec:
        self._specs[spec.slug] = spec
        return spec

    def register_family(self, prefix: str, make_spec: Callable[[str], EncoderSpec]) -> None:
        """``prefix:NAME`` builds ``make_spec(NAME)`` (e.g. ``timm:convnext_tiny``)."""
        self._families[prefix] = make_spec

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[EncoderSpec]:
        """The registered specs, in slug order."""
        return [self._specs[name] for name in self.names()]

    def get(self, name: str) -> EncoderSpec:
        name = self.aliases.get(name, name)
        if name in self._specs:
            return self._specs[name]
        prefix, sep, rest = name.partition(":")
        if sep and prefix in self._families and rest:
            return self._families[prefix](rest)
        families = ", ".join(f"{p}:NAME" for p in sorted(self._families))
        aliases = ", ".join(f"{a}={s}" for a, s in sorted(self.aliases.items()))
        raise UnknownNameError(
            f"unknown {self.kind} encoder '{name}'; known: {', '.join(self.names())} "
            f"(aliases {aliases}); or {families}"
        )


VISUAL_ENCODERS = EncoderRegistry("visual", VISUAL_ALIASES)
TEXT_ENCODERS = EncoderRegistry("text", TEXT_ALIASES)
