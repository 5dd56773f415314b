#!/usr/bin/env python
"""Corrections teach the model (issue 12): held-out part IoU after refining from n corrected images, on the CPU.

1. The synthetic dataset (``training.synthetic``, seed 0: the demo model's own data) is generated into a temp folder
   or reused from ``--data-root``.
2. A project is made over the first ``--project-images`` train images and predicted with the start model
   (``--checkpoint``, default the demo checkpoint: K = 8, 112 px, seeded random 4-block ViT-S backbone embedded).
3. Naming, as a person would: looking at the start model's masks on the first 10 project images, each ground-truth
   part type is named after the slot it overlaps most (``--naming slot-per-type``, the default). A slot that several
   types choose is one label to the person, named after the type it covers most (the model's "head" slot also
   covers the eyes and the beak, so the person paints those "head" too); a type that overlaps no part slot gets
   none and is painted "ignore" (no loss). ``--naming one-to-one`` gives every slot at most one type instead (types
   in order of overlap take their best free slot; the others get "ignore"). The project's part table is renamed
   accordingly. The same naming is used for every n and for the scores.
4. For n in ``--n`` (default 0 1 3 10): a copy of the project, whose first n images are painted to the ground truth
   (named types → their slot, unnamed types → ignore, background → background) with the brush, row run by row run,
   and marked reviewed; then ``training.refine`` runs exactly as the CLI does, for the same budget
   (``--steps``/``--seconds``), and its saved checkpoint is loaded back from the project's models folder.
   n = 0 is the start model (refinement refuses a project without corrections).
5. Scores on the held-out test split: per-part IoU at the image resolution (the pixels of the ground-truth types
   named after a slot against that slot's label map, pooled over all test pixels), fg mIoU (their mean over the
   named slots), and the evaluation
   protocol's NMI/ARI (``training.evaluation``: 128×128, background included). Then the project is re-predicted
   with the new model (``mpae_core.annotation.repredict``): the corrected images' label maps must still equal the
   corrections (agreement 100 %, and their edit files byte-identical), while the unreviewed ones change.

    python benchmarks/bench_refine.py --markdown
    python benchmarks/bench_refine.py --n 0 3 --steps 5 --project-images 16 --num-test 10   # smoke run
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing is ever downloaded
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402

import _table  # noqa: E402  (benchmarks/_table.py, beside this script)

from mpae_core.annotation import AnnotationProject  # noqa: E402
from mpae_core.annotation.labels import IGNORE_LABEL  # noqa: E402
from mpae_core.annotation.repredict import repredict  # noqa: E402
from mpae_core.checkpoint import load_checkpoint, model_fingerprint  # noqa: E402
from mpae_core.images import load_image  # noqa: E402
from mpae_core.inference import Predictor  # noqa: E402
from training.evaluation import EvalOptions, evaluate  # noqa: E402
from training.refine import RefineConfig, Refiner, open_session  # noqa: E402
from training.refine.augment import MODES  # noqa: E402
from training.refine.loop import SCHEDULES  # noqa: E402
from training.synthetic import BACKGROUND_LABEL, PART_NAMES, generate_synthetic_dataset, load_label_map  # noqa: E402

logger = logging.getLogger("bench_refine")
REPO = Path(__file__).resolve().parents[1]
DEMO_CHECKPOINT = REPO / "resources" / "demo" / "demo.safetensors"
NAMING_IMAGES = 10
_load = lambda: getattr(os, "getloadavg", lambda: (float("nan"),))()[0]  # noqa: E731  (not on Windows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = RefineConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", help="existing synthetic dataset to reuse (default: generate one in a temp folder)")
    p.add_argument("--num-train", type=int, default=400, help="train images to generate (default 400)")
    p.add_argument("--num-test", type=int, default=100, help="test images to generate (default 100)")
    p.add_argument("--checkpoint", default=str(DEMO_CHECKPOINT), help="the start model (default: the demo's)")
    p.add_argument("--project-images", type=int, default=100, help="train images in the project (default 100)")
    p.add_argument("--naming", choices=("slot-per-type", "one-to-one"), default="slot-per-type",
                   help="how the simulated person names slots (see above; default slot-per-type)")
    p.add_argument("--n", type=int, nargs="+", default=[0, 1, 3, 10], help="corrected images per row")
    p.add_argument("--steps", type=int, default=defaults.steps, help=f"refinement steps (default {defaults.steps})")
    p.add_argument("--seconds", type=float, default=295.0,
                   help="time budget of the refinement steps per n (default 295 s: with reading the project, "
                        "encoding and saving, the issue's 5 CPU minutes)")
    p.add_argument("--lr", type=float, default=defaults.lr)
    p.add_argument("--supervised-weight", type=float, default=defaults.supervised_weight)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--corrected-per-step", type=int, default=defaults.corrected_per_step)
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--augment", choices=MODES, default=defaults.augment,
                   help=f"transforms of the corrected images (default {defaults.augment})")
    p.add_argument("--average", type=float, default=defaults.average, help="decay of the saved weight average")
    p.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule)
    p.add_argument("--unbalanced", action="store_true", help="the supervised term averaged over pixels, not labels")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is faster on a busy "
                                               "machine)")
    p.add_argument("--out", help="keep the projects, runs and results.json here (default: a temp folder)")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    return p.parse_args(argv)


def file_names(root: Path, split: str) -> list[str]:
    coco = json.loads((root / "annotations" / split / f"{split}.json").read_text(encoding="utf-8"))
    return [image["file_name"] for image in coco["images"]]


def predict_folder(project: AnnotationProject, predictor: Predictor) -> None:
    for rel in project.relpaths():
        project.set_prediction(rel, predictor.predict_one(load_image(project.image_path(rel))))


def choose_naming(project: AnnotationProject, root: Path, names: list[str], mode: str) -> dict[int, int]:
    """Ground-truth part type → slot, from the start model's masks on the first images (see the docstring)."""
    k = project.parts.num_parts
    overlap = np.zeros((len(PART_NAMES), k), dtype=np.int64)
    for name in names:
        gt = load_label_map(root, "train", name)
        labels = project.label_map(name)
        for t in np.unique(gt[gt != BACKGROUND_LABEL]):
            slots = labels[gt == t].astype(np.int64) - 1  # −1 = background
            overlap[t] += np.bincount(slots[slots >= 0], minlength=k)[:k]
    by_overlap = [int(t) for t in np.argsort(-overlap.max(axis=1), kind="stable") if overlap[t].max() > 0]
    if mode == "slot-per-type":
        return {t: int(np.argmax(overlap[t])) for t in by_overlap}
    naming: dict[int, int] = {}
    for t in by_overlap:
        free = [(overlap[t, s], s) for s in range(k) if s not in naming.values() and overlap[t, s] > 0]
        if free:
            naming[int(t)] = int(max(free)[1])
    return naming


