"""Part table: dataset-wide names, colours, merges and ignores, and the label → export index table."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mpae_core.annotation.labels import IGNORE_LABEL
from mpae_core.annotation.parts import PartTable
from mpae_core.palette import default_part_color


def test_defaults_come_from_the_palette():
    table = PartTable.default(4)
    assert [s.name for s in table] == ["part_01", "part_02", "part_03", "part_04"]
    assert [s.color for s in table] == [default_part_color(k) for k in range(4)]
    assert [label.index for label in table.export_labels()] == [1, 2, 3, 4]
    assert table.slot_to_export_index().tolist() == [0, 1, 2, 3, 4]


def test_from_model_info_keeps_names_and_colours():
    table = PartTable.from_model_info(["head", "body"], [(1, 2, 3), "#0a0b0c"])
    assert table[0].name == "head" and table[1].color == (10, 11, 12)
    assert PartTable.from_model_info(["a", "b"]).display_color(1) == default_part_color(1)
    with pytest.raises(ValueError, match="2 parts but gives 1 colours"):
        PartTable.from_model_info(["a", "b"], [(0, 0, 0)])


def test_merge_ignore_and_export_indices():
    table = PartTable.default(5)
    table.rename(0, "head")
    table.merge([2, 3], 0)
    table.set_as_background(4)
    labels = table.export_labels()
    assert [(l.index, l.name, sorted(l.slots)) for l in labels] == [(1, "head", [0, 2, 3]), (2, "part_02", [1])]
    assert table.slot_to_export_index().tolist() == [0, 1, 2, 1, 1, 0]
    assert table.display_name(3) == "head" and table.display_color(3) == table[0].color
    assert table.is_background(4) and not table.is_background(2)
    table.unmerge(3)
    assert table.slot_to_export_index().tolist() == [0, 1, 2, 1, 3, 0]
    assert table.export_labels()[2].name == "part_04"  # an un-merged slot gets its own name back
    table.set_as_background(4, False)
    assert table.slot_to_export_index().tolist() == [0, 1, 2, 1, 3, 4]


def test_merge_into_a_merged_slot_resolves_to_its_root_and_groups_move_together():
    table = PartTable.default(5)
    table.merge(1, 0)
    table.merge(2, 1)  # 1 is merged into 0: 2 joins 0
    assert table[2].merged_into == 0
    table.merge(0, 4)  # a root brings its whole group
    assert [table.root(s) for s in range(5)] == [4, 4, 4, 3, 4]
    assert table.members(1) == [0, 1, 2, 4]
    table.merge(2, 3)  # a merged slot moves alone
    assert table.members(4) == [0, 1, 4] and table.members(3) == [2, 3]


@pytest.mark.parametrize("action, message", [
    (lambda t: t.merge(1, 1), "cannot be merged into itself"),
    (lambda t: t.merge(7, 1), "no part 8;"),
    (lambda t: t.merge(1, -1), "no part 0;"),
    (lambda t: t.rename(9, "x"), "no part 10;"),
    (lambda t: t.unmerge(1), "not merged into another part"),
    (lambda t: t.rename(1, "  "), "cannot be empty"),
    (lambda t: t.rename(1, "a\nb"), "line breaks"),
    (lambda t: t.rename(1, "Background"), "reserved"),
    (lambda t: t.rename(1, "part_01"), "already called 'part_01'"),
    (lambda t: t.recolor(1, (0, 0, 300)), "0..255"),
    (lambda t: t.recolor(1, "#12"), "rrggbb"),
])
def test_invalid_changes_say_what_is_wrong(action, message):
    table = PartTable.default(3)
    before = table.copy()
    with pytest.raises(ValueError, match=message):
        action(table)
    assert table == before


def test_no_cycles_and_no_ignoring_merged_slots():
    table = PartTable.default(3)
    table.merge(2, 0)
    with pytest.raises(ValueError, match="part 3 is already merged into part 1"):
        table.merge(0, 2)
    with pytest.raises(ValueError, match="merged into part 1"):
        table.set_as_background(2)
    with pytest.raises(ValueError, match=r"unmerge parts \[3\]"):
        table.unmerge(0)
    assert [table.root(s) for s in range(3)] == [0, 1, 0]


def test_to_export_maps_values_and_refuses_unknown_ones():
    table = PartTable.default(3)
    table.merge(2, 1)
    labels = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    assert table.to_export(labels).tolist() == [[0, 1, 2, 2], [2, 2, 1, 0]]
    with_ignore = np.array([[IGNORE_LABEL, 1]], dtype=np.uint16)
    assert table.to_export(with_ignore).tolist() == [[255, 1]]
    with pytest.raises(ValueError, match="value 4"):
        table.to_export(np.array([[4]], dtype=np.uint16))


def test_json_round_trip_and_damaged_tables():
    table = PartTable.default(4)
    table.rename(1, "wing")
    table.recolor(1, (1, 2, 3))
    table.merge(3, 1)
    table.set_as_background(2)
    restored = PartTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert restored == table
    assert restored.slot_to_export_index().tolist() == table.slot_to_export_index().tolist()
    data = table.to_dict()
    data["slots"][0]["merged_into"] = 3  # 3 is itself merged: not a flat table
    with pytest.raises(ValueError, match="itself merged"):
        PartTable.from_dict(data)
    with pytest.raises(ValueError, match="damaged"):
        PartTable.from_dict({"slots": [{"slot": 0}]})


def test_version_counts_changes():
    table = PartTable.default(2)
    table.rename(0, "a")
    table.merge(1, 0)
    assert table.version == 2
