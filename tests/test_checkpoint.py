"""The rule-state keeper: the copy it takes, the file it writes, what its writer thread holds."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import parkwatch.daemon.checkpoint as checkpoint
import parkwatch.rules.snapshot as snapshot
from conftest import wait_until
from parkwatch.park import ParkModel
from parkwatch.rules.engine import RuleEngine
from parkwatch.schema import load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "src" / "parkwatch" / "examples" / "park.yaml"


def test_the_writer_keeps_no_copy_of_the_rule_state_once_it_is_written(tmp_path, monkeypatch):
    """A copy of the whole rule state (2 MB with 10,000 sensors) is taken for each checkpoint;
    once it is on disk the writer thread, waiting for the next one, must not hold it."""
    engine = RuleEngine(ParkModel(load_config(EXAMPLE)))
    keeper = checkpoint.StateKeeper(engine, tmp_path, min_gap_s=0.0)
    keeper.restore()
    keeper.start()
    copies: list[weakref.ref[np.ndarray]] = []
    taken = checkpoint.snapshot_arrays

    def spy(e: RuleEngine) -> dict[str, Any]:
        arrays = taken(e)
        copies.extend(weakref.ref(a) for a in arrays.values())
        return arrays

    monkeypatch.setattr(checkpoint, "snapshot_arrays", spy)
    try:
        keeper.checkpoint()
        wait_until(lambda: keeper.saves == 1, timeout=10, what="the checkpoint written")
        assert copies and (tmp_path / checkpoint.RULES_FILE).exists()
        wait_until(lambda: all(ref() is None for ref in copies), timeout=5,
                   what="the written copy released")
    finally:
        keeper.close()


def test_the_snapshot_file_is_what_numpy_reads_for_any_array():
    """The checkpoint writes its npz itself (each array from its own memory, no copy on the
    way): np.load must read back every dtype and shape exactly, empty and 0-d ones too."""
    import io

    arrays = {"f": np.array([1.5, np.nan, -np.inf]), "b": np.array([True, False]),
              "empty": np.zeros((0, 3)), "scalar": np.array(3.5),
              "nd": np.arange(12.0).reshape(3, 2, 2), "u64": np.array([2**64 - 1], np.uint64),
              "transposed": np.arange(6.0).reshape(2, 3).T, "i8": np.array([-1, 5], np.int8),
              "flapping.thr": np.full((4, 3, 2), np.nan)}
    buf = io.BytesIO()
    snapshot._write_npz(buf, arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as back:
        assert sorted(back.files) == sorted(arrays)
        for name, a in arrays.items():
            got = back[name]
            assert got.dtype == a.dtype and got.shape == a.shape, name
            assert np.array_equal(got, a, equal_nan=a.dtype.kind == "f"), name


def test_the_checkpoint_copy_is_a_copy():
    """The copy is taken between batches and written later: the rules changing their state in
    the meantime must not change it."""
    engine = RuleEngine(ParkModel(load_config(EXAMPLE)))
    copy = snapshot.snapshot_arrays(engine)
    state = {name: sa.array for name, sa in engine.state().items()}
    assert sorted(copy) == sorted(state)
    for name, a in state.items():
        assert copy[name].dtype == a.dtype and copy[name].shape == a.shape
        assert copy[name].flags.c_contiguous and copy[name].flags.aligned
        assert np.array_equal(copy[name], a, equal_nan=a.dtype.kind == "f"), name
        assert not np.shares_memory(copy[name], a)


def test_copies_of_a_large_rule_state_are_spread_out_to_a_share_of_the_time(
        tmp_path, monkeypatch):
    """While alarms keep changing, the rule state is copied and written at most once a
    second, and on a park whose state takes long to save, only as often as keeps that work
    within checkpoint.BUDGET of the time (capped at MAX_GAP_S)."""
    engine = RuleEngine(ParkModel(load_config(EXAMPLE)))
    clock = [1000.0]
    keeper = checkpoint.StateKeeper(engine, tmp_path, clock=lambda: clock[0])
    keeper.restore()
    keeper.start()
    saved = checkpoint.save_state

    def slow_save(*args: Any, **kwargs: Any) -> None:  # a write that takes 50 ms of the clock
        saved(*args, **kwargs)
        clock[0] += 0.05

    monkeypatch.setattr(checkpoint, "save_state", slow_save)
    try:
        keeper.changed()  # the first change is saved at once
        wait_until(lambda: keeper.saves == 1, timeout=10, what="the first copy written")
        assert keeper.gap_s == pytest.approx(0.05 / checkpoint.BUDGET) == 5.0
        keeper.changed()  # another change right after: it waits
        assert keeper.maybe_checkpoint() == pytest.approx(5.0 - 0.05)
        clock[0] += 4.9
        assert keeper.maybe_checkpoint() == pytest.approx(0.05) and keeper.saves == 1
        clock[0] += 0.1
        assert keeper.maybe_checkpoint() == float("inf")  # copied now
        wait_until(lambda: keeper.saves == 2, timeout=10, what="the second copy written")
    finally:
        keeper.close()
