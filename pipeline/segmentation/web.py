"""A small local web page for ``segment``: upload an image, type class names, see the overlay.

Standard library only (``http.server``): ``GET /`` serves the form, ``POST /segment`` (multipart
form: ``image``, ``classes``, ``threshold``, ``vocabulary``) answers a page with the overlay
(legend included) and each class's share of the pixels, or the one-line error with HTTP 400
(413: too large). ``vocabulary`` (one of ``ServeConfig.vocabularies``, or empty for none): the
classes compete with its other names, as ``fusioner-segment --vocabulary``.
Nothing is written to disk; the models load once (``fusioner-serve`` loads them before serving)
and are reused through ``load_segmenter``'s cache.
Meant for localhost (``fusioner-serve`` binds 127.0.0.1 by default): no authentication.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import threading
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

from pipeline.data.base import load_rgb_image
from pipeline.errors import BadInputError, FusionerError
from pipeline.segmentation.api import Method, segment
from pipeline.segmentation.core import SegmentationResult
from pipeline.store import DEFAULT_CACHE_DIR, StoreLocation
from pipeline.thresholds import PAPER_THRESHOLD, Threshold, describe, parse_threshold
from pipeline.vocabularies import BUILTIN_VOCABULARIES

log = logging.getLogger("fusioner.serve")
MAX_UPLOAD_BYTES = 32 * 2**20
_MODEL_LOCK = threading.Lock()  # one segmentation at a time: the cached models are shared

STYLE = """body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
label{display:block;margin:.6rem 0 .2rem}input[type=text]{width:100%}
.error{color:#b00020;font-weight:bold}img{max-width:100%;border:1px solid #ccc}
table{border-collapse:collapse}td,th{padding:.2rem .8rem;border-bottom:1px solid #ddd}"""


class UploadTooLarge(BadInputError):
    """A request body over ``MAX_UPLOAD_BYTES`` (HTTP 413)."""


@dataclass(frozen=True)
class ServeConfig:
    """What every request segments with (the page chooses image, classes, threshold and one of
    ``vocabularies``: built-in names or names files; their embeddings cached in ``cache_dir``)."""

    checkpoint: Path | None
    method: Method = "fusion"
    threshold: Threshold = PAPER_THRESHOLD
    weights: Path | None = None
    text_weights: Path | None = None
    random_init: bool = False
    device: str | torch.device = "cpu"
    vocabularies: tuple[str, ...] = tuple(BUILTIN_VOCABULARIES)
    cache_dir: StoreLocation = DEFAULT_CACHE_DIR


def form_page(config: ServeConfig, classes: str = "", threshold: str = "",
              result: str = "", vocabulary: str = "") -> str:
    """The upload form, with ``result`` (HTML) below it."""
    value = html.escape(threshold or str(config.threshold), quote=True)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Fusioner</title>
<style>{STYLE}</style></head><body><h1>Fusioner: segment an image by class names</h1>
<p>Method: {html.escape(config.method)}{_checkpoint_note(config)}</p>
<form method="post" action="/segment" enctype="multipart/form-data">
<label for="image">Image</label>
<input id="image" name="image" type="file" accept="image/*" required>
<label for="classes">Class names, comma-separated</label>
<input id="classes" name="classes" type="text" value="{html.escape(classes, quote=True)}"
 placeholder="car, road, pedestrian" required>
<label for="threshold">Threshold: a probability in [0, 1], or adaptive</label>
<input id="threshold" name="threshold" type="text" value="{value}">
{_vocabulary_select(config, vocabulary)}
<p><button id="run" type="submit">Segment</button></p></form>{result}</body></html>"""


def result_html(result: SegmentationResult, threshold: Threshold) -> str:
    """The overlay as an inline PNG and the share of pixels each class took."""
    buffer = io.BytesIO()
    result.overlay_image().save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{share:.1%}</td></tr>"
                   for name, share in result.fractions().items())
    width, height = result.image.size
    return (f'<h2>Result</h2><p>{width}x{height} pixels, {html.escape(result.method)}, '
            f'{html.escape(describe(threshold))}</p>'
            f'<img id="overlay" alt="overlay" src="data:image/png;base64,{encoded}">'
            f'<table id="shares"><tr><th>class</th><th>pixels</th></tr>{rows}</table>'
            f'{_others_html(result)}')


def _others_html(result: SegmentationResult, count: int = 10) -> str:
    """With a vocabulary: the untyped names that won pixels (shown as "(none)")."""
    if result.vocabulary is None:
        return ""
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{share:.1%}</td></tr>"
                   for name, share in list(result.others.items())[:count])
    return (f'<p>Pixels won by names of {html.escape(result.vocabulary)} you did not ask for '
            f'(counted as (none) above):</p><table id="others"><tr><th>name</th>'
            f'<th>pixels</th></tr>{rows}</table>')


def error_html(message: str) -> str:
    return f'<p class="error" id="error">error: {html.escape(message)}</p>'


def parse_form(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """multipart/form-data -> {field: (filename or None, raw bytes)}; ``BadInputError`` else."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise BadInputError("the form must be sent as multipart/form-data")
    message: Message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
    if not message.is_multipart():
        raise BadInputError("malformed multipart form")
    fields = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def run_request(config: ServeConfig, fields: dict[str, tuple[str | None, bytes]]
                ) -> tuple[SegmentationResult, Threshold]:
    """Segment the uploaded image by the form's classes and threshold (``FusionerError`` if bad)."""
    filename, data = fields.get("image", (None, b""))
    if not data:
        raise BadInputError("no image uploaded")
    image = load_rgb_image(io.BytesIO(data), name=filename or "uploaded image")
    classes = _text(fields, "classes")
    raw_threshold = _text(fields, "threshold").strip()
    threshold = parse_threshold(raw_threshold) if raw_threshold else config.threshold
    vocabulary = _text(fields, "vocabulary").strip() or None
    if vocabulary is not None and vocabulary not in config.vocabularies:
        raise BadInputError(f"unknown vocabulary '{vocabulary}': choose one of "
                            f"{', '.join(config.vocabularies)}")
    with _MODEL_LOCK:
        result = segment(image, classes, config.checkpoint, method=config.method,
                         threshold=threshold, weights=config.weights,
                         text_weights=config.text_weights, random_init=config.random_init,
                         device=config.device, vocabulary=vocabulary,
                         cache_dir=config.cache_dir)
    return result, threshold


class SegmentHandler(BaseHTTPRequestHandler):
    """``GET /`` the form; ``POST /segment`` the result or the error, on the same page."""

    config: ServeConfig  # set by ``make_server``

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?")[0] not in ("/", "/index.html"):
            self._send(HTTPStatus.NOT_FOUND, "<p>not found</p>")
            return
        self._send(HTTPStatus.OK, form_page(self.config))

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/segment":
            self._send(HTTPStatus.NOT_FOUND, "<p>not found</p>")
            return
        fields: dict[str, tuple[str | None, bytes]] = {}
        try:
            body = self._read_body()
            fields = parse_form(self.headers.get("Content-Type", ""), body)
            result, threshold = run_request(self.config, fields)
        except FusionerError as exc:
            log.info("refused a request: %s", exc)
            status = (HTTPStatus.REQUEST_ENTITY_TOO_LARGE if isinstance(exc, UploadTooLarge)
                      else HTTPStatus.BAD_REQUEST)
            message = " ".join(str(exc).split())
            self._send(status, form_page(self.config, **_echo(fields),
                                         result=error_html(message)))
            return
        log.info("segmented %s into %s", result.image.size, result.class_names)
        self._send(HTTPStatus.OK, form_page(self.config, **_echo(fields),
                                            result=result_html(result, threshold)))

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            raise BadInputError("bad Content-Length header")
        if length > MAX_UPLOAD_BYTES:
            raise UploadTooLarge(f"upload of {length} bytes; at most {MAX_UPLOAD_BYTES} accepted")
        return self.rfile.read(length)

    def _send(self, status: HTTPStatus, page: str) -> None:
        body = page.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug(format, *args)


def make_server(config: ServeConfig, host: str = "127.0.0.1", port: int = 7860
                ) -> ThreadingHTTPServer:
    """A server for ``config`` (port 0 = any free port: see ``server.server_address``)."""
    handler = type("ConfiguredSegmentHandler", (SegmentHandler,), {"config": config})
    return ThreadingHTTPServer((host, port), handler)


def _text(fields: dict[str, tuple[str | None, bytes]], name: str) -> str:
    """A text field of the form as sent ("" if absent)."""
    return fields.get(name, (None, b""))[1].decode("utf-8", "replace")


def _echo(fields: dict[str, tuple[str | None, bytes]]) -> dict[str, str]:
    """The form's text fields as sent, to refill the form."""
    return {name: _text(fields, name) for name in ("classes", "threshold", "vocabulary")}


def _vocabulary_select(config: ServeConfig, chosen: str) -> str:
    """The vocabulary choice: none (default), then ``config.vocabularies``."""
    options = [("", "none: the typed names only")] + [
        (spec, spec if spec in BUILTIN_VOCABULARIES else Path(spec).name)
        for spec in config.vocabularies]
    items = "".join(
        f'<option value="{html.escape(value, quote=True)}"'
        f'{" selected" if value == chosen else ""}>{html.escape(text)}</option>'
        for value, text in options)
    return ('<label for="vocabulary">Vocabulary: the typed names compete with its other names '
            '(their pixels become (none))</label>'
            f'<select id="vocabulary" name="vocabulary">{items}</select>')


def _checkpoint_note(config: ServeConfig) -> str:
    return f", checkpoint {html.escape(str(config.checkpoint))}" if config.checkpoint else ""
