"""Every file and docs section that src/ and the docs cite exists (docs/design.md: "The code cites
this page (`docs/design.md`, section name)"). A citation of a file that never existed
(``tests/test_model_padding.py``) or of a section that is no heading sends the reader nowhere.

- A file citation is a repository path under one of :data:`ROOTS` (``tests/test_x.py``,
  ``docs/dvc.md``, ``src/dynpath/io.py``); globs and placeholders (``tests/test_reliability_*``,
  ``profiles/NAME.yaml``) and files the user creates (git-ignored, like the cluster's secrets) are
  not checked.
- A section citation is ``docs/<page>.md, "Section"`` (or ``: "..."``, ``("...")``, wrapped over
  lines, ``#`` comment markers included): some heading of that page must contain the quoted text
  (``...`` stands for an elided part).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("tests", "docs", "src", "scripts", "components", "pipeline", "infra", ".ci")

#: Citations of what another branch is writing now (remove each entry once it has landed).
PENDING: dict[str, str] = {}

FILE = re.compile(rf"(?<![\w/.-])((?:{'|'.join(re.escape(r) for r in ROOTS)})/[\w./-]*\w)(\*?)")
SECTION = re.compile(r"(docs/[\w-]+\.md)[,:]?(?:\s|#)*\(?\"([^\"]+)\"")


def cited_texts() -> dict[str, str]:
    """Repository-relative path -> text, for the sources and pages whose citations are checked."""
    paths = [
        *REPO.glob("src/**/*.py"),
        *REPO.glob("components/*.py"),
        *REPO.glob("pipeline/*.py"),
        *REPO.glob("docs/**/*.md"),
        REPO / "README.md",
        REPO / "CONTRIBUTING.md",
    ]
    return {p.relative_to(REPO).as_posix(): p.read_text(encoding="utf-8") for p in sorted(paths)}


def _ignored(path: str) -> bool:
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0


def missing_files(texts: dict[str, str]) -> set[tuple[str, str]]:
    """(citing file, cited path) of every cited path that does not exist."""
    out = set()
    for where, text in texts.items():
        for m in FILE.finditer(text):
            path, glob = m.groups()
            if glob or re.search(r"\b[A-Z]{3,}\b", path) or path in PENDING:
                continue  # a glob or a placeholder (NAME, VARIANT), or pending
            if not (REPO / path).exists() and not _ignored(path):
                out.add((where, path))
    return out


def _in_heading(section: str, headings: list[str]) -> bool:
    parts = [p.strip() for p in section.split("...")]
    for heading in headings:
        at = 0
        for part in parts:
            at = heading.find(part, at)
            if at < 0:
                break
            at += len(part)
        else:
            return True
    return False


def missing_sections(texts: dict[str, str], pages: dict[str, str]) -> set[tuple[str, str]]:
    """(citing file, 'docs/page.md, "Section"') of every cited section that is no heading."""
    out = set()
    for where, text in texts.items():
        for m in SECTION.finditer(text):
            page, section = m.group(1), " ".join(m.group(2).split())
            cited = f'{page}, "{section}"'
            if page not in pages or cited in PENDING:
                continue  # a missing page is missing_files' finding
            headings = [
                line.lstrip("#").strip()
                for line in pages[page].splitlines()
                if line.startswith("#")
            ]
            if not _in_heading(section, headings):
                out.add((where, cited))
    return out


def test_every_cited_file_exists() -> None:
    missing = missing_files(cited_texts())
    assert not missing, "citations of files that do not exist:\n" + "\n".join(
        f"{where}: {path}" for where, path in sorted(missing)
    )


def test_every_cited_section_is_a_heading() -> None:
    texts = cited_texts()
    pages = {k: v for k, v in texts.items() if k.startswith("docs/")}
    missing = missing_sections(texts, pages)
    assert not missing, "citations of sections that are no heading:\n" + "\n".join(
        f"{where}: {cited}" for where, cited in sorted(missing)
    )


def test_the_checks_catch_the_planted_citations() -> None:
    """The two faults issue 25 found, planted: a test file that never existed and a quoted phrase
    that is no heading; a real heading, cited over two comment lines, passes."""
    planted = {
        "a.py": '"""checked by ``tests/test_model_padding.py``."""\n',
        "b.py": '# trainable (docs/design.md: "OOV -> trainable UNK")\n',
        "c.py": '# see docs/design.md,\n# "Selector gradient"\n',
        "d.py": '(docs/design.md ("The model ... read"))\n',
    }
    pages = {"docs/design.md": (REPO / "docs" / "design.md").read_text(encoding="utf-8")}
    assert missing_files(planted) == {("a.py", "tests/test_model_padding.py")}
    assert missing_sections(planted, pages) == {("b.py", 'docs/design.md, "OOV -> trainable UNK"')}
