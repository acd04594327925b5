"""Loads SOP YAML files and the content catalog into typed objects, reporting problems with file:line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from knowledge.yaml_lines import YamlError, line_of, load_with_lines
from sop_graphs.shop_data import IntentBook, Persona, ProfileVocabulary
from sop_graphs.spec import Campaign, Catalog, Group, Material, SopSpec, TagGroup

CATALOG_FILES = {"materials.yaml": "materials", "campaigns.yaml": "campaigns", "groups.yaml": "groups",
                 "tags.yaml": "tag_groups"}
_CATALOG_TYPES = {"materials": Material, "campaigns": Campaign, "groups": Group, "tag_groups": TagGroup}
# shop knowledge as data: each file is one document (not a mapping of id -> entry)
SHOP_FILES: dict[str, tuple[str, Any]] = {"intents.yaml": ("intents", IntentBook), "profile.yaml": ("profile", ProfileVocabulary),
                                          "persona.yaml": ("persona", Persona), "replies.yaml": ("replies", dict[str, str]),
                                          "spec_words.yaml": ("spec_words", dict[str, list[str]]),
                                          "typos.yaml": ("typos", dict[str, str])}


@dataclass(frozen=True, order=True)
class Problem:
    """One validation problem, printable as ``file:line: [where] reason``."""

    file: str
    line: int
    where: str
    reason: str
    column: int | None = None  # 1-based; known for malformed YAML

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: [{self.where}] {self.reason}"


@dataclass
class SopSource:
    """Where an SOP came from, so later checks can point at lines."""

    file: str
    lines: dict[tuple[str | int, ...], int]

    def line(self, *loc: str | int) -> int:
        return line_of(self.lines, loc)


@dataclass
class Library:
    """The SOPs and the catalog they reference."""

    sops: dict[str, SopSpec] = field(default_factory=dict)
    catalog: Catalog = field(default_factory=Catalog)
    sources: dict[str, SopSource] = field(default_factory=dict)

    @cached_property
    def tag_listeners(self) -> frozenset[tuple[str, str]]:
        """(event, tag) pairs some SOP reacts to: tag_added/tag_removed triggers and 'exit' on a tag."""
        pairs = {(t.on, t.tag) for s in self.sops.values() for t in s.triggers if getattr(t, "tag", None)}
        pairs |= {("exit", c.tag) for s in self.sops.values() for c in s.exit.when if c.tag}
        return frozenset(pairs)


def _pydantic_problems(exc: ValidationError, file: str, lines: dict[Any, int], where: str,
                       prefix: tuple[str | int, ...] = ()) -> list[Problem]:
    problems = []
    for error in exc.errors():
        loc = (*prefix, *error["loc"])
        field_path = ".".join(str(p) for p in error["loc"]) or "(document)"
        problems.append(Problem(file, line_of(lines, loc), where, f"{field_path}: {error['msg']}"))
    return problems


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    """'sop_id' or 'sop_id/step_id' for an error location, as best as the raw data says."""
    sop_id = data.get("id", "?") if isinstance(data, dict) else "?"
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int) and isinstance(data, dict):
        steps = data.get("steps") or []
        if loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
            return f"{sop_id}/{steps[loc[1]].get('id', f'step#{loc[1] + 1}')}"
    return str(sop_id)


def _pointed(error: Any) -> tuple[Any, ...]:
    """Where an error is in the file: an unknown step ``kind`` is at the ``kind:`` line, not the step's first."""
    loc = tuple(error["loc"])
    return (*loc, "kind") if error["type"] == "union_tag_invalid" else loc


def load_sop_file(path: Path) -> tuple[SopSpec | None, SopSource, list[Problem]]:
    """Parse one SOP file; on failure return every pydantic problem with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, SopSource(str(path), {}), [Problem(str(path), 1, path.stem, f"cannot read file: {exc}")]
    return load_sop_text(text, str(path), path.stem)


def load_sop_text(text: str, file: str, name: str = "sop") -> tuple[SopSpec | None, SopSource, list[Problem]]:
    """Parse SOP YAML held in memory (e.g. posted by an operator); problems point at ``file``:line."""
    try:
        data, lines = load_with_lines(text)
    except YamlError as exc:
        return None, SopSource(file, {}), [Problem(file, exc.line, name, f"malformed YAML: {exc.reason}", exc.column)]
    source = SopSource(file, lines)
    if not isinstance(data, dict):
        return None, source, [Problem(file, 1, name, "an SOP file holds one mapping with id, name, steps…")]
    try:
        return SopSpec.model_validate(data), source, []
    except ValidationError as exc:
        problems = [
            Problem(file, line_of(lines, _pointed(e)), _where(data, tuple(e["loc"])),
                    f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: {e['msg']}")
            for e in exc.errors()
        ]
        return None, source, problems


def load_catalog(directory: Path) -> tuple[Catalog, list[Problem]]:
    """Read materials/campaigns/groups/tags YAML from ``directory`` (each optional)."""
    parts: dict[str, dict[str, Any]] = {}
    problems: list[Problem] = []
    files: dict[str, tuple[str, Any]] = {name: (key, dict[str, _CATALOG_TYPES[key]])  # type: ignore[misc]
                                         for name, key in CATALOG_FILES.items()} | SHOP_FILES
    for filename, (key, kind) in files.items():
        path = directory / filename
        if not path.exists():
            continue
        try:
            data, lines = load_with_lines(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), 1, key, f"cannot read file: {exc}"))
            continue
        except YamlError as exc:
            problems.append(Problem(str(path), exc.line, key, f"malformed YAML: {exc.reason}"))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(str(path), 1, key, "expected a mapping"))
            continue
        adapter = TypeAdapter(kind)
        try:
            parts[key] = adapter.validate_python(data)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, str(path), lines, key))
    return Catalog(**parts), problems


def sop_files(paths: Iterable[Path]) -> list[Path]:
    """SOP YAML files named by ``paths`` (files, or directories searched for ``sops/*.yaml``/``*.yaml``)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            base = path / "sops" if (path / "sops").is_dir() else path
            found.extend(p for p in sorted(base.glob("*.y*ml")) if p.name not in {*CATALOG_FILES, *SHOP_FILES})
        else:
            found.append(path)
    return found


def with_sop(library: Library, spec: SopSpec, source: SopSource) -> Library:
    """A copy of ``library`` in which ``spec`` replaces (or joins) the SOP of the same id."""
    return Library(sops={**library.sops, spec.id: spec}, catalog=library.catalog,
                   sources={**library.sources, spec.id: source})


def load_library(paths: Iterable[Path], catalog_dir: Path) -> tuple[Library, list[Problem]]:
    """Load the catalog and every SOP; semantic validation is :func:`sop_graphs.validator.validate`."""
    catalog, problems = load_catalog(catalog_dir)
    library = Library(catalog=catalog)
    for path in sop_files(paths):
        if not path.exists():
            problems.append(Problem(str(path), 1, path.stem, "no such file"))
            continue
        spec, source, file_problems = load_sop_file(path)
        problems.extend(file_problems)
        if spec is None:
            continue
        if spec.id in library.sops:
            first = library.sources[spec.id]
            problems.append(Problem(source.file, source.line("id"), spec.id,
                                    f"duplicate SOP id, first defined in {first.file}:{first.line('id')}"))
            continue
        library.sops[spec.id] = spec
        library.sources[spec.id] = source
    return library, problems
