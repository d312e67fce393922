"""The docs: the site builds strict, README stays a short landing page whose links resolve, the
generated results tables match their metrics snapshots, and the code shown in the docs imports.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify
from PIL import Image

from pipeline.docs import figure, tables
from pipeline.docs.tables import TABLES, Comparison, Table, rewrite, snapshot, stale
from pipeline.errors import FusionerError
from pipeline.evaluation.summary import headline_table, protocols_table

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
FIXTURES = Path(__file__).parent / "fixtures"
METRICS = FIXTURES / "metrics_two_folds.json"
MKDOCS = Path(sys.executable).with_name("mkdocs")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.M | re.S)


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of ``config`` into ``site`` (the venv's mkdocs, no network)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([str(MKDOCS), "build", "--strict", "-f", str(config), "-d", str(site)],
                          cwd=config.parent, env=env, capture_output=True, text=True, timeout=600)


def prose(path: Path) -> str:
    """A Markdown file without its fenced code blocks (links in code are not links)."""
    return FENCE.sub("", path.read_text(encoding="utf-8"))


def anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file, as mkdocs' toc extension makes them."""
    return {slugify(re.sub(r"[`*]", "", m[1]).strip(), "-")
            for m in re.finditer(r"^#{1,6} (.+)$", prose(path), re.M)}


def test_site_builds_strict(tmp_path: Path) -> None:
    result = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    built = tmp_path / "site"
    assert (built / "index.html").is_file()
    assert "fusioner-extract" in (built / "reference" / "cli" / "index.html").read_text("utf-8")
    api = (built / "reference" / "store" / "index.html").read_text(encoding="utf-8")
    assert "CachedFeatureDataset" in api  # mkdocstrings rendered the docstrings


def test_site_config_needs_no_network() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    plugins = {next(iter(p)) if isinstance(p, dict) else p for p in config["plugins"]}
    assert plugins <= {"search", "mkdocstrings"}  # no social/privacy/... plugin fetching things
    assert config["theme"]["font"] is False  # no Google Fonts request
    assert config["strict"] is True


def test_strict_build_fails_on_a_broken_link_and_a_page_outside_the_nav(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    small = {key: config[key] for key in ("site_name", "strict", "validation", "theme")}
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nSee [a page](missing.md).\n", encoding="utf-8")
    (docs / "orphan.md").write_text("# Orphan\n", encoding="utf-8")
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump({**small, "nav": ["index.md"]}),
                                         encoding="utf-8")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "missing.md" in result.stderr and "orphan.md" in result.stderr


def test_readme_is_a_short_landing_page() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text) <= 12_000
    for command in ("make repro", "make test", "dvc repro", "fusioner-extract --backbone dino",
                    "fusioner-fit", "fusioner-segment", "<!-- table: headline -->"):
        assert command in text
    picture = REPO / "docs" / "assets" / "coco128-unseen.png"
    assert "(docs/assets/coco128-unseen.png)" in text
    assert picture.stat().st_size < 500_000
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width >= 600


def test_readme_relative_links_resolve() -> None:
    targets = [t for t in LINK.findall(prose(README)) if not re.match(r"[a-z]+:", t)]
    assert targets, "README links to no page"
    for target in targets:
        path, _, anchor = target.partition("#")
        file = (REPO / path).resolve() if path else README
        assert file.is_file(), f"README links to {target}: no such file"
        if anchor:
            assert anchor in anchors(file), f"README links to {target}: no such heading"


def test_committed_tables_match_their_snapshots() -> None:
    assert stale(REPO) == {}, "run `python -m pipeline.docs.tables`"
    assert (REPO / TABLES["headline"].snapshot).is_file()


def test_a_generated_table_is_what_the_summary_command_prints() -> None:
    printed = subprocess.run([sys.executable, "-m", "pipeline.evaluation.summary", str(METRICS)],
                             capture_output=True, text=True, check=True).stdout
    page = (FIXTURES / "two_folds.md").read_text(encoding="utf-8")
    fixture = {"fixture": Table(METRICS, METRICS)}
    assert rewrite(page, REPO, fixture) == page  # the committed table is in sync
    block = page.split("<!-- table: fixture -->\n")[1].split("<!-- /table -->")[0]
    assert block.strip() == printed.strip()
    changed = page.replace("| 0.200 | 0.125 |", "| 0.201 | 0.125 |")
    assert changed != page and rewrite(changed, REPO, fixture) == page


def test_a_comparison_has_a_row_per_metrics_file(tmp_path: Path) -> None:
    """Two metrics files side by side, one row each, made from their snapshots."""
    other = json.loads(METRICS.read_text())
    other["text"], other["trained_form"] = "other_text", "joint"
    (tmp_path / "b.json").write_text(json.dumps(other), encoding="utf-8")
    both = Comparison((Table(METRICS, METRICS), Table(tmp_path / "b.json", METRICS)),
                      protocols_table)
    rows = [line for line in both.text(REPO).splitlines() if line.startswith("| ")][1:]
    first = json.loads(METRICS.read_text())
    assert [row.split(" | ")[0] for row in rows] == [f"| {first['text']}",
                                                     "| other_text (vocabulary episodes)"]
    assert rows[0].split(" | ")[1:] == rows[1].split(" | ")[1:]  # the same figures


