"""The local web page (``pipeline.segmentation.web`` / ``fusioner-serve``): the form, an upload
segmented at the image's size, one-line errors with HTTP 400, and a headless-Chromium run with a
screenshot (skipped where Chromium, chromedriver or selenium are absent)."""

from __future__ import annotations

import base64
import html
import io
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.encoders import create_visual_encoder
from pipeline.segmentation import web
from pipeline.segmentation.web import ServeConfig, make_server, parse_form
from pipeline.vocabularies import BUILTIN_VOCABULARIES
from tests.helpers import SEGMENT_INPUT, untrained_checkpoint

BOUNDARY = "----fusionertestboundary"


@pytest.fixture(scope="module")
def names_file(tmp_path_factory) -> Path:
    """A names file the page offers beside the built-in vocabularies."""
    path = tmp_path_factory.mktemp("names") / "street.txt"
    path.write_text("car\nroad\ntree\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server_url(tmp_path_factory, names_file: Path) -> Iterator[str]:
    visual = create_visual_encoder("dino_vits16", random_init=True, image_size=SEGMENT_INPUT)
    checkpoint = untrained_checkpoint(tmp_path_factory.mktemp("web"), visual)
    config = ServeConfig(checkpoint, random_init=True,
                         vocabularies=(*BUILTIN_VOCABULARIES, str(names_file)),
                         cache_dir=tmp_path_factory.mktemp("cache"))
    server = make_server(config, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def _png(size: tuple[int, int], seed: int = 0) -> bytes:
    """A random RGB image of (H, W) ``size`` as PNG bytes."""
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _multipart(image: bytes, classes: str, threshold: str = "", vocabulary: str = "") -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
             f'filename="street.png"\r\nContent-Type: image/png\r\n\r\n'.encode() + image + b"\r\n"]
    for name, value in (("classes", classes), ("threshold", threshold),
                        ("vocabulary", vocabulary)):
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _post(url: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{url}/segment", data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _overlay(page: str) -> Image.Image:
    encoded = re.search(r'id="overlay" alt="overlay" src="data:image/png;base64,([^"]+)"', page)
    assert encoded, "no overlay image in the page"
    return Image.open(io.BytesIO(base64.b64decode(encoded.group(1))))


def test_form_page_has_the_fields(server_url: str) -> None:
    with urllib.request.urlopen(server_url, timeout=30) as response:
        page = response.read().decode()
    assert response.status == 200
    for field in ('name="image" type="file"', 'name="classes"', 'name="threshold"',
                  '<select id="vocabulary" name="vocabulary">'):
        assert field in page
    offered = re.findall(r'<option value="([^"]*)"', page)
    assert offered[0] == "" and set(BUILTIN_VOCABULARIES) <= set(offered)  # none by default


def test_a_vocabulary_from_the_form_lists_its_untyped_winners(server_url: str,
                                                              names_file: Path) -> None:
    status, page = _post(server_url, _multipart(_png((40, 50), 3), "car", "", str(names_file)))
    assert status == 200, page
    shares = dict(re.findall(r"<tr><td>([^<]+)</td><td>([\d.]+)%</td></tr>",
                             page.split('id="others"')[0]))
    assert list(shares) == ["car", "(none)"]
    others = re.findall(r"<tr><td>([^<]+)</td><td>([\d.]+)%</td></tr>",
                        page.split('id="others"')[1])
    assert {name for name, _ in others} <= {"road", "tree"}  # never the typed name
    untyped = sum(float(share) for _, share in others)
    assert untyped <= float(shares["(none)"]) + 0.2  # their pixels are inside "(none)"
    assert f'value="{html.escape(str(names_file), quote=True)}" selected' in page


def test_an_unknown_vocabulary_is_a_400(server_url: str) -> None:
    status, page = _post(server_url, _multipart(_png((30, 30)), "car", "", "/etc/passwd"))
    assert status == 400 and "unknown vocabulary '/etc/passwd'" in html.unescape(page)
    assert 'id="overlay"' not in page


def test_upload_is_segmented_at_the_image_size(server_url: str) -> None:
    status, page = _post(server_url, _multipart(_png((50, 70)), "car, road,pedestrian"))
    assert status == 200, page
    overlay = _overlay(page)
    assert overlay.height >= 50 and overlay.width >= 70  # the image, plus a legend column
    shares = dict(re.findall(r"<tr><td>([^<]+)</td><td>([\d.]+)%</td></tr>", page))
    assert list(shares) == ["car", "road", "pedestrian", "(none)"]
    assert sum(float(v) for v in shares.values()) == pytest.approx(100.0, abs=0.3)
    assert 'value="car, road,pedestrian"' in page  # the form is refilled for the next try


def test_adaptive_threshold_from_the_form(server_url: str) -> None:
    status, page = _post(server_url, _multipart(_png((40, 40), 1), "car", "adaptive"))
    assert status == 200 and "adaptive" in page


@pytest.mark.parametrize(("image", "classes", "threshold", "expected"), [
    (b"not an image", "car", "", "street.png: unreadable image"),
    (None, "", "", "no class names given"),
    (None, "car,road,car", "", "duplicate class names: car"),
    (None, "car", "1.5", "threshold must be 'adaptive' or a probability in [0, 1]"),
    (b"", "car", "", "no image uploaded"),
])
def test_bad_input_is_a_one_line_400(server_url: str, tmp_path: Path, monkeypatch,
                                     image: bytes | None, classes: str, threshold: str,
                                     expected: str) -> None:
    monkeypatch.chdir(tmp_path)
    status, page = _post(server_url, _multipart(_png((30, 30)) if image is None else image,
                                                classes, threshold))
    assert status == 400
    errors = [html.unescape(e) for e in
              re.findall(r'<p class="error" id="error">(.*?)</p>', page, flags=re.S)]
    assert len(errors) == 1 and "\n" not in errors[0] and expected in errors[0], errors
    assert 'id="overlay"' not in page
    assert not list(tmp_path.iterdir())  # nothing written


def test_an_upload_over_the_limit_is_refused_with_413(server_url: str, monkeypatch) -> None:
    monkeypatch.setattr(web, "MAX_UPLOAD_BYTES", 1000)
    status, page = _post(server_url, _multipart(_png((40, 40)), "car"))
    assert status == 413 and "at most 1000 accepted" in page and 'id="overlay"' not in page


def test_wrong_content_type_and_unknown_paths(server_url: str) -> None:
    request = urllib.request.Request(f"{server_url}/segment", data=b"classes=car", method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400 and b"multipart/form-data" in refused.value.read()
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{server_url}/nothing", timeout=30)
    assert missing.value.code == 404


def test_parse_form_keeps_filenames_and_bytes() -> None:
    fields = parse_form(f"multipart/form-data; boundary={BOUNDARY}",
                        _multipart(b"\x89PNG\x00\xff", "car,road", "0.3"))
    assert fields["image"] == ("street.png", b"\x89PNG\x00\xff")
    assert fields["classes"] == (None, b"car,road") and fields["threshold"] == (None, b"0.3")


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
# .ci/run installs the browser and sets this: there a missing browser fails instead of skipping
BROWSER_REQUIRED = os.environ.get("FUSIONER_REQUIRE_BROWSER") == "1"


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER) and not BROWSER_REQUIRED,
                    reason="needs Debian's chromium and chromium-driver (apt-get install "
                           "chromium chromium-driver)")
def test_headless_chromium_uploads_and_screenshots(server_url: str, tmp_path: Path) -> None:
    assert CHROMIUM and CHROMEDRIVER, "chromium/chromedriver missing (.ci/run installs them)"
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select, WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--window-size=1000,900", f"--user-data-dir={tmp_path / 'p'}"):
        options.add_argument(flag)
    image = tmp_path / "street.png"
    image.write_bytes(_png((60, 80), 2))
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.get(server_url)
        driver.find_element(By.ID, "image").send_keys(str(image))
        driver.find_element(By.ID, "classes").send_keys("car,road")
        Select(driver.find_element(By.ID, "vocabulary")).select_by_visible_text("street.txt")
        driver.find_element(By.ID, "run").click()
        shown = WebDriverWait(driver, 120).until(
            expected_conditions.visibility_of_element_located((By.ID, "overlay")))
        assert driver.execute_script("return arguments[0].naturalWidth", shown) >= 80
        assert "car" in driver.find_element(By.ID, "shares").text
        others = driver.find_element(By.ID, "others")  # the untyped names' table
        assert others.is_displayed() and others.text.startswith("name pixels")
        screenshot = tmp_path / "page.png"
        assert driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    pixels = np.asarray(Image.open(screenshot).convert("L"), np.float32)
    assert pixels.shape[0] > 100 and pixels.std() > 5  # a rendered page, not a blank one


def test_serve_refuses_a_missing_checkpoint_before_serving(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from stages.serve import main

    result = CliRunner().invoke(main, ["--checkpoint", str(tmp_path / "none.pt"), "--port", "0",
                                       "--device", "cpu"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "none.pt" in lines[0]
    assert "serving on" not in result.output


def test_serve_refuses_a_missing_names_file_before_serving(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from stages.serve import main

    result = CliRunner().invoke(main, ["--checkpoint", str(tmp_path / "none.pt"), "--port", "0",
                                       "--vocabulary", str(tmp_path / "names.txt")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "unknown vocabulary" in lines[0] and "names.txt" in lines[0]
