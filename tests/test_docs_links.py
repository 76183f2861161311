"""The README and docs/ hold together: every relative link and #anchor resolves (GitHub's heading anchors),
every docs page is reachable from the README, and every make target, Make variable and `-p` parameter the
pages name exists. Text only: no imports of the lib, well under a second."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Environment variables the pages name as NAME=value beside make's own variables.
ENVIRONMENT = {"IMGWANG_TASKS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "COMET_API_KEY", "HF_HUB_OFFLINE",
               "PYTHONPATH", "MPLBACKEND"}

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.S | re.M)  # indented too (inside a list item)
COMMENT = re.compile(r"<!--.*?-->", re.S)
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def prose(text: str) -> str:
    """The text links live in: no HTML comments (placeholders for later text), no fenced code."""
    return FENCE.sub("", COMMENT.sub("", text))


def code(text: str) -> list[str]:
    """Fenced blocks and inline code spans, outside HTML comments, with shell line continuations joined.
    Blocks fenced as ```text show a program's output, not commands: left out."""
    text = COMMENT.sub("", text)
    blocks = [m.group(0) for m in FENCE.finditer(text) if not re.match(r"\s*(```|~~~)text\b", m.group(0))]
    spans = [m.group(2) for m in CODE_SPAN.finditer(FENCE.sub("", text))]
    return [re.sub(r"\\\n", " ", chunk) for chunk in blocks + spans]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text lower-cased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(page: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(prose(page.read_text()))]


def relative_links():
    for page in PAGES:
        for target in links(page):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not checked here
                yield pytest.param(page, target, id=f"{page.relative_to(ROOT)}->{target}")


@pytest.mark.parametrize("page,target", list(relative_links()))
def test_relative_link_resolves(page, target):
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.relative_to(ROOT)}: link to {target}: {path} does not exist"
    if anchor:
        assert dest.suffix == ".md", f"{page.relative_to(ROOT)}: anchor #{anchor} into a file that is not markdown"
        assert anchor in anchors(dest), (f"{page.relative_to(ROOT)}: #{anchor} is no heading of "
                                         f"{dest.relative_to(ROOT)}; its anchors: {sorted(anchors(dest))}")


def test_slug_follows_github():
    assert slug("The leaderboard recipe (`make leaderboard`)") == "the-leaderboard-recipe-make-leaderboard"
    assert slug("Did pretraining help? (`make compare`)") == "did-pretraining-help-make-compare"
    assert slug("patchwork's patch size") == "patchworks-patch-size"
    assert slug("quadrant, transform: known shortcuts") == "quadrant-transform-known-shortcuts"
    assert slug("Two runs on one machine (bench_share)") == "two-runs-on-one-machine-bench_share"


def test_the_readme_stays_a_front_page():
    """What it is, two commands, a tour and links: reference and measurements live in docs/."""
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= 200, f"README.md has {lines} lines; move reference text into docs/ (at most 200)"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(ROOT / "README.md")}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs pages the README does not link: {orphans}"


def test_a_broken_anchor_is_caught(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# Title\n\n## Some `code` here\n\n```\n# not a heading\n```\n- item\n\n  ```bash\n  # nor this\n  ```\n")
    assert anchors(page) == {"title", "some-code-here"}


def makefile():
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*)\s*:", text, re.M))
    variables = set(re.findall(r"\b[A-Z][A-Z0-9_]*\b", text))
    return targets, variables


def make_commands(chunk: str) -> list[str]:
    """Each `make ...` command in a code chunk, up to the end of its line or a shell comment."""
    return [m.group(1) for m in re.finditer(r"(?:^|[\s'\"(;&|])make\s+([a-z][^\n#;&|]*)", chunk)]


def test_make_targets_and_variables_named_in_the_docs_exist():
    targets, variables = makefile()
    missing = []
    for page in PAGES:
        for chunk in code(page.read_text()):
            for command in make_commands(chunk):
                target = command.split()[0]
                if target not in targets:
                    missing.append(f"{page.name}: make {target}")
                for name in re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", command):
                    if name not in variables:
                        missing.append(f"{page.name}: make {target} ... {name}=")
    assert not missing, f"named in the docs, absent from the Makefile: {missing}"


def test_variables_given_as_name_value_exist():
    """`FORCE=1`, `SPLIT=dev`: a Make variable or a known environment variable (error texts aside)."""
    _, variables = makefile()
    unknown = []
    for page in PAGES:
        for chunk in code(page.read_text()):
            if chunk.lstrip().startswith("error:"):  # an error text quotes the value as the user wrote it
                continue
            for name in re.findall(r"(?<![\w$.-])([A-Z][A-Z0-9_]*)=", chunk):
                if name not in variables and name not in ENVIRONMENT:
                    unknown.append(f"{page.name}: {name}=")
    assert not unknown, f"neither a Make variable nor a known environment variable: {unknown}"


def test_p_parameters_named_in_the_docs_exist_in_the_lib():
    source = "\n".join(p.read_text() for p in (ROOT / "lib").rglob("*.py"))
    words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", source))
    unknown = []
    for page in PAGES:
        for chunk in code(page.read_text()):
            for name in re.findall(r"(?<![\w-])-p\s+([a-z_][a-z0-9_]*)", chunk):
                if name not in words:
                    unknown.append(f"{page.name}: -p {name}")
    assert not unknown, f"parameters named in the docs that no lib module mentions: {unknown}"
