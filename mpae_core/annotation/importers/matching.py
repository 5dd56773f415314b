"""Which project image an annotation belongs to, and which project label each source label becomes.

Images: the annotation's photo path when it lies in the project's folder; else each of its names (see
:class:`~.source.NameCandidate`) as a path relative to the folder, exactly, then ignoring case, then without the
extension for names that are stems; else by file name alone, when exactly one image has it. Several images for one
name is said as such, never guessed.

Labels, by name: a label the format marks as background or ignore; a project part's (root) name → its slot value
k + 1 (a merged group by its root's name; a part exported as background keeps that flag); a user label → its value;
the name a merged part keeps for unmerging → that part's slot (shown and exported as its group); background names
→ 0; ``ignore``/``__ignore__``/``255``/``don't care`` → :data:`IGNORE_LABEL`; the same names ignoring case when that
is unambiguous; anything else becomes a new user label (with the source's colour when it has one).
"""
from __future__ import annotations

import os
import posixpath
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from ..labels import IGNORE_LABEL
from ..parts import PartTable
from .source import BACKGROUND_ROLE, IGNORE_ROLE, Color, NameCandidate, SourceLabel

BACKGROUND_NAMES = frozenset({"background", "_background_", "__background__"})
IGNORE_NAMES = frozenset({"ignore", "__ignore__", "255", "don't care", "dont care", "void"})

# what a source label becomes
PART, USER, NEW, BACKGROUND, IGNORE = "part", "user", "new", "background", "ignore"


# ----- images -------------------------------------------------------------------------------------------------------
def _clean(name: str) -> str | None:
    """A name as a POSIX path relative to the images folder, or None when it leaves it (absolute, ``..``)."""
    text = name.replace("\\", "/").strip()
    if not text or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return None
    text = posixpath.normpath(text)
    return None if text == ".." or text.startswith("../") else text


def _without_suffix(relpath: str) -> str:
    path = PurePosixPath(relpath)
    return path.with_suffix("").as_posix() if path.suffix else relpath


@dataclass(frozen=True)
class ImageMatch:
    relpath: str | None
    problem: str | None = None  # why there is none: not found, or which images it could be


class ImageMatcher:
    """Finds project images for annotation names (built once from the project's image list)."""

    def __init__(self, relpaths: Iterable[str], images_folder: Path | None = None) -> None:
        self.images_folder = None if images_folder is None else Path(os.path.abspath(images_folder))
        self._exact: set[str] = set()
        self._tables: dict[str, dict[str, list[str]]] = {k: defaultdict(list) for k in (
            "folded", "stem", "stem_folded", "base", "base_stem")}
        for rel in relpaths:
            self._exact.add(rel)
            stem = _without_suffix(rel)
            base = PurePosixPath(rel).name
            for key, value in (("folded", rel.casefold()), ("stem", stem), ("stem_folded", stem.casefold()),
                               ("base", base.casefold()), ("base_stem", _without_suffix(base).casefold())):
                self._tables[key][value].append(rel)

    def match(self, names: Sequence[NameCandidate], path: Path | None = None) -> ImageMatch:
        if path is not None and self.images_folder is not None:
            try:
                rel = Path(os.path.abspath(path)).relative_to(self.images_folder).as_posix()
            except ValueError:
                rel = None
            if rel in self._exact:
                return ImageMatch(rel)
        ambiguous: list[str] = []
        for level in ("path", "base"):
            for candidate in names:
                clean = _clean(candidate.name)
                if clean is None and level == "path":
                    continue
                found = self._lookup(clean if clean is not None else candidate.name.replace("\\", "/"), candidate.stem,
                                     level)
                if len(found) == 1:
                    return ImageMatch(found[0])
                if len(found) > 1 and not ambiguous:
                    ambiguous = sorted(found)
        shown = names[0].name if names else "?"
        if ambiguous:
            listed = ", ".join(f"'{r}'" for r in ambiguous[:4]) + (" …" if len(ambiguous) > 4 else "")
            return ImageMatch(None, f"'{shown}' could be any of the project's images {listed}; name it by its path "
                                    "relative to the image folder in the source.")
        return ImageMatch(None, f"'{shown}' is not an image of this project (no image with that path or file name); "
                                "add the photo to the folder, or fix the name in the source.")

    def _lookup(self, name: str, stem: bool, level: str) -> list[str]:
        if level == "path":
            if name in self._exact:
                return [name]
            found = self._tables["folded"].get(name.casefold(), [])
            if not found and stem:
                found = self._tables["stem"].get(name, []) or self._tables["stem_folded"].get(name.casefold(), [])
            return found
        base = PurePosixPath(name).name.casefold()
        found = self._tables["base"].get(base, [])
        if not found and stem:
            found = self._tables["base_stem"].get(base, [])
        return found


