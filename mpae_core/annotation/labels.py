"""Label values shared by the part table, the edit layer and the exporters.

Two value spaces exist and must not be confused:

* *label values* (what ``PartPrediction.label_map`` and the edit layer hold): 0 = background, k + 1 = model slot k,
  :data:`USER_LABEL_BASE` + j = the person's own label j (a label the model has no slot for),
  :data:`IGNORE_LABEL` = "don't care about this pixel"; :data:`UNSET` only appears in the edit layer and means "no
  edit here, use the prediction". They live in uint16 so that any number of slots, user labels and both sentinels
  fit, and a user label's value does not depend on the model's number of slots.
* *export indices* (what the PNG and COCO files hold): 0 = background, 1..N = the named labels after merges and
  ignores, :data:`EXPORT_IGNORE` (255) = ignore, the VOC convention.
"""
from __future__ import annotations

BACKGROUND = 0
#: Edit-layer value for "ignore this pixel" (exported as 255); far above any real slot count.
IGNORE_LABEL = 65534
#: Edit-layer value for "no edit here: use the prediction".
UNSET = 65535
#: Export index of ignored pixels in PNG masks (VOC convention).
EXPORT_IGNORE = 255
#: Most labels an 8-bit PNG can hold besides background (0) and ignore (255).
MAX_EXPORT_LABELS = 254
#: Label value of the first user-added label (user label j has USER_LABEL_BASE + j): above every model slot.
USER_LABEL_BASE = 0x8000
#: Largest number of model slots whose label values (k + 1) stay below the user labels.
MAX_SLOTS = USER_LABEL_BASE - 1
#: Largest number of user-added labels (their values stay below the two sentinels).
MAX_USER_LABELS = IGNORE_LABEL - USER_LABEL_BASE