def test_the_headline_is_the_mean_row_with_its_episodes() -> None:
    document = json.loads(METRICS.read_text())
    rows = [line for line in headline_table(document).splitlines() if line.startswith("| ")]
    episodes = sum(f["episodes"]["binary"] for f in document["per_fold"].values())
    assert len(rows) == 2 and rows[1].startswith(f"| mean of 2 folds | {episodes} | ")
    assert f"| {document['fixed_threshold_0.5']['binary']['miou']:.3f}" in rows[1]


def test_unknown_or_unclosed_tables_are_refused() -> None:
    with pytest.raises(FusionerError, match="unknown table 'nope'"):
        rewrite("<!-- table: nope -->\nx\n<!-- /table -->\n", REPO)
    with pytest.raises(FusionerError, match="without its"):
        rewrite("<!-- table: headline -->\nx\n", REPO)


def project(root: Path) -> Path:
    """A tiny project: README with the headline table, a docs page with CamVid's, and the
    pipeline's metrics files (the fixture) where ``dvc repro`` writes them."""
    (root / "docs").mkdir()
    (root / "metrics").mkdir()
    (root / "README.md").write_text("# P\n\n<!-- table: headline -->\n<!-- /table -->\n",
                                    encoding="utf-8")
    (root / "docs" / "r.md").write_text("<!-- table: camvid -->\nold\n<!-- /table -->\n",
                                        encoding="utf-8")
    for table in TABLES.values():
        for part in table.parts if isinstance(table, Comparison) else (table,):
            if part.source is not None:  # None: not a dvc repro output
                (root / part.source).write_bytes(METRICS.read_bytes())
    return root


def test_the_command_snapshots_rewrites_and_checks(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = project(tmp_path)
    with pytest.raises(SystemExit, match="metrics snapshot"):  # no snapshot yet: one error line
        tables.main(["--check", "--root", str(root)])
    tables.main(["--snapshot", "--root", str(root)])
    assert json.loads((root / TABLES["headline"].snapshot).read_text()) == json.loads(
        METRICS.read_text())
    assert not (root / TABLES["vocabulary_objective"].parts[1].snapshot).exists()
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert "| mean of 2 folds |" in readme and "| 0.200 |" in readme  # the headline's mean row
    tables.main(["--check", "--root", str(root)])  # in sync: no exit
    (root / "docs" / "r.md").write_text((root / "docs" / "r.md").read_text().replace(
        "0.200", "0.199"), encoding="utf-8")
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        tables.main(["--check", "--root", str(root)])
    assert stopped.value.code == 1 and "stale: docs/r.md" in capsys.readouterr().out


def test_snapshot_refuses_a_missing_metrics_file(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "metrics" / "coco128.json").unlink()
    with pytest.raises(FusionerError, match="run `dvc repro` first"):
        snapshot(root)


def test_the_picture_stacks_one_overlay_per_fold(tmp_path: Path) -> None:
    overlays = tmp_path / "overlays"
    overlays.mkdir()
    for name, colour in [("fold0_b.png", "red"), ("fold0_a.png", "blue"), ("fold1_c.png", "green"),
                         ("fold2_d.png", "white")]:
        Image.new("RGB", (300, 100), colour).save(overlays / name)
    picked = figure.first_per_fold(overlays, 2)
    assert [p.name for p in picked] == ["fold0_a.png", "fold1_c.png"]
    out = tmp_path / "picture.png"
    figure.main(["--overlays", str(overlays), "--out", str(out), "--count", "2", "--width", "150"])
    with Image.open(out) as image:
        assert image.size == (150, 50 + figure.GAP + 50) and image.mode == "P"
        rgb = image.convert("RGB")
        assert rgb.getpixel((75, 25)) == (0, 0, 255) and rgb.getpixel((75, 80)) == (0, 128, 0)
    with pytest.raises(SystemExit, match="no overlay PNGs"):
        figure.main(["--overlays", str(tmp_path / "none"), "--out", str(out)])


def python_blocks() -> list[tuple[str, str]]:
    """(file, code) of every ```python block in README.md and docs/."""
    files = [README, *sorted((REPO / "docs").rglob("*.md"))]
    return [(str(f.relative_to(REPO)), textwrap.dedent(m[3]))
            for f in files for m in FENCE.finditer(f.read_text(encoding="utf-8"))
            if m[2] == "python"]


@pytest.mark.parametrize(("where", "code"), python_blocks())
def test_python_shown_in_the_docs_compiles_and_its_imports_exist(where: str, code: str) -> None:
    tree = ast.parse(code, where)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            module = importlib.import_module(node.module or "")
            missing = [a.name for a in node.names if not hasattr(module, a.name)]
            assert not missing, f"{where}: {node.module} has no {missing}"
