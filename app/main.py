"""``mpae-annotate``: the entry point of MPAE Annotator.

``mpae-annotate [FOLDER] [--checkpoint C] [--device D]`` and ``mpae-annotate --demo`` open the desktop app
(:mod:`app.gui`); ``info`` (what a checkpoint holds), ``batch`` (headless pre-annotation of a folder; the pipeline
is :mod:`mpae_core.batch`, this module only parses and prints), ``import`` (annotations from other tools into a
project, :mod:`mpae_core.annotation.importers`) and ``--version`` never import Qt, so they run on machines without a
display. ``python -m app.main`` and ``torchrun -m app.main batch ...`` work too.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

import mpae_core
from mpae_core.errors import MPAEError


def _versions() -> str:
    import timm
    import torch

    from mpae_core.devices import resolve_device

    return (f"mpae-annotate {mpae_core.__version__} (torch {torch.__version__}, timm {timm.__version__}, "
            f"default device: {resolve_device('auto')})")


def _info(args: argparse.Namespace) -> int:
    from mpae_core.checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint, backbone_weights=args.backbone_weights,
                            allow_random_backbone=args.allow_random_backbone)
    cfg, info = model.cfg, model.info
    print(f"checkpoint:  {info.source} ({info.source_format})")
    print(f"backbone:    {cfg.backbone} at {cfg.image_size}x{cfg.image_size} px ({cfg.grid_size}x{cfg.grid_size} grid)")
    print(f"parts:       K={cfg.num_parts} (+ background), preset {cfg.preset}")
    for slot, (name, color) in enumerate(zip(info.part_names, info.part_colors)):
        print(f"  label {slot + 1:>3}  {name:<24} rgb{color}")
    if info.provenance:
        print(f"provenance:  {info.provenance}")
    return 0


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MAX_LISTED_FAILURES = 20


def _batch(args: argparse.Namespace) -> int:
    from mpae_core.batch import BatchConfig, BatchUsageError, Shard, run_batch
    from mpae_core.errors import BackboneWeightsError, CheckpointError

    shard = Shard.from_env()
    try:
        config = BatchConfig(
            images=args.images, checkpoint=args.checkpoint, out=args.out, formats=args.format,
            coco_style=args.coco_style, device=args.device,
            batch_size=args.batch_size, recursive=args.recursive, overwrite=args.overwrite, workers=args.workers,
            encoders=args.encoders,
            backbone_weights=args.backbone_weights, allow_random_backbone=args.allow_random_backbone)
        desc = f"batch (rank 0 of {shard.world_size})" if shard.distributed else "batch"
        with _ProgressBar(enabled=shard.rank == 0, desc=desc) as progress:
            report = run_batch(config, progress=progress, shard=shard)
    except (BatchUsageError, CheckpointError, BackboneWeightsError) as exc:
        where = f" (rank {shard.rank})" if shard.distributed else ""
        print(f"error{where}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if shard.rank != 0:
        return EXIT_OK  # rank 0 reports for the whole job
    _print_summary(report)
    if report.cancelled:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.succeeded else EXIT_FAILED


class _ProgressBar:
    """A tqdm bar on stderr fed by run_batch's progress callback (none on ranks other than 0)."""

    def __init__(self, enabled: bool, desc: str) -> None:
        self.enabled, self.desc, self.bar = enabled, desc, None

    def __enter__(self):
        if not self.enabled:
            return None
        from tqdm import tqdm

        def update(event) -> None:
            if self.bar is None:
                self.bar = tqdm(total=event.total, unit="img", desc=self.desc, dynamic_ncols=True, mininterval=0.5)
            self.bar.update(1)
            if event.failed:
                self.bar.set_postfix(failed=event.failed, refresh=False)

        return update

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _print_summary(report) -> None:
    totals = report.totals()
    interrupted = f", {totals['cancelled']} not done (interrupted)" if totals["cancelled"] else ""
    print(f"{totals['images']} images: {totals['ok']} done, {totals['skipped']} skipped (done before), "
          f"{totals['error']} failed{interrupted} in {totals['seconds']:.1f} s on {report.device}")
    if report.coco_path is not None:
        print(f"COCO:   {report.coco_path}")
    print(f"report: {report.report_path}")
    if report.project_dir is not None:
        print(f"review: mpae-annotate {report.out}   (opens the run's project {report.project_dir} in the app)")
    _print_failures([f"failed: {result.error}" for result in report.failed],
                    f"more failures in {report.report_path}")


def _print_failures(lines: list[str], more: str) -> None:
    """The first MAX_LISTED_FAILURES lines on stderr, then how many more there are."""
    for line in lines[:MAX_LISTED_FAILURES]:
        print(line, file=sys.stderr)
    if len(lines) > MAX_LISTED_FAILURES:
        print(f"... and {len(lines) - MAX_LISTED_FAILURES} {more}", file=sys.stderr)