def correction(gt: np.ndarray, naming: dict[int, int]) -> np.ndarray:
    """The label values a person paints: named types → slot + 1, other types → ignore, background → 0."""
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint16)
    lut[BACKGROUND_LABEL] = 0
    for t, s in naming.items():
        lut[t] = s + 1
    return lut[gt]


def paint(project: AnnotationProject, rel: str, wanted: np.ndarray) -> None:
    """Brush the wanted labels in, one stroke per run of equal labels on each row (a brush of radius ½)."""
    layer = project.edits(rel)
    with layer.group():
        for y, row in enumerate(wanted):
            starts = np.flatnonzero(np.diff(row.astype(np.int64), prepend=-1))
            ends = np.append(starts[1:], row.size) - 1
            for x0, x1 in zip(starts, ends):
                layer.stroke(float(x0), float(y), float(x1), float(y), 0.5, int(row[x0]))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def slot_labels(naming: dict[int, int]) -> dict[int, list[int]]:
    """Named slot → the ground-truth types painted with it, the slot's own name (its largest type) first."""
    labels: dict[int, list[int]] = {}
    for t, s in naming.items():  # in order of overlap: a slot's first type is the one it covers most
        labels.setdefault(s, []).append(t)
    return dict(sorted(labels.items()))


def test_scores(model, root: Path, naming: dict[int, int]) -> dict:
    """Per-slot IoU at the image resolution, fg mIoU over the named slots, and the protocol's NMI/ARI."""
    predictor = Predictor(model, "cpu")
    labels_of = slot_labels(naming)
    inter, union = dict.fromkeys(labels_of, 0), dict.fromkeys(labels_of, 0)
    for name in file_names(root, "test"):
        gt = load_label_map(root, "test", name)
        labels = predictor.predict_one(load_image(root / "images" / "test" / name)).label_map()
        for s, types in labels_of.items():
            truth, said = np.isin(gt, types), labels == s + 1
            inter[s] += np.count_nonzero(truth & said)
            union[s] += np.count_nonzero(truth | said)
    iou = {s: 100.0 * inter[s] / max(union[s], 1) for s in labels_of}
    protocol = evaluate(model, "synthetic", str(root), EvalOptions(batch_size=32, num_workers=0, nme=False,
                                                                    progress=False))
    return {"iou": iou, "miou": float(np.mean(list(iou.values()))) if iou else 0.0, **protocol}


