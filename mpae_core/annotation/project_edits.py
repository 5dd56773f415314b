"""The person's layer of a project: edit layers (loaded, cached, saved), the label maps they compose with the
predictions, and the summary of what each edited image shows (a mixin of :class:`~.project.AnnotationProject`)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import MPAEError
from .edits import EditLayer
from .labels import IGNORE_LABEL, USER_LABEL_BASE
from .records import EXPORTABLE, FileState, ImageRecord, ImageStatus
from .storage import read_uint16_png, write_uint16_png

logger = logging.getLogger(__name__)

#: A function that writes one file of a save (see ``AnnotationProject.save_jobs``).
SaveJob = Callable[[], None]

#: Size of the map on which an image's present parts are found (the reference's output size, as the prediction's
#: own summary): cheap enough to redo after every stroke.
SUMMARY_SIZE = (128, 128)


class ProjectEditsMixin:
    """Edit layers and composed label maps; state lives in the project (``_records``, ``_edit_cache``, ...)."""

    def remove_last_user_label(self) -> None:
        """Drop the newest user label; refused while an image is painted with it (its pixels would lose meaning)."""
        if self._parts is None or not self._parts.user_labels:
            raise ValueError("This project has no user label to remove.")
        self._check_user_label_unused(self._parts.user_labels[-1].value)
        self._parts.remove_last_user_label()

    def edits(self, relpath: str | os.PathLike) -> EditLayer:
        """The image's edit layer (loaded or created); the project follows its changes and saves it on ``save``.

        An image without a prediction can be painted once its size is known (:meth:`add_image`)."""
        record = self._record(relpath)
        layer = self._edit_cache.get(record.relpath)
        if layer is not None:
            self._edit_cache.move_to_end(record.relpath)
            return layer
        layer = self._leaving.pop(record.relpath, None)
        if layer is not None:  # back before its file was written: the layer itself is the newest state
            self._cache_layer(record.relpath, layer)
            return layer
        return self._adopt_layer(record.relpath, self._load_layer(record))

    def edits_loader(self, relpath: str | os.PathLike) -> Callable[[], EditLayer] | None:
        """How to read the image's stored edit layer off the GUI thread, or None when :meth:`edits` is cheap (the
        layer is cached, or nothing is stored). The function touches no project state, so any thread may run it
        (a 12 MP layer takes ~0.1 s to decode); hand its layer to :meth:`install_edit_layer` on this thread."""
        record = self._record(relpath)
        if self._known_layer(record.relpath) is not None or not record.has_edits:
            return None
        size, path = record.size, self._edit_file(record.relpath)
        num_parts = None if self._parts is None else self._parts.num_parts
        return lambda: _layer_from_file(record.relpath, size, path, num_parts, expected=True)

    def install_edit_layer(self, relpath: str | os.PathLike, layer: EditLayer) -> EditLayer:
        """The image's edit layer from now on: ``layer`` (read by :meth:`edits_loader`'s function), unless
        :meth:`edits` cached one meanwhile, which is then newer and is returned instead."""
        record = self._record(relpath)
        if self._known_layer(record.relpath) is not None:
            return self.edits(record.relpath)
        if layer.size != record.size:
            raise MPAEError(f"The edit layer read for '{record.relpath}' no longer fits it (its size changed "
                            "meanwhile); show the image again.")
        if self._parts is not None:
            layer.num_parts = self._parts.num_parts  # the table may have taken a model's slots meanwhile
        return self._adopt_layer(record.relpath, layer)

    def clear_edits(self, relpath: str | os.PathLike) -> None:
        """Drop every edit of the image (undoable on its layer until saved)."""
        record = self._record(relpath)
        if record.has_edits or self._known_layer(record.relpath) is not None:
            self.edits(record.relpath).clear()

    def label_map(self, relpath: str | os.PathLike) -> np.ndarray:
        """The final [H, W] uint16 label values at the image's own size: prediction, then the person's edits
        (background under the edits of an image that was never predicted)."""
        record = self._record(relpath)
        prediction = self.prediction(record.relpath)
        layer = self._known_layer(record.relpath)
        if prediction is not None:
            base = prediction.label_map()
        elif (record.has_edits or layer is not None) and record.size is not None:
            base = np.zeros(record.size, dtype=np.uint8)
        else:
            raise MPAEError(f"'{record.relpath}' has no prediction or edits yet; predict or paint it first.")
        if layer is None and record.has_edits:
            layer = self._load_layer(record)  # read for this call only, not cached: exports walk every image
        return base.astype(np.uint16) if layer is None else layer.composed(base)

    def iter_label_maps(self, statuses: Iterable[ImageStatus] = EXPORTABLE, *,
                        include_changed: bool = False) -> Iterator[tuple[str, np.ndarray]]:
        """(relpath, label map) for every image with one of ``statuses``, one at a time (what exports consume).

        Images whose file changed on disk since they were annotated are left out unless ``include_changed``:
        their masks no longer fit the photo (:meth:`changed_relpaths` lists them for the message)."""
        wanted = {ImageStatus(s) for s in statuses}
        for record in list(self._records.values()):
            if record.status not in wanted or not (record.has_prediction or record.has_edits):
                continue
            if record.file_state is FileState.CHANGED and not include_changed:
                continue
            yield record.relpath, self.label_map(record.relpath)

    def changed_relpaths(self) -> list[str]:
        """Annotated images whose file was replaced since (the exports skip them)."""
        return [r.relpath for r in self._records.values() if r.file_state is FileState.CHANGED]

    def _check_user_label_unused(self, value: int) -> None:
        for record in self._records.values():
            layer = self._known_layer(record.relpath)
            if layer is not None or record.has_edits:
                layer = layer if layer is not None else self._load_layer(record)
                if np.any(layer.data == value):
                    raise ValueError(f"'{self._parts.value_name(value)}' is painted on '{record.relpath}'; "  # type: ignore[union-attr]
                                     "paint over it first, or keep the label.")

    def _known_layer(self, relpath: str) -> EditLayer | None:
        """The image's layer in memory: cached, or gone from the cache while its file is still being written."""
        layer = self._edit_cache.get(relpath)
        return layer if layer is not None else self._leaving.get(relpath)

    def _write_pending(self, relpath: str) -> bool:
        """Whether the last write of the image's layer that was handed out has not landed (or failed)."""
        return self._written_seq.get(self._edit_file(relpath), -1) < self._layer_seqs.get(relpath, -1)

    def _edit_file(self, relpath: str) -> Path:
        return self.project_dir / "edits" / f"{relpath}.png"

    def _load_layer(self, record: ImageRecord) -> EditLayer:
        num_parts = None if self._parts is None else self._parts.num_parts
        return _layer_from_file(record.relpath, record.size, self._edit_file(record.relpath), num_parts,
                                expected=record.has_edits)

    def _adopt_layer(self, relpath: str, layer: EditLayer) -> EditLayer:
        """Cache a layer read from disk as the image's one; the project follows its changes from now on."""
        self._saved_versions[id(layer)] = layer.version
        layer.on_change = lambda changed, rel=relpath: self._layer_changed(rel, changed)
        self._cache_layer(relpath, layer)
        return layer

    def _cache_layer(self, relpath: str, layer: EditLayer) -> None:
        self._edit_cache[relpath] = layer
        self._edit_cache.move_to_end(relpath)
        self._leaving.pop(relpath, None)
        while len(self._edit_cache) > self.edit_cache_size:
            old_relpath, old = self._edit_cache.popitem(last=False)
            job = self._layer_job(old_relpath, old)  # its undo history goes with it
            if job is not None:
                job()
            elif self._write_pending(old_relpath):  # the saver still writes it: reading the file now would be stale
                self._leaving[old_relpath] = old
                continue
            self._saved_versions.pop(id(old), None)  # a view still holding it re-enters the cache on its next change
        for landed in [r for r in self._leaving if not self._write_pending(r)]:
            self._saved_versions.pop(id(self._leaving.pop(landed)), None)

    def _layer_changed(self, relpath: str, layer: EditLayer) -> None:
        cached = self._edit_cache.get(relpath)
        if cached is not layer:
            if cached is not None:
                logger.warning("Two edit layers of %s were changed; keeping the one changed last", relpath)
                self._saved_versions.pop(id(cached), None)
            self._cache_layer(relpath, layer)
        record = self._records[relpath]
        record.has_edits = layer.has_edits
        record.reviewed = False  # a person changed it again: it needs a new look
        self._touch(record)
        self._present_stale.add(relpath)
        self._dirty = True

    def _refresh_present(self) -> None:
        """Find the parts and user labels that edited images show now (prediction and edits at summary size)."""
        while self._present_stale:
            record = self._records[self._present_stale.pop()]
            prediction = self.prediction(record.relpath) if record.has_prediction else None
            if prediction is not None:
                base = prediction.label_map(SUMMARY_SIZE).astype(np.uint16)
            else:
                base = np.zeros(SUMMARY_SIZE, dtype=np.uint16)
            layer = self._known_layer(record.relpath)
            if layer is None and record.has_edits:  # its layer left the cache (written then): read it back
                layer = self._load_layer(record)
            if layer is not None and layer.has_edits:
                rows = np.linspace(0, layer.size[0] - 1, SUMMARY_SIZE[0]).round().astype(np.intp)
                cols = np.linspace(0, layer.size[1] - 1, SUMMARY_SIZE[1]).round().astype(np.intp)
                base = layer.composed_at(rows, cols, base)
            values = np.unique(base)
            num_parts = 0 if self._parts is None else self._parts.num_parts
            record.present = tuple(int(v) - 1 for v in values if 1 <= v <= num_parts)
            record.user_present = tuple(int(v) for v in values if USER_LABEL_BASE <= v < IGNORE_LABEL)
            self._touch(record)

    def _layer_job(self, relpath: str, layer: EditLayer) -> SaveJob | None:
        """A function that writes the layer as it is now (or removes its file), or None when it is saved."""
        if self._saved_versions.get(id(layer)) == layer.version:
            return None
        self._saved_versions[id(layer)] = layer.version
        path = self._edit_file(relpath)
        seq = next(self._write_seq)  # a later job of this file wins, whichever thread finishes first
        self._layer_seqs[relpath] = seq
        if layer.has_edits:
            data = layer.data.copy()
            return lambda: write_uint16_png(path, data, commit=lambda tmp: self._commit(path, seq, tmp))
        return lambda: self._commit(path, seq, None)


def _layer_from_file(relpath: str, size: tuple[int, int] | None, path: Path, num_parts: int | None, *,
                     expected: bool) -> EditLayer:
    """An image's edit layer as stored at ``path`` (an empty one when there is no file; ``expected``: the index says
    there should be one). Pure: no project state, so a worker thread may call it."""
    if size is None:
        raise MPAEError(f"'{relpath}' has no known size yet; open or predict it before editing.")
    if not path.is_file():
        if expected:
            logger.warning("The edits of %s are missing (%s); starting from the prediction", relpath, path)
        return EditLayer(size, num_parts=num_parts)
    data = read_uint16_png(path)
    try:
        return EditLayer(size, data, num_parts=num_parts)
    except ValueError as exc:
        raise MPAEError(f"The edit layer '{path}' does not fit '{relpath}': {exc} Delete it to drop that image's "
                        "edits.") from exc