def _add_batch_parser(commands) -> None:
    batch = commands.add_parser(
        "batch", help="pre-annotate a folder of images without a display (PNG masks, COCO, report)",
        description="Predict part masks for every image of a folder. Exit code 0: all images done; 1: some failed "
                    "(listed in OUT/report.json); 2: the run could not start; 130: interrupted (the report says "
                    "what was done). Re-running skips finished images. Under torchrun --nproc_per_node N each rank "
                    "takes every N-th image and rank 0 merges the outputs. OUT also holds a project (OUT/.mpae): "
                    "`mpae-annotate OUT` opens the run in the app for review without predicting again.")
    batch.add_argument("images", help="folder of images")
    batch.add_argument("--checkpoint", required=True, help="an MPAE .safetensors checkpoint or an authors' .pth")
    batch.add_argument("--out", required=True, help="output folder (masks/, labels.txt, labels.json, coco.json, "
                                                   "report.json, and the project .mpae/ the app opens)")
    batch.add_argument("--format", default="png,coco",
                       help="comma-separated: png, coco, yolo, labelme, cvat, voc (default: png,coco); yolo, "
                            "labelme, cvat and voc (and coco polygons) are written at the end from the PNG masks, "
                            "which are then written too")
    batch.add_argument("--coco-style", default="rle", choices=("rle", "polygons"),
                       help="COCO masks as compressed RLE (exact, default) or polygon outlines")
    batch.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default: auto; under "
                                                       "torchrun each rank takes cuda:LOCAL_RANK)")
    batch.add_argument("--batch-size", type=int, default=8, help="images per model call (default: 8)")
    batch.add_argument("--recursive", action="store_true", help="include images in subfolders")
    batch.add_argument("--overwrite", action="store_true",
                       help="redo images that an earlier run finished (never those edited or reviewed in the app)")
    batch.add_argument("--workers", type=int, default=None,
                       help="image decoding processes (default: a third of the CPUs, half on a GPU; 0 decodes in the "
                            "main process)")
    batch.add_argument("--encoders", type=int, default=None,
                       help="PNG and RLE processes, which also make the label maps unless a GPU does (default: "
                            "half the CPUs, 3/8 on a GPU; 0 = one thread of the main process)")
    batch.add_argument("--backbone-weights", help="local DINOv2 weights file, if the checkpoint does not embed them")
    batch.add_argument("--allow-random-backbone", action="store_true",
                       help="use a random backbone when no weights are found (for testing only)")
    batch.set_defaults(run=_batch)


def _import(args: argparse.Namespace) -> int:
    """Import annotations into the project of ``--into`` (created when the folder has none)."""
    from pathlib import Path

    from mpae_core.annotation import AnnotationProject
    from mpae_core.annotation.importers import ImportSourceError, import_annotations, open_source
    from mpae_core.annotation.project import find_project_dir

    try:
        source, others = open_source(args.source, args.format)
    except ImportSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    folder = Path(args.into).expanduser()
    try:
        if find_project_dir(folder) is not None:
            # a locked project is refused below in one sentence, without the store's own warning first
            logging.getLogger("mpae_core.annotation.project").setLevel(logging.ERROR)
            project = AnnotationProject.open(folder, edit_cache_size=1)
            logging.getLogger("mpae_core.annotation.project").setLevel(logging.NOTSET)
            if project.read_only is None:
                project.scan(recursive=True if args.recursive else None)
        else:
            project = AnnotationProject.create(folder, recursive=args.recursive, edit_cache_size=1)
    except (MPAEError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if project.read_only is not None:
            print(f"error: Cannot import into '{project.project_dir}': {project.read_only}.", file=sys.stderr)
            return EXIT_USAGE
        if others:
            print(f"{source.path} also holds {', '.join(others)}; importing {source.format} (--format to choose)")
        with _ImportProgress(source.count()) as progress:
            report = import_annotations(source, project, replace=args.replace, reviewed=args.reviewed,
                                        on_image=progress)
    finally:
        project.close()
    _print_import_summary(report, project)
    return EXIT_FAILED if report.failed else EXIT_OK


class _ImportProgress:
    """A tqdm bar on stderr (annotations read so far)."""

    def __init__(self, total: int | None) -> None:
        self.total, self.bar = total, None

    def __enter__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit="img", desc="import", dynamic_ncols=True, mininterval=0.5)
        return lambda done, _name: self.bar.update(1)

    def __exit__(self, *exc) -> None:
        self.bar.close()