def corrected_project(base: Path, folder: Path, root: Path, names: list[str], naming: dict[int, int],
                      n: int) -> tuple[AnnotationProject, dict[str, np.ndarray]]:
    shutil.copytree(base, folder)
    project = AnnotationProject.open(folder)
    wanted = {}
    for name in names[:n]:
        wanted[name] = correction(load_label_map(root, "train", name), naming)
        paint(project, name, wanted[name])
        project.mark_reviewed(name)
    project.close()  # saved; the refinement reads it, the re-prediction opens it again
    return project, wanted


def run_n(args, n: int, base: Path, work: Path, root: Path, names: list[str], naming: dict[int, int]) -> dict:
    project, wanted = corrected_project(base, work / f"n{n}", root, names, naming, n)
    edit_files = {rel: digest(project.project_dir / "edits" / f"{rel}.png") for rel in wanted}
    cfg = RefineConfig(steps=args.steps, seconds=args.seconds, lr=args.lr, batch_size=args.batch_size,
                       supervised_weight=args.supervised_weight, corrected_per_step=args.corrected_per_step,
                       flip=not args.no_flip, balanced=not args.unbalanced, augment=args.augment,
                       average=args.average, schedule=args.schedule)
    start = time.perf_counter()
    session = open_session(project.images_folder)
    result = Refiner(session, work / f"run{n}", cfg, device="cpu", name=f"refined-n{n}").run()
    seconds = time.perf_counter() - start  # feature encoding, loop and saving: what a person waits for
    model = load_checkpoint(result.checkpoint)
    scores = test_scores(model, root, naming)
    project = AnnotationProject.open(project.images_folder)
    before = {rel: project.label_map(rel) for rel in project.relpaths() if rel not in wanted}
    summary = repredict(project, Predictor(model, "cpu"), model=model_fingerprint(model))
    project.close()
    kept = sum(int(np.count_nonzero(project.label_map(rel) == w)) for rel, w in wanted.items())
    untouched = all(digest(project.project_dir / "edits" / f"{rel}.png") == d for rel, d in edit_files.items())
    changed = sum(int(np.count_nonzero(project.label_map(rel) != m)) for rel, m in before.items())
    return {**scores, "n": n, "seconds": seconds, "loop_seconds": result.seconds, "steps": result.steps,
            "agreement": 100.0 * kept / sum(w.size for w in wanted.values()), "edits_untouched": untouched,
            "model_fit": result.agreement_after, "model_fit_before": result.agreement_before,
            "repredicted": summary.images, "repredicted_changed": summary.changed_images,
            "changed_pixels": changed, "names": model.info.part_names}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="bench_refine_")
    work = Path(args.out or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    root = Path(args.data_root or work / "data")
    if not (root / "synthetic.json").is_file():
        generate_synthetic_dataset(root, num_train=args.num_train, num_test=args.num_test, seed=0)
    names = file_names(root, "train")[: args.project_images]
    if max(args.n) > len(names):
        raise SystemExit(f"--n {max(args.n)} needs at least that many --project-images.")
    base = work / "base"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir()
    for name in names:
        shutil.copyfile(root / "images" / "train" / name, base / name)
    start_model = load_checkpoint(args.checkpoint)
    project = AnnotationProject.create(base, checkpoint=Path(args.checkpoint).resolve())
    predict_folder(project, Predictor(start_model, "cpu"))
    naming = choose_naming(project, root, names[:NAMING_IMAGES], args.naming)
    labels_of = slot_labels(naming)
    for s, types in labels_of.items():
        project.parts.rename(s, PART_NAMES[types[0]])
    project.close()
    described = "; ".join(f"slot {s} '{PART_NAMES[types[0]]}' = {' + '.join(PART_NAMES[t] for t in types)}"
                          for s, types in labels_of.items())
    logger.info("naming: %s", described)

    load = [_load()]
    rows = {0: {**test_scores(start_model, root, naming), "n": 0}}
    for n in sorted(set(args.n) - {0}):
        rows[n] = run_n(args, n, base, work, root, names, naming)
        load.append(_load())
    print(f"\nsynthetic set {root}: project of {len(names)} train images, {args.num_test} held-out test images; "
          f"start model {args.checkpoint}; budget {args.steps} steps or {args.seconds:g} s per n, batch "
          f"{args.batch_size} ({args.corrected_per_step} corrected), lr {args.lr:g}, supervised weight "
          f"{args.supervised_weight:g} ({'pixel' if args.unbalanced else 'label'}-averaged), flips "
          f"{'off' if args.no_flip else 'on'}, augmentation {args.augment}, weight average "
          f"{args.average:g}, {args.schedule} learning rate; torch threads "
          f"{torch.get_num_threads()}, load average {', '.join(f'{v:.1f}' for v in load)}\n")
    named = sorted(labels_of)
    header = ["n", "refine s", "steps", "fg mIoU", "Δ vs n=0", *(PART_NAMES[labels_of[s][0]] for s in named), "NMI",
              "ARI", "corrected agree %", "model fit %"]
    table = []
    for n in sorted(rows):
        r = rows[n]
        table.append([str(n), f"{r['seconds']:.0f}" if n else "-", str(r.get("steps", "-")), f"{r['miou']:.1f}",
                      f"{r['miou'] - rows[0]['miou']:+.1f}", *(f"{r['iou'][s]:.1f}" for s in named),
                      f"{r['nmi']:.2f}", f"{r['ari']:.2f}", f"{r['agreement']:.1f}" if n else "-",
                      f"{r['model_fit_before']:.1f} → {r['model_fit']:.1f}" if n else "-"])
    print(_table.format_table(header, table, markdown=args.markdown, text_column=0))
    print(f"\nnaming ({args.naming}): {described}; without a slot (painted ignore): "
          f"{', '.join(n for i, n in enumerate(PART_NAMES) if i not in naming) or 'none'}")
    for n in sorted(set(rows) - {0}):
        r = rows[n]
        print(f"n={n}: re-predicted {r['repredicted']} unreviewed images ({r['repredicted_changed']} changed, "
              f"{r['changed_pixels']} pixels); corrected edit files untouched: {r['edits_untouched']}; "
              f"refined model's part names = the project's: {r['names'][:3]}...")
    results = {str(n): {k: v for k, v in r.items() if k != "names"} for n, r in rows.items()}
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
