"""Every `§x.y` reference in the repository resolves to a heading of docs/algorithms.md, and no file
points at a document that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALGORITHMS = ROOT / "docs" / "algorithms.md"
SCANNED = ["src", "tests", "docs", "configs", "benchmarks", "scripts", "README.md"]
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".toml"}
SECTION_REFERENCE = re.compile(r"§(\d+(?:\.\d+)*)")
SECTION_HEADING = re.compile(r"^#+ §(\d+(?:\.\d+)*)\s", re.MULTILINE)


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            files.extend(
                item for item in sorted(path.rglob("*")) if item.suffix in SUFFIXES and item.is_file()
            )
    return files


def section_references() -> dict[str, list[str]]:
    """Section number -> the 'file:line' places that cite it."""
    references: dict[str, list[str]] = {}
    for path in scanned_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in SECTION_REFERENCE.finditer(line):
                references.setdefault(match.group(1), []).append(f"{path.relative_to(ROOT)}:{number}")
    return references


def test_headings_are_numbered_like_the_citations() -> None:
    headings = SECTION_HEADING.findall(ALGORITHMS.read_text(encoding="utf-8"))
    assert len(headings) == len(set(headings)), "a section number is used by two headings"
    for required in ["0", "1", "1.5", "1.10", "5.2", "8.3", "9.3", "10", "11"]:
        assert required in headings


def test_every_section_reference_resolves_to_a_heading() -> None:
    headings = set(SECTION_HEADING.findall(ALGORITHMS.read_text(encoding="utf-8")))
    references = section_references()
    assert len(references) > 20  # the scan really finds the citations
    unresolved = {section: places for section, places in references.items() if section not in headings}
    assert not unresolved, f"references to sections that docs/algorithms.md lacks: {unresolved}"


def test_the_check_catches_a_missing_section() -> None:
    headings = set(SECTION_HEADING.findall("## §1 A\n### §1.5 B\n"))
    assert headings == {"1", "1.5"}
    assert [
        match.group(1)
        for match in SECTION_REFERENCE.finditer("see \N{SECTION SIGN}1.5 and \N{SECTION SIGN}12.3.")
    ] == ["1.5", "12.3"]
    assert "12.3" not in headings


def test_no_reference_to_documents_outside_the_repository() -> None:
    outside = re.compile(r"\b(?:ALGORITHMS|PEERS|ARCHITECTURE)\.md\b")
    this_file = Path(__file__).resolve()
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in scanned_files()
        if path.resolve() != this_file
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if outside.search(line)
    ]
    assert not offenders, offenders


def test_relative_markdown_links_exist() -> None:
    link = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")
    missing = [
        f"{path.relative_to(ROOT)} -> {target}"
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
        for target in link.findall(path.read_text(encoding="utf-8"))
        if not (path.parent / target).exists()
    ]
    assert not missing, missing
