"""A Panels' state as bytes and its merge (pipeline.report.panel_state).

The reference is one Panels fed every partial: states of any grouping of the partials, merged in any
order, must give the same panels, exactly (the sketches merge the same buckets and registers). The
dataset is large enough for every sketch to leave its exact form (visitors, pairs, per-day and
per-hour distinct IPs) and spans several days, so that the time buckets coarsen.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import validate
from pipeline.report.history import COLUMNS, dataset_files
from pipeline.report.panel_state import dump, merge
from pipeline.report.panels import RUN_EXACT, Panels, summarize
from pipeline.runner import run_pipeline
from pipeline.synthetic import generate


@pytest.fixture(scope="module")
def partials(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The partials of 36,000 rows over three days (more distinct visitors than the exact sets hold)."""
    tmp = tmp_path_factory.mktemp("state")
    generate(tmp / "in", files=3, lines=12_000, seed=3)
    run = {"inputs": [str(tmp / "in")], "output": str(tmp / "out"), "progress": "off"}
    assert run_pipeline(validate({"run": run, "parse": {"executor": "inline"}})).exit_code == 0
    out = tmp / "out"
    tables = [
        pq.read_table(out / rel, columns=[c for c in pq.read_schema(out / rel).names if c in COLUMNS])
        for rels in dataset_files(out).values()
        for rel in rels
    ]
    table = pa.concat_tables(tables)
    assert table.num_rows > 2 * RUN_EXACT
    return [summarize(batch) for batch in table.to_batches(max_chunksize=1500)]


def _panels(partials: list[bytes], budget: int | None = None) -> Panels:
    panels = Panels() if budget is None else Panels(budget=budget)
    for one in partials:
        panels.add(one)
    return panels


@pytest.fixture(scope="module")
def reference(partials: list[bytes]) -> dict[str, Any]:
    return _panels(partials).to_dict()


@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_merged_states_equal_one_panels_fed_every_partial(
    partials: list[bytes], reference: dict[str, Any], data: st.DataObject
) -> None:
    order = data.draw(st.permutations(range(len(partials))))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(partials) - 1), max_size=6)))
    groups = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(partials)], strict=True)]
    total = Panels()
    for group in groups:
        merge(total, dump(_panels([partials[i] for i in group])))
    assert total.to_dict() == reference
    assert reference["exact"]["visitors"] is False  # the sketches' merge was exercised


def test_a_state_merged_into_an_empty_panels_is_the_same_panels(partials: list[bytes]) -> None:
    few = _panels(partials[:3])  # exact visitors and pairs
    again = Panels()
    merge(again, dump(few))
    assert again.to_dict() == few.to_dict() and few.to_dict()["exact"]["visitors"] is True
    empty = Panels()
    merge(empty, dump(Panels()))
    assert empty.to_dict() == Panels().to_dict()


def test_cut_states_keep_every_count_within_its_delta(
    partials: list[bytes], reference: dict[str, Any]
) -> None:
    """States whose lists were cut (a small budget) merge into lists whose every shown count is a
    lower bound at most delta under the truth."""
    total = Panels()
    for k in range(0, len(partials), 5):
        merge(total, dump(_panels(partials[k : k + 5], budget=64 << 10)))
    got = total.to_dict()
    assert not got["exact"]["top_lists"]
    checked = 0
    for name, delta in got["exact"]["top_lists_max_undercount"].items():
        truth = {row[0]: row[1] for row in _panels(partials).to_dict()[name]} if delta else {}
        for value, low, high, *_ in got[name]:
            if value in truth:
                assert low <= truth[value] <= high
                checked += 1
    assert checked
    assert got["rows"] == reference["rows"] and got["status"] == reference["status"]


def test_a_state_is_not_a_partial(partials: list[bytes]) -> None:
    with pytest.raises(ValueError, match="not a state"):
        merge(Panels(), partials[0])
    with pytest.raises(ValueError, match="not a partial"):
        Panels().add(dump(_panels(partials[:1])))
