"""Export folders: beside the photos by default, marked so listings skip them, and an earlier export's leftovers
removed on overwrite, never anyone else's files."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mpae_core.annotation.export import export_annotations
from mpae_core.annotation.export_folder import (FILE_LIST, MARKER, ExportRecorder, FolderState, check_export_folder,
                                                default_export_folder, export_folder_problem, read_file_list,
                                                read_marker)
from mpae_core.annotation.parts import PartTable
from mpae_core.batch.config import CACHE_DIR
from mpae_core.images import list_images
from mpae_core.output_markers import BATCH_CACHE_DIR

TABLE = PartTable.from_model_info([f"part {k}" for k in range(3)], [(200, 10 * k, 30) for k in range(3)])


def _maps(names: list[str]) -> list[tuple[str, np.ndarray]]:
    return [(name, np.full((6, 8), 1 + i % 3, dtype=np.int32)) for i, name in enumerate(names)]


def _export(out: Path, names: list[str]) -> tuple[list[Path], object]:
    recorder = ExportRecorder(out, source="photos")
    recorder.begin()
    result = export_annotations(_maps(names), TABLE, out)
    return recorder.finish(complete=True, images=result.images, keep=result.files), result


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_the_default_folder_lies_beside_the_photos(tmp_path):
    assert default_export_folder(tmp_path / "birds") == tmp_path / "birds-labels"
    assert default_export_folder(Path("/")) == Path("/labels")
    assert export_folder_problem(tmp_path / "birds", tmp_path / "birds").startswith(
        f"The output folder '{tmp_path / 'birds'}' is the image folder itself; choose another one, e.g. "
        f"'{tmp_path / 'birds-labels'}'")
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in export_folder_problem(tmp_path / "file")
    assert export_folder_problem(tmp_path / "birds-labels", tmp_path / "birds") is None


def test_a_second_export_with_fewer_images_removes_the_first_ones_leftovers_only(tmp_path):
    out = tmp_path / "labels"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # there before any export
    removed, _ = _export(out, ["a.jpg", "b.jpg", "sub/c.jpg"])
    assert removed == []
    assert _files(out) == {"notes.txt", "labels.txt", "labels.json", "coco.json", "masks/a.png", "masks/b.png",
                           "masks/sub/c.png", MARKER, FILE_LIST}
    assert set(read_file_list(out)) == _files(out) - {"notes.txt", MARKER, FILE_LIST}
    marker = read_marker(out)
    assert (marker.images, marker.complete, marker.tool, marker.source) == (3, True, "app", "photos")
    (out / "masks" / "mine.png").write_bytes(b"painted by hand")  # put there between the exports

    removed, result = _export(out, ["a.jpg"])
    assert sorted(p.relative_to(out).as_posix() for p in removed) == ["masks/b.png", "masks/sub/c.png"]
    assert _files(out) == {"notes.txt", "labels.txt", "labels.json", "coco.json", "masks/a.png", "masks/mine.png",
                           MARKER, FILE_LIST}
    assert not (out / "masks" / "sub").exists()  # emptied by the removal
    assert len(json.loads((out / "coco.json").read_text())["images"]) == 1 == read_marker(out).images


def test_an_unfinished_export_deletes_nothing_and_keeps_track_of_what_it_wrote(tmp_path):
    out = tmp_path / "labels"
    _export(out, ["a.jpg", "b.jpg"])
    recorder = ExportRecorder(out)
    recorder.begin()
    assert read_marker(out).complete is False  # marked at once: a crash leaves an unfinished export
    with pytest.raises(KeyboardInterrupt):
        def stop(relpath):
            if relpath == "new.jpg":
                raise KeyboardInterrupt
        export_annotations(_maps(["a.jpg", "new.jpg"]), TABLE, out, on_image=stop)
    assert recorder.finish(complete=False, images=1) == []
    assert {"masks/a.png", "masks/b.png", "masks/new.png"} <= set(read_file_list(out))
    assert read_marker(out).complete is False and "did not finish" in read_marker(out).describe()
    removed, _ = _export(out, ["a.jpg"])  # the next complete export removes the unfinished one's extras too
    assert sorted(p.name for p in removed) == ["b.png", "new.png"]


def test_a_damaged_or_hostile_file_list_never_reaches_outside_the_folder(tmp_path):
    out = tmp_path / "labels"
    out.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    (out / "sub").mkdir()
    (out / "sub" / "x.txt").write_text("a folder entry is never removed as a file")
    lines = [json.dumps(str(outside)), json.dumps("../precious.txt"), json.dumps("sub"), "not json",
             json.dumps(MARKER), json.dumps("C:stuff")]
    (out / FILE_LIST).write_text("\n".join(lines) + "\n")
    (out / MARKER).write_text("{damaged")
    assert read_marker(out).complete is False
    assert read_file_list(out) == ["sub"]
    _export(out, ["a.jpg"])
    assert outside.read_text() == "keep me" and (out / "sub" / "x.txt").is_file()


def test_what_a_folder_holds_decides_the_question(tmp_path):
    assert check_export_folder(tmp_path / "missing").state is FolderState.NEW
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not check_export_folder(empty).needs_answer
    other = tmp_path / "other"
    (other / "photos").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt"):
        (other / name).write_text("x")
    check = check_export_folder(other)
    assert check.state is FolderState.OTHER and check.needs_answer
    assert check.question() == f"'{other}' is not empty: it holds a.txt, b.txt, c.txt and 1 more."
    assert "nothing else is deleted" in check.consequence()
    out = tmp_path / "labels"
    _export(out, ["a.jpg", "b.jpg"])
    check = check_export_folder(out)
    assert check.state is FolderState.EXPORT
    assert check.question().startswith(f"'{out}' holds an earlier export of 2 images (")
    assert "Files that no export wrote are kept" in check.consequence()


def test_export_folders_are_not_listed_as_photos(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 6)).save(photos / "bird.jpg")
    _export(photos / "export", ["bird.jpg"])  # an export inside the photo folder, as the app once defaulted to
    assert [p.relative_to(photos).as_posix() for p in list_images(photos, recursive=True)] == ["bird.jpg"]
    assert BATCH_CACHE_DIR == CACHE_DIR


def test_exported_files_have_normal_permissions(tmp_path):
    if os.name != "posix":
        pytest.skip("file modes are POSIX")
    old = os.umask(0o022)
    try:
        _export(tmp_path / "labels", ["a.jpg"])
    finally:
        os.umask(old)
    modes = {name: (tmp_path / "labels" / name).stat().st_mode & 0o777 for name in _files(tmp_path / "labels")}
    assert set(modes.values()) == {0o644}, modes


def test_an_annotation_project_in_the_export_folder_is_never_recorded_nor_deleted(tmp_path):
    """A batch run's OUT holds its project (.mpae); exporting there from the app while it autosaves must never put
    the project's files on the export list, so a later, smaller export cannot delete a person's edits."""
    out = tmp_path / "labels"
    project_files = [out / ".mpae" / "project.json", out / ".mpae" / "edits" / "b.png",
                     out / "sub" / ".mpae" / "edits" / "c.png"]
    recorder = ExportRecorder(out, source="photos")
    recorder.begin()
    result = export_annotations(_maps(["a.jpg", "b.jpg"]), TABLE, out)
    for path in project_files:  # written while the export runs (the app's autosave)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("a person's work")
    recorder.finish(complete=True, images=result.images, keep=[*result.files, *project_files])
    assert not [name for name in read_file_list(out) if ".mpae" in name.split("/")]
    (out / FILE_LIST).write_text("".join(json.dumps(p.relative_to(out).as_posix()) + "\n" for p in project_files))
    _export(out, ["a.jpg"])  # a complete export that replaces a (damaged) list naming the project's files
    assert all(path.read_text() == "a person's work" for path in project_files)
