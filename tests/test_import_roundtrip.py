"""Export → import into a fresh project (same photos, no model) → export again gives the same files, per format.

The project has what an annotator makes: model parts, a merged group, a part exported as background, a user label,
don't-care pixels and holes. What a format cannot carry is said and left out of the comparison, precisely:

* PNG label maps: ``labels.json`` lists each label's model ``slots``; a project without a model has none, so it is
  compared without that key (every other byte of it, ``labels.txt`` and every mask are compared as they are).
* COCO, CVAT, YOLO: no "don't care" (those pixels come back as background, as the exports wrote them); COCO and YOLO
  keep no colours (nothing of theirs depends on them). Their files are compared whole.
* labelme: no colours and no label list (a label painted nowhere is not in any file, so it does not come back);
  ``__ignore__`` shapes bring "don't care" back. Files compared whole.
* VOC: keeps names, colours and "ignore". Files compared whole.
* YOLO ``images/`` holds links to the photos of each project: compared by the bytes they lead to.

Exports are stamped with ``SOURCE_DATE_EPOCH`` so that COCO's ``date_created`` and CVAT's ``dumped`` are the same.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mpae_core.annotation import AnnotationProject
from mpae_core.annotation.export import export_annotations
from mpae_core.annotation.importers import import_annotations, open_source
from mpae_core.annotation.labels import EXPORT_IGNORE, IGNORE_LABEL, USER_LABEL_BASE

from conftest import make_predicted_project

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

ALL_FORMATS = "png,coco,yolo,labelme,cvat,voc"
# format → (where the export put it, what of the export folder is that format's)
LOCATIONS = {"png": ("", ("masks/", "labels.txt", "labels.json")), "coco": ("coco.json", ("coco.json",)),
             "yolo": ("yolo", ("yolo/",)), "labelme": ("labelme", ("labelme/",)), "cvat": ("cvat", ("cvat/",)),
             "voc": ("voc", ("voc/",))}
CARRIES_IGNORE = {"png": True, "voc": True, "labelme": True, "coco": False, "cvat": False, "yolo": False}


def annotate(project: AnnotationProject) -> None:
    """Parts renamed and merged, one exported as background, a user label, don't care, holes, one untouched image."""
    parts = project.parts
    parts.rename(0, "head")
    parts.merge(1, 0)  # part 2 exports as 'head'
    parts.set_as_background(2)  # part 3's pixels export as background
    stripe = parts.add_user_label("stripe", (10, 20, 30))
    parts.add_user_label("unused", (0, 0, 0))  # a label painted nowhere keeps its index
    relpaths = project.relpaths()
    ring = project.edits(relpaths[0])
    ring.brush(60, 45, 22, stripe)
    ring.brush(60, 45, 7, 0)  # a hole of background in the stripe
    ring.brush(60, 45, 2, 4)  # an island of part 4 in the hole
    ring.brush(6, 6, 5, IGNORE_LABEL)
    project.edits(relpaths[1]).brush(100, 70, 12, 4)
    project.edits(relpaths[2]).brush(20, 80, 9, IGNORE_LABEL)
    project.mark_reviewed(relpaths[3])
    project.save()


def digests(folder: Path, wanted: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every file of ``folder`` under the wanted prefixes (links read through)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and any(rel == w or (w.endswith("/") and rel.startswith(w)) for w in wanted):
            data = path.read_bytes()
            if rel == "labels.json":
                table = json.loads(data)
                data = json.dumps({k: {f: v for f, v in e.items() if f != "slots"} for k, e in table.items()}).encode()
            found[rel] = hashlib.sha256(data).hexdigest()
    return found


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The annotated project and its export in every format (photos in a/photos, export in a/out)."""
    root = tmp_path_factory.mktemp("roundtrip")
    project = make_predicted_project(root / "a" / "photos")
    annotate(project)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", "1700000000")
        export_annotations(project, None, root / "a" / "out", formats=ALL_FORMATS)
        export_annotations(project, None, root / "a" / "polygons", formats="coco", coco_style="polygons")
    expected = {rel: project.parts.to_export(labels) for rel, labels in project.iter_label_maps()}
    project.close()
    return root, expected


def fresh_project(root: Path, name: str) -> AnnotationProject:
    """The same photos in another folder, laid out like the original (so relative photo paths agree), no model."""
    shutil.copytree(root / "a" / "photos", root / name / "photos", ignore=shutil.ignore_patterns(".mpae"))
    return AnnotationProject.create(root / name / "photos", edit_cache_size=1)


@pytest.mark.parametrize("fmt,style", [(f, "rle") for f in LOCATIONS] + [("coco", "polygons")])
def test_export_import_export_gives_the_same_files(original, monkeypatch, fmt, style):
    root, expected = original
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    name = f"{fmt}_{style}"
    project = fresh_project(root, name)
    export_dir = root / "a" / ("polygons" if style == "polygons" else "out")
    source, _ = open_source(export_dir / LOCATIONS[fmt][0], fmt)
    report = import_annotations(source, project)
    assert not report.skipped and sorted(report.imported) == sorted(expected)
    assert project.parts.num_parts == 0  # user labels only: no model
    names = ["head", "part_04", "stripe"] + ([] if fmt == "labelme" else ["unused"])  # labelme lists no labels
    assert [label.name for label in project.parts.export_labels()] == names

    # what came in: every pixel, as exported (don't care only where the format carries it)
    for rel, indices in expected.items():
        assert project.record(rel).has_edits and not project.record(rel).has_prediction
        wanted = indices if CARRIES_IGNORE[fmt] else np.where(indices == EXPORT_IGNORE, 0, indices)
        np.testing.assert_array_equal(project.parts.to_export(project.label_map(rel)), wanted)

    export_annotations(project, None, root / name / "out", formats=fmt, coco_style=style)
    project.close()
    before = digests(export_dir, LOCATIONS[fmt][1])
    after = digests(root / name / "out", LOCATIONS[fmt][1])
    assert before and after == before


def test_colours_come_back_from_the_formats_that_keep_them(original, tmp_path):
    root, _ = original
    for fmt, location in (("png", ""), ("voc", "voc"), ("cvat", "cvat")):
        project = fresh_project(root, f"colours_{fmt}")
        import_annotations(open_source(root / "a" / "out" / location, fmt)[0], project)
        stripe = project.parts.user_labels[2]
        assert stripe.name == "stripe"
        assert stripe.color == (10, 20, 30)
        project.close()


def test_the_fresh_project_takes_the_first_models_slots_and_keeps_the_import(original):
    """An imported project (no slots) predicted later: the model's slots join, the imported labels stay."""
    from mpae_core.inference import PartPrediction
    import torch

    root, expected = original
    project = fresh_project(root, "later_model")
    import_annotations(open_source(root / "a" / "out", "png")[0], project)
    rel = sorted(expected)[0]
    before = project.label_map(rel)
    height, width = before.shape
    project.set_prediction(rel, PartPrediction.from_logits(torch.randn(5, 6, 6), (height, width)))
    assert project.parts.num_parts == 4 and project.parts.user_labels[0].value == USER_LABEL_BASE
    np.testing.assert_array_equal(project.label_map(rel), before)  # the import covers every pixel
    project.edits(rel).brush(5, 5, 2, 3)  # a slot value can be painted now
    project.close()
