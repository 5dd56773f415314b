"""Import into a project: labels matched by name, images by path or name, problems reported one image at a time,
a person's work kept unless replaced, read-only projects refused, and part tables without model slots."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mpae_core.annotation import AnnotationProject, ImageStatus, ModelFit, PartTable
from mpae_core.annotation.edits import EditLayer
from mpae_core.annotation.export import export_indices
from mpae_core.annotation.importers import import_annotations, open_source, plan_labels
from mpae_core.annotation.importers.matching import ImageMatcher
from mpae_core.annotation.importers.source import NameCandidate, SourceLabel
from mpae_core.annotation.labels import IGNORE_LABEL, UNSET, USER_LABEL_BASE
from mpae_core.annotation.parts import ExportLabel
from mpae_core.errors import MPAEError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


# ----- labels -------------------------------------------------------------------------------------------------------
def named_table() -> PartTable:
    table = PartTable.default(4)
    for slot, name in enumerate(["head", "wing", "tail", "leg"]):
        table.rename(slot, name)
    table.merge(3, 1)  # leg joins wing's group
    table.set_as_background(2)  # tail is exported as background
    table.add_user_label("stripe", (1, 2, 3))
    return table


def test_names_match_parts_merged_groups_user_labels_and_special_names():
    labels = [SourceLabel(i + 1, name, color) for i, (name, color) in enumerate([
        ("wing", None), ("Head", None), ("tail", None), ("leg", None), ("stripe", None), ("horn", (9, 8, 7)),
        ("background", None), ("__ignore__", None), ("Don't care", None), ("horn", None), ("bad\tname", None)])]
    plan = {(m.source.key, m.source.name): (m.kind, m.value) for m in plan_labels(labels, named_table())}
    assert plan == {
        (1, "wing"): ("part", 2), (2, "Head"): ("part", 1),  # case ignored when unambiguous
        (3, "tail"): ("part", 3),  # exported as background, still its own part
        (4, "leg"): ("part", 4),  # a merged part's own name: its slot, which shows and exports as 'wing'
        (5, "stripe"): ("user", USER_LABEL_BASE), (6, "horn"): ("new", None), (7, "background"): ("background", 0),
        (8, "__ignore__"): ("ignore", IGNORE_LABEL), (9, "Don't care"): ("ignore", IGNORE_LABEL),
        (10, "horn"): ("new", None), (11, "bad\tname"): ("new", None)}
    described = [m.describe() for m in plan_labels(labels[3:4], named_table())]
    assert described == ["'leg' → part 'leg (merged into wing)'"]


def test_without_a_table_every_name_becomes_a_user_label():
    labels = [SourceLabel(1, "wing"), SourceLabel(2, "ignore"), SourceLabel(3, "x", role="background")]
    assert [(m.kind, m.value) for m in plan_labels(labels, None)] == [("new", None), ("ignore", IGNORE_LABEL),
                                                                       ("background", 0)]


# ----- images -------------------------------------------------------------------------------------------------------
def test_images_match_by_path_then_by_unique_name():
    matcher = ImageMatcher(["a.jpg", "a.png", "sub/b.png", "sub/C.jpg", "other/b.png", "d.tif"])
    assert matcher.match([NameCandidate("sub/b.png")]).relpath == "sub/b.png"
    assert matcher.match([NameCandidate("./sub\\b.png")]).relpath == "sub/b.png"
    assert matcher.match([NameCandidate("SUB/c.jpg")]).relpath == "sub/C.jpg"  # case, when unambiguous
    assert matcher.match([NameCandidate("sub/b", stem=True)]).relpath == "sub/b.png"  # a mask's name
    assert matcher.match([NameCandidate("a.jpg", stem=True)]).relpath == "a.jpg"  # a.jpg.png: the full name
    assert matcher.match([NameCandidate("/data/x/d.tif")]).relpath == "d.tif"  # elsewhere: its file name
    ambiguous = matcher.match([NameCandidate("a", stem=True)])
    assert ambiguous.relpath is None and "'a.jpg', 'a.png'" in ambiguous.problem
    two = matcher.match([NameCandidate("x/b.png")]).problem  # two b.png, neither at x/
    assert "'x/b.png' could be any of the project's images 'other/b.png', 'sub/b.png'" in two
    missing = matcher.match([NameCandidate("zebra.jpg")])
    assert missing.relpath is None and "'zebra.jpg' is not an image of this project" in missing.problem
    # a unique later candidate wins over an ambiguous earlier one (labelme: JSON name, then imagePath)
    assert matcher.match([NameCandidate("a", stem=True), NameCandidate("../../photos/a.png")]).relpath == "a.png"


# ----- whole imports --------------------------------------------------------------------------------------------------
@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for name, (width, height) in {"a.jpg": (30, 20), "sub/b.png": (16, 12), "c.png": (10, 10)}.items():
        Image.new("RGB", (width, height), (50, 90, 120)).save(folder / name)
    rotated = Image.new("RGB", (24, 14), (10, 200, 10))  # stored 24×14, shown 14×24 (EXIF orientation 6)
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "rot.jpg", exif=exif)
    return folder


LABELS = [ExportLabel(1, "wing", (200, 0, 0)), ExportLabel(2, "horn", (0, 200, 0))]


def write_png_source(out, maps):
    """Our PNG layout for (relpath → export indices)."""
    export_indices(maps.items(), LABELS, out, formats="png")
    return out


def test_problems_are_reported_one_image_at_a_time_and_the_import_goes_on(photos, tmp_path):
    good = np.zeros((20, 30), np.uint8)
    good[2:8, 3:9] = 1
    maps = {"a.jpg": good, "sub/b.png": np.ones((13, 16), np.uint8),  # one row too many
            "zebra.jpg": np.zeros((4, 4), np.uint8), "rot.jpg": np.full((24, 14), 2, np.uint8)}
    source_dir = write_png_source(tmp_path / "src", maps)
    (source_dir / "masks" / "c.png").write_bytes(b"not a png")  # c.png's mask is broken
    project = AnnotationProject.create(photos, recursive=True)
    report = import_annotations(open_source(source_dir)[0], project)
    assert sorted(report.imported) == ["a.jpg", "rot.jpg"]  # rot.jpg's mask has the EXIF-oriented size
    reasons = {s.name.rsplit("/", 1)[-1].rstrip("'"): s.reason for s in report.failed}
    assert set(reasons) == {"b.png", "zebra.png", "c.png"}
    assert "is 16×13 but the photo is 16×12" in reasons["b.png"]
    assert "'zebra' is not an image of this project" in reasons["zebra.png"]
    assert "c.png' cannot be read" in reasons["c.png"]
    np.testing.assert_array_equal(project.parts.to_export(project.label_map("a.jpg")), good)
    assert project.record("a.jpg").status is ImageStatus.EDITED
    assert project.record("sub/b.png").status is ImageStatus.NEW
    project.close()
    reopened = AnnotationProject.open(photos, write=False)  # saved: labels first, then the edits and the index
    assert [u.name for u in reopened.parts.user_labels] == ["wing", "horn"]
    np.testing.assert_array_equal(reopened.parts.to_export(reopened.label_map("rot.jpg")), maps["rot.jpg"])


def test_existing_work_is_kept_unless_replace_and_reviewed_marks_the_import(photos, tmp_path):
    source_dir = write_png_source(tmp_path / "src", {"a.jpg": np.ones((20, 30), np.uint8),
                                                     "c.png": np.full((10, 10), 2, np.uint8)})
    project = AnnotationProject.create(photos)
    value = project.set_parts(PartTable.empty()) or project.parts.add_user_label("mine")
    project.add_image("a.jpg", (20, 30))
    project.edits("a.jpg").brush(5, 5, 3, value)
    mine = project.label_map("a.jpg").copy()
    project.add_image("c.png", (10, 10))
    project.edits("c.png").brush(2, 2, 1, value)
    project.mark_reviewed("c.png")
    report = import_annotations(open_source(source_dir)[0], project)
    assert report.imported == [] and {s.relpath for s in report.kept} == {"a.jpg", "c.png"} and not report.failed
    assert "already has edits" in report.kept[0].reason and "Replace" in report.kept[0].reason
    np.testing.assert_array_equal(project.label_map("a.jpg"), mine)
    assert project.record("c.png").status is ImageStatus.REVIEWED
    report = import_annotations(open_source(source_dir)[0], project, replace=True, reviewed=True)
    assert sorted(report.imported) == ["a.jpg", "c.png"]
    wing = project.parts.user_labels[1]
    assert wing.name == "wing" and (project.label_map("a.jpg") == wing.value).all()
    assert project.record("a.jpg").status is ImageStatus.REVIEWED
    layer = project.edits("a.jpg")
    assert layer.undo() and np.array_equal(project.label_map("a.jpg"), mine)  # one undo step brings the edits back
    project.close()


def test_a_read_only_project_refuses_the_import(photos, tmp_path):
    source_dir = write_png_source(tmp_path / "src", {"a.jpg": np.ones((20, 30), np.uint8)})
    holder = AnnotationProject.create(photos)
    second = AnnotationProject.open(photos)  # the lock is taken: read-only, with the reason
    assert second.read_only is not None
    with pytest.raises(MPAEError, match="Cannot import into .*another window or process"):
        import_annotations(open_source(source_dir)[0], second)
    assert second.parts is None and not second.record("a.jpg").has_edits
    holder.close()


def test_an_import_names_its_labels_in_a_project_with_parts(predicted_project, tmp_path):
    project = predicted_project
    table = named_table()
    project.set_parts(table)
    rel = project.relpaths()[0]
    height, width = project.record(rel).size
    indices = np.zeros((height, width), np.uint8)
    indices[:, : width // 4] = 1  # Wing
    indices[:, width // 4 : width // 2] = 2  # leg
    indices[: height // 2, width // 2 :] = 3  # stripe
    indices[height // 2 :, width // 2 :] = 4  # horn (new)
    indices[0, 0] = 255
    labels = [ExportLabel(1, "Wing", (0, 0, 1)), ExportLabel(2, "leg", (0, 0, 2)), ExportLabel(3, "stripe", (0, 0, 3)),
              ExportLabel(4, "horn", (7, 7, 7))]
    export_indices([(rel, indices)], labels, tmp_path / "src", formats="png")
    report = import_annotations(open_source(tmp_path / "src")[0], project)
    assert report.imported == [rel] and report.created == ["horn"]
    horn = project.parts.user_labels[1]
    assert horn.name == "horn" and horn.color == (7, 7, 7)
    values = project.label_map(rel)
    assert values[1, 0] == 2 and values[0, width // 4] == 4 and values[0, -1] == USER_LABEL_BASE
    assert values[-1, -1] == horn.value and values[0, 0] == IGNORE_LABEL
    exported = project.parts.to_export(values)
    names = {label.index: label.name for label in project.parts.export_labels()}
    assert names[int(exported[1, 0])] == names[int(exported[0, width // 4])] == "wing"  # leg is in wing's group
    assert project.record(rel).has_prediction and project.record(rel).status is ImageStatus.EDITED


# ----- the store: tables without slots, whole-layer edits -------------------------------------------------------
def test_a_table_without_slots_takes_the_first_models_and_keeps_its_labels(tmp_path):
    empty = PartTable.empty()
    value = empty.add_user_label("wing", (1, 2, 3))
    assert empty.num_parts == 0 and empty.export_labels()[0].name == "wing"
    assert PartTable.from_dict(json.loads(json.dumps(empty.to_dict()))) == empty
    np.testing.assert_array_equal(empty.to_export(np.array([[0, value, IGNORE_LABEL]], np.uint16)), [[0, 1, 255]])
    with pytest.raises(ValueError, match="value 1"):
        empty.to_export(np.array([[1]], np.uint16))
    model = PartTable.from_model_info(["head", "tail"])
    joined = empty.with_model_slots(model)
    assert joined.num_parts == 2 and [u.name for u in joined.user_labels] == ["wing"]
    assert joined.user_labels[0].value == value and joined.display_name(0) == "head"
    with pytest.raises(ValueError, match="has 2 model slots already"):
        joined.with_model_slots(model)

    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    project = AnnotationProject.create(tmp_path)
    project.set_parts(empty)
    assert project.model_fit(2, "m") is ModelFit.NO_TABLE  # the model will give the slots
    project.adopt_model("m", PartTable.from_model_info(["head", "tail"]))
    assert project.parts.num_parts == 2 and project.parts.user_labels[0].name == "wing"
    assert project.model_family == ["m"] and project.model_fit(2, "m") is ModelFit.FITS


def test_adopting_a_model_updates_the_edit_layers_in_use(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "x.png")
    project = AnnotationProject.create(tmp_path, parts=PartTable.empty())
    value = project.parts.add_user_label("wing")
    project.add_image("x.png", (6, 8))
    layer = project.edits("x.png")
    layer.brush(2, 2, 1, value)
    with pytest.raises(ValueError, match="Label value 1 does not exist"):
        layer.brush(4, 4, 1, 1)  # no slot yet
    project.adopt_model("m", PartTable.default(3))
    layer.brush(4, 4, 1, 1)  # the same layer takes slot values now
    assert project.label_map("x.png")[4, 4] == 1 and project.label_map("x.png")[2, 2] == value


def test_set_all_is_one_undo_step_and_checks_its_input():
    layer = EditLayer((3, 4), num_parts=2)
    layer.brush(1, 1, 0.5, 2)
    before = layer.data.copy()
    assert layer.set_all(np.full((3, 4), 1, np.uint16)) == 12
    assert (layer.data == 1).all() and layer.has_edits
    assert layer.undo() and np.array_equal(layer.data, before) and layer.data[0, 0] == UNSET
    assert layer.undo() and not layer.has_edits and not layer.can_undo  # then the brush
    with pytest.raises(ValueError, match="4×3"):
        layer.set_all(np.zeros((4, 3), np.uint16))
    with pytest.raises(ValueError, match="only 2 part slots"):
        layer.set_all(np.full((3, 4), 3, np.uint16))


def test_a_cancelled_import_keeps_what_it_imported(photos, tmp_path):
    from mpae_core.annotation.importers import ImportCancelled

    source_dir = write_png_source(tmp_path / "src", {"a.jpg": np.ones((20, 30), np.uint8),
                                                     "c.png": np.full((10, 10), 2, np.uint8)})
    project = AnnotationProject.create(photos)

    def stop_after_first(done, name):
        if done == 1:
            raise ImportCancelled

    report = import_annotations(open_source(source_dir)[0], project, on_image=stop_after_first)
    assert report.cancelled and report.imported == ["a.jpg"] and report.summary().endswith("(cancelled).")
    project.close()
    reopened = AnnotationProject.open(photos, write=False)  # saved when it stopped
    assert reopened.record("a.jpg").has_edits and not reopened.record("c.png").has_edits


def test_present_labels_of_an_image_whose_layer_left_the_cache(photos):
    """An import paints many images through a one-layer cache: each image's summary still sees its own edits."""
    project = AnnotationProject.create(photos, parts=PartTable.empty(), edit_cache_size=1)
    value = project.parts.add_user_label("wing")
    project.add_image("a.jpg", (20, 30))
    project.add_image("c.png", (10, 10))
    project.edits("a.jpg").brush(5, 5, 3, value)
    project.edits("c.png").brush(2, 2, 1, value)  # a.jpg's layer is written and leaves the cache
    assert project.record("a.jpg").user_present == (value,)
    assert project.record("c.png").user_present == (value,)
