"""The docs a newcomer reads: every internal link of README.md and docs/*.md resolves (files and
anchors), the README links nothing outside the repository, and `make docs` builds the site
(mkdocs, strict) with the AsyncAPI document rendered as its Topics page."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*\b(?:href|src)=\"([^\"]+)\"")


def prose(text: str) -> str:
    """The page without code blocks and inline code, where brackets are not links."""
    return CODE.sub("", FENCE.sub("", text))


def links(page: Path) -> list[str]:
    text = prose(page.read_text())
    return LINK.findall(text) + HTML_LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: formatting dropped, lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = unicodedata.normalize("NFC", text.replace("`", "").replace("*", "")).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line):
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken(page: Path) -> list[str]:
    problems = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto: ...: not internal
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading with that anchor")
        elif anchor and dest.suffix != ".md":
            problems.append(f"{target}: an anchor into a file that is not a page")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_internal_link_resolves(page: Path) -> None:
    assert broken(page) == []


def test_the_link_check_catches_a_broken_file_a_broken_anchor_and_ignores_code(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## What is guaranteed, and how\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#what-is-guaranteed-and-how) [ok](other.md#twice-1) [ok](#here) "
        "[web](https://example.com/x) `[code](nowhere.md)`\n"
        "```\n[block](nowhere.md)\n```\n# Here\n"
        "[gone](missing.md) [bad anchor](other.md#nothing) ![img](pic.png)\n"
    )
    assert broken(page) == [
        "missing.md: no such file",
        "other.md#nothing: no heading with that anchor",
        "pic.png: no such file",
    ]


def test_the_readme_links_only_inside_the_repository() -> None:
    for target in links(ROOT / "README.md"):
        outside = f"{target}: the README links outside the repository"
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", target), outside
        assert (ROOT / target.partition("#")[0]).resolve().is_relative_to(ROOT), outside


def test_the_readme_keeps_to_the_two_command_quickstart() -> None:
    blocks = re.findall(r"^```bash\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    assert [c for c in commands if c] == ["make up", "make test"]


def hook() -> ModuleType:
    path = ROOT / "docs" / "hooks" / "asyncapi_page.py"
    spec = importlib.util.spec_from_file_location("asyncapi_page", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_topics_page_shows_every_topic_and_every_records_fields() -> None:
    spec = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    page = hook().render(ROOT / "docs" / "asyncapi.yaml")
    for channel in spec["channels"].values():
        if not channel["address"].endswith(".dlq"):
            assert f"| `{channel['address']}` |" in page, channel["address"]
    for name, message in spec["components"]["messages"].items():
        assert f"\n### {name}\n" in page
        ref = message["payload"].get("schema", {}).get("$ref")
        if ref:
            section = page.split(f"\n### {name}\n")[1].split("\n### ")[0]
            assert f"schema id {message['x-schema-id']}" in section
            for field in json.loads((ROOT / "docs" / ref).read_text())["fields"]:
                assert f"| `{field['name']}` |" in section, (name, field["name"])
    assert "decimal(38,18)" in page and "enum Side: BUY, SELL" in page


def test_make_docs_builds_the_site_strictly(tmp_path: Path) -> None:
    """What `make docs` runs; --strict fails on a warning (a broken link or anchor between pages)."""
    assert importlib.util.find_spec("mkdocs"), "mkdocs is missing: make install brings the docs extra"
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr
    for page in ("index.html", "architecture/index.html", "api/index.html", "operations/index.html",
                 "benchmarks/index.html", "latency/index.html", "topics/index.html"):
        assert (site / page).is_file(), page
    topics = (site / "topics" / "index.html").read_text()
    assert "order.commands" in topics and "SubmitOrder" in topics
    assert "fonts.googleapis.com" not in (site / "index.html").read_text()  # readable offline