def _print_import_summary(report, project) -> None:
    print(report.summary(into=project.images_folder))
    matched = [m.describe() for m in report.labels if m.kind != "new"]
    if matched:
        print(f"labels matched: {'; '.join(matched)}")
    if report.created:
        print(f"labels created: {', '.join(report.created)}")
    for note in report.notes[:MAX_LISTED_FAILURES]:
        print(f"note: {note}")
    if report.kept:
        print(f"kept {len(report.kept)} images that already had edits or a review (--replace overwrites them): "
              + ", ".join(str(s.relpath) for s in report.kept[:MAX_LISTED_FAILURES])
              + (" …" if len(report.kept) > MAX_LISTED_FAILURES else ""))
    _print_failures([f"not imported: {skipped.reason}" for skipped in report.failed], "more not imported")


def _add_import_parser(commands) -> None:
    from mpae_core.annotation.importers import IMPORT_FORMATS

    command = commands.add_parser(
        "import", help="import annotations (COCO, PNG label maps, VOC, labelme, YOLO-seg, CVAT) into a project",
        description="Import annotations made elsewhere as the person's own layer of the matching images (a later "
                    "prediction never replaces them). Labels are matched to the project's parts by name; unknown names "
                    "become new labels. Exit code 0: everything imported; 1: some images were not (listed); 2: the "
                    "import could not start.")
    command.add_argument("source", help="a COCO or labelme JSON file, CVAT annotations.xml, YOLO data.yaml, or a "
                                        "folder holding one of the formats (an export folder of this app works too)")
    command.add_argument("--into", required=True, metavar="FOLDER",
                         help="the image folder (or its project folder); a project is created when it has none")
    command.add_argument("--format", choices=IMPORT_FORMATS, help="the source's format (default: detected)")
    command.add_argument("--replace", action="store_true",
                         help="overwrite images that already have edits or a review (default: keep them)")
    command.add_argument("--reviewed", action="store_true", help="mark the imported images reviewed")
    command.add_argument("--recursive", action="store_true", help="include images in subfolders of FOLDER")
    command.set_defaults(run=_import)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpae-annotate", description="Unsupervised part annotation with MPAE.")
    parser.add_argument("--version", action="store_true", help="print versions and the default device, then exit")
    commands = parser.add_subparsers(dest="command")
    info = commands.add_parser("info", help="show what a checkpoint holds (ours or the authors' .pth)")
    info.add_argument("checkpoint", help="an MPAE .safetensors checkpoint or an authors' released .pth")
    info.add_argument("--backbone-weights", help="local DINOv2 weights file, if the checkpoint does not embed them")
    info.add_argument("--allow-random-backbone", action="store_true",
                      help="use a random backbone when no weights are found (for inspecting the file only)")
    info.set_defaults(run=_info)
    _add_batch_parser(commands)
    _add_import_parser(commands)
    return parser


COMMANDS = ("info", "batch", "import")


def build_gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpae-annotate", description="Unsupervised part annotation with MPAE: opens the desktop app.",
        epilog="Without a display: `mpae-annotate batch IMAGES --checkpoint C --out OUT` pre-annotates a folder "
               "(PNG masks + COCO), `mpae-annotate import SOURCE --into IMAGES` imports annotations made elsewhere, "
               "`mpae-annotate info C` shows what a checkpoint holds; add --help to any.")
    parser.add_argument("folder", nargs="?", help="folder of images to open")
    parser.add_argument("--checkpoint", help="MPAE checkpoint to load (.safetensors, or the authors' .pth)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps (default: the last one used)")
    parser.add_argument("--demo", action="store_true",
                        help="open the bundled demo images with the demo checkpoint and predict them")
    parser.add_argument("--theme", choices=("system", "light", "dark"), help="colour theme")
    parser.add_argument("--version", action="store_true", help="print versions and the default device, then exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("--version",):
        return _gui(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.version:
        print(_versions())
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except MPAEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _display_available() -> bool:
    """Qt aborts the process without a display; say so in one sentence instead (Linux/BSD only)."""
    import os

    if not sys.platform.startswith(("linux", "freebsd", "openbsd")) or os.environ.get("QT_QPA_PLATFORM"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _gui(argv: list[str]) -> int:
    args = build_gui_parser().parse_args(argv)
    if args.version:
        print(_versions())
        return 0
    if not _display_available():
        print("error: the desktop app needs a display and none was found (DISPLAY/WAYLAND_DISPLAY are unset); on a "
              "server use `mpae-annotate batch`, or set QT_QPA_PLATFORM=offscreen for scripted use.", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from .gui import run_gui

    return run_gui(folder=args.folder, checkpoint=args.checkpoint, device=args.device, demo=args.demo,
                   theme=args.theme)


if __name__ == "__main__":
    sys.exit(main())
