"""``mpae-annotate import`` on a tiny folder: in a fresh interpreter without Qt or a display, and exit codes 0, 1
and 2 (the latter ones in this process, as a fresh interpreter costs seconds)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.main import main
from mpae_core.annotation import AnnotationProject, ImageStatus
from mpae_core.annotation.export import export_indices
from mpae_core.annotation.parts import ExportLabel

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")

REPO = Path(__file__).resolve().parents[1]
# the import runs in a fresh interpreter, which must not load Qt (servers have no display)
RUN = ("import sys; from app.main import main; rc = main(sys.argv[1:]); "
       "assert not [m for m in sys.modules if m.startswith('PySide6')], 'Qt was imported'; sys.exit(rc)")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("QT_QPA_PLATFORM", None)
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture
def folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (12, 8), (10, 20, 30)).save(photos / name)
    return photos


def coco_source(tmp_path, relpaths):
    indices = np.zeros((8, 12), np.uint8)
    indices[2:5, 3:9] = 1
    export_indices([(rel, indices) for rel in relpaths], [ExportLabel(1, "wing", (1, 2, 3))], tmp_path / "src",
                   formats="coco")
    return tmp_path / "src" / "coco.json"


def test_import_creates_the_project_and_exits_0(folder, tmp_path):
    source = coco_source(tmp_path, ["a.png", "b.png"])
    done = run_cli("import", str(source), "--into", str(folder), "--reviewed")
    assert done.returncode == 0, done.stderr
    assert f"Imported 2 images into {folder} from coco '{source}', 1 new label." in done.stdout
    assert "labels created: wing" in done.stdout
    project = AnnotationProject.open(folder, write=False)
    assert [u.name for u in project.parts.user_labels] == ["wing"]
    assert project.record("a.png").status is ImageStatus.REVIEWED
    assert project.parts.to_export(project.label_map("b.png"))[3, 4] == 1



def test_annotated_images_are_kept_without_replace(folder, tmp_path, capsys):
    source = coco_source(tmp_path, ["a.png", "b.png"])
    assert main(["import", str(source), "--into", str(folder)]) == 0
    capsys.readouterr()
    assert main(["import", str(source), "--into", str(folder)]) == 0  # both are annotated now: kept, no failure
    out = capsys.readouterr().out
    assert "2 kept as they were" in out and "kept 2 images" in out and "a.png, b.png" in out
    assert main(["import", str(source), "--into", str(folder), "--replace"]) == 0
    assert "Imported 2 images" in capsys.readouterr().out


def test_an_image_that_is_not_imported_exits_1_and_says_why(folder, tmp_path, capsys):
    source = coco_source(tmp_path, ["a.png", "zebra.png"])
    assert main(["import", str(source), "--into", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert "Imported 1 image" in out and "1 not imported" in out
    assert "not imported: 'coco.json' image 2 ('zebra.png'): 'zebra.png' is not an image of this project" in err


def test_usage_errors_and_a_locked_project_exit_2(folder, tmp_path, capsys):
    source = coco_source(tmp_path, ["a.png"])
    assert main(["import", str(tmp_path / "nothing"), "--into", str(folder)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["import", str(source), "--into", str(folder), "--format", "voc"]) == 2
    assert "is a file; the voc format is a folder" in capsys.readouterr().err
    assert main(["import", str(source), "--into", str(tmp_path / "no_such_folder")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["import", str(source)])  # --into is required
    assert exited.value.code == 2
    capsys.readouterr()
    holder = AnnotationProject.create(folder)  # another writer holds the lock
    try:
        assert main(["import", str(source), "--into", str(folder)]) == 2
    finally:
        holder.close()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Cannot import into") and "has it open" in err and "\n" not in err
    assert not json.loads((folder / ".mpae" / "project.json").read_text())["parts"]  # nothing changed