# ----- labels -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelMatch:
    """What one source label becomes: ``kind`` PART, USER, NEW, BACKGROUND or IGNORE, ``value`` its label value
    (None for a NEW label until it is created), ``target`` the project's name for it."""

    source: SourceLabel
    kind: str
    value: int | None
    target: str

    def describe(self) -> str:
        name = self.source.name
        return {PART: f"'{name}' → part '{self.target}'", USER: f"'{name}' → label '{self.target}'",
                NEW: f"'{name}' → new label", BACKGROUND: f"'{name}' → background",
                IGNORE: f"'{name}' → don't care"}[self.kind]


def clean_label_name(name: str, key: int) -> str:
    """A source name the part table accepts: no line breaks or tabs, not empty."""
    text = " ".join(str(name).replace("\t", " ").splitlines()).strip()
    return text or f"label_{key}"


def plan_labels(labels: Sequence[SourceLabel], parts: PartTable | None) -> list[LabelMatch]:
    """What each source label becomes in a project with table ``parts`` (None: no table yet); changes nothing."""
    exact: dict[str, tuple[str, int]] = {}
    if parts is not None:
        members = [slot for slot in parts if slot.merged_into is not None]
        for slot in members:  # a merged part's own name: its slot, shown and exported as its group
            exact[slot.name] = (PART, slot.slot + 1)
        for slot in parts:  # root names and user labels win over the names merged parts keep for unmerging
            if slot.merged_into is None:
                exact[slot.name] = (PART, slot.slot + 1)
        for user in parts.user_labels:
            exact[user.name] = (USER, user.value)
    folded: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
    for name, (kind, value) in exact.items():
        folded[name.casefold()].append((name, kind, value))
    planned: list[LabelMatch] = []
    new_names: dict[str, LabelMatch] = {}
    for label in labels:
        name = clean_label_name(label.name, label.key)
        low = name.casefold()
        if label.role == BACKGROUND_ROLE:
            planned.append(LabelMatch(label, BACKGROUND, 0, "background"))
        elif label.role == IGNORE_ROLE:
            planned.append(LabelMatch(label, IGNORE, IGNORE_LABEL, "don't care"))
        elif name in exact:
            kind, value = exact[name]
            planned.append(LabelMatch(label, kind, value, _shown(parts, value, name)))
        elif low in BACKGROUND_NAMES:
            planned.append(LabelMatch(label, BACKGROUND, 0, "background"))
        elif low in IGNORE_NAMES:
            planned.append(LabelMatch(label, IGNORE, IGNORE_LABEL, "don't care"))
        elif len(folded.get(low, [])) == 1:
            target, kind, value = folded[low][0]
            planned.append(LabelMatch(label, kind, value, _shown(parts, value, target)))
        elif name in new_names:  # a name the source repeats becomes one label
            planned.append(LabelMatch(label, NEW, None, name))
        else:
            new_names[name] = LabelMatch(label, NEW, None, name)
            planned.append(new_names[name])
    return planned


def _shown(parts: PartTable | None, value: int, name: str) -> str:
    """A project label's name as the person sees it: a merged part names its group too."""
    if parts is not None and 0 < value <= parts.num_parts and parts.root(value - 1) != value - 1:
        return f"{name} (merged into {parts.display_name(value - 1)})"
    return name


def apply_plan(planned: Sequence[LabelMatch], parts: PartTable) -> tuple[list[LabelMatch], list[str]]:
    """Create the NEW labels in ``parts`` (in source order, with the source's colours); returns the plan with every
    value set, and the names created."""
    created: dict[str, int] = {}
    done = []
    for match in planned:
        if match.kind != NEW:
            done.append(match)
            continue
        if match.target not in created:
            color: Color | None = match.source.color
            created[match.target] = parts.add_user_label(match.target, color)
        done.append(LabelMatch(match.source, NEW, created[match.target], match.target))
    return done, list(created)
