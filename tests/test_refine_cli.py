"""``python -m training.run refine`` on a tiny project: its outputs, part identity, stop/cancel and bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mpae_core.annotation import AnnotationProject
from mpae_core.checkpoint import load_checkpoint, save_checkpoint
from mpae_core.images import load_image
from mpae_core.inference import Predictor
from refine_helpers import K, predicted_project, tiny_checkpoint, tree_digest
from training.refine import loop as refine_loop
from training.run import main


def refine(project: AnnotationProject, out: Path, *extra: str) -> int:
    return main(["refine", "--project", str(project.images_folder), "--out", str(out), "--steps", "2",
                 "--batch-size", "4", "--corrected-per-step", "2", "--device", "cpu", "--log-every", "1", *extra])


@pytest.fixture
def corrected(tmp_path) -> AnnotationProject:
    project = predicted_project(tmp_path)
    project.parts.rename(0, "head")
    project.parts.recolor(0, "#123456")
    project.parts.merge(2, 1)
    project.parts.set_as_background(3)
    project.edits("img_0.png").brush(20, 18, 8, 1)  # paint slot 0 ("head")
    project.mark_reviewed("img_1.png")
    project.save()
    return project


def test_refine_writes_a_new_model_and_never_touches_the_project(corrected, tmp_path, capsys):
    before = tree_digest(corrected.project_dir)
    assert refine(corrected, tmp_path / "run") == 0
    assert "new model:" in capsys.readouterr().out

    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["max_steps"] == 2 and config["augment"] == "colour+geometry"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]  # logged from the first step, as `train` logs
    for key in ("total", "supervised", "mpae_total", "semantic", "foreground_presence", "lr", "images_per_s"):
        assert np.isfinite(train[0][key])
    assert records[-1]["kind"] == "eval" and 0 <= records[-1]["corrected_agreement"] <= 100

    result = json.loads((run / "result.json").read_text())
    model_path = Path(result["checkpoint"])
    assert model_path.parent == corrected.project_dir / "models" and model_path.is_file()
    assert model_path.read_bytes() == (run / "refined.safetensors").read_bytes()
    assert result["corrected_images"] == 2 and result["reviewed_images"] == 1 and result["steps"] == 2

    after = tree_digest(corrected.project_dir)
    assert {k: after[k] for k in before} == before  # index, predictions and edits byte for byte
    assert all(k.startswith(("models/", "cache/")) for k in set(after) - set(before))

    refined = load_checkpoint(model_path)  # the embedded backbone travels along: no fallback needed
    parts = corrected.parts
    assert refined.info.part_names == [parts[k].name for k in range(K)] and refined.info.part_names[0] == "head"
    assert refined.info.part_colors[0] == (0x12, 0x34, 0x56)
    assert refined.info.provenance["refined_from"] == str(corrected.checkpoint)

    assert refine(corrected, tmp_path / "run2", "--name", Path(result["checkpoint"]).stem) == 0  # never overwrites
    assert len(list((corrected.project_dir / "models").glob("*.safetensors"))) == 2
    assert json.loads((tmp_path / "run2" / "result.json").read_text())["features_read_from_disk"] > 0


def test_slot_k_keeps_its_part_and_follows_the_correction(tmp_path):
    """A reviewed image painted 'object = slot 1, rest = background': after refinement slot 1 still is the part the
    person named (names, merges and ignores are the project's, unchanged) and covers the painted object."""
    project = predicted_project(tmp_path, count=4)
    project.parts.rename(1, "object")
    project.parts.merge(3, 2)
    table_before = project.parts.to_dict()
    layer = project.edits("img_0.png")
    height, width = layer.size
    wanted = np.zeros((height, width), dtype=np.uint16)
    wanted[8:28, 10:30] = 2  # slot 1 where the generated object is
    with layer.group():
        for y in range(height):
            for x0, x1, value in ((0, 9, 0), (10, 29, int(wanted[y, 10])), (30, width - 1, 0)):
                layer.stroke(x0, y, x1, y, 0.5, value)
    assert (layer.composed(project.prediction("img_0.png").label_map()) == wanted).all()
    project.mark_reviewed("img_0.png")
    project.save()

    # One image fitted in 15 steps: without the random transforms, which make the fit slower (they are for the
    # other images, test_refine_augment.py); what is checked here is the slot's identity.
    assert refine(project, tmp_path / "run", "--steps", "15", "--lr", "2e-3", "--supervised-weight", "10",
                  "--augment", "none") == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["agreement_after"] > max(result["agreement_before"], 90.0)
    refined = load_checkpoint(result["checkpoint"])
    labels = Predictor(refined, "cpu").predict_one(load_image(project.image_path("img_0.png"))).label_map()
    assert np.mean(labels[8:28, 10:30] == 2) > 0.8 and np.mean(labels[wanted == 0] == 0) > 0.8
    assert refined.info.part_names[1] == "object"
    assert AnnotationProject.open(project.images_folder).parts.to_dict() == table_before


def test_stop_saves_what_was_learned_and_cancel_writes_nothing(corrected, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(refine_loop.stop, "requested", lambda: True)  # the app's Stop, right after step 1
    assert refine(corrected, tmp_path / "stopped", "--steps", "50") == 0
    result = json.loads((tmp_path / "stopped" / "result.json").read_text())
    assert result["stopped_early"] and result["steps"] == 1 and Path(result["checkpoint"]).is_file()
    assert "stopped early" in capsys.readouterr().out

    def cancel(self, lr):
        raise KeyboardInterrupt  # a second signal: stop at once
    monkeypatch.setattr(refine_loop.Refiner, "_step", cancel)
    models = set((corrected.project_dir / "models").iterdir())
    assert refine(corrected, tmp_path / "cancelled") == 130
    assert "Cancelled" in capsys.readouterr().err
    assert set((corrected.project_dir / "models").iterdir()) == models


def test_a_time_budget_ends_the_run_early(corrected, tmp_path):
    assert refine(corrected, tmp_path / "run", "--steps", "1000", "--seconds", "0.001") == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["stopped_early"] and result["steps"] == 1


def test_reconstruction_trains_the_restoration_network_of_a_full_checkpoint(corrected, tmp_path):
    assert refine(corrected, tmp_path / "run", "--reconstruction", "--allow-random-weights") == 0
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(first["reconstruction"])
    assert json.loads((tmp_path / "run" / "result.json").read_text())["reconstruction"] is True


def test_an_uncorrected_image_that_vanished_is_left_out(corrected, tmp_path):
    (corrected.images_folder / "img_4.png").unlink()
    assert refine(corrected, tmp_path / "run") == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert "img_4.png" in result["skipped_images"] and result["images"] == 4


def _inference_only(tmp_path: Path) -> Path:
    model = load_checkpoint(tiny_checkpoint(tmp_path / "full.safetensors"))
    return save_checkpoint(model, tmp_path / "light.safetensors", embed_backbone=True, inference_only=True)


@pytest.mark.parametrize("case, message", [
    ("nothing corrected", "has no corrected image yet"),
    ("checkpoint missing", "does not exist"),
    ("another K", "has 3 part slots but the project's part table has 4"),
    ("corrected image vanished", "The reviewed image 'img_1.png' cannot be used (the file does not exist)"),
    ("corrected image resized", "is now 20×20 but its corrections are 44×36"),
    ("inference-only with reconstruction", "inference-only"),
])
def test_bad_input_gets_one_sentence_and_changes_nothing(tmp_path, capsys, case, message):
    project = predicted_project(tmp_path)
    extra: list[str] = []
    if case != "nothing corrected":
        project.edits("img_0.png").brush(20, 18, 8, 1)
        project.mark_reviewed("img_1.png")
        project.save()
    if case == "checkpoint missing":
        project.checkpoint.unlink()
    elif case == "another K":
        extra = ["--checkpoint", str(tiny_checkpoint(tmp_path / "k3.safetensors", num_parts=3))]
    elif case == "corrected image vanished":
        (project.images_folder / "img_1.png").unlink()
    elif case == "corrected image resized":
        from PIL import Image

        Image.new("RGB", (20, 20)).save(project.images_folder / "img_1.png")
    elif case == "inference-only with reconstruction":
        extra = ["--checkpoint", str(_inference_only(tmp_path)), "--reconstruction", "--allow-random-weights"]
    before = tree_digest(project.project_dir)
    assert refine(project, tmp_path / "run", *extra) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and err.startswith("error: ")
    assert tree_digest(project.project_dir) == before and not (tmp_path / "run").exists()
