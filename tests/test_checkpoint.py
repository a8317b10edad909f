"""The rule-state keeper's writer thread: what it holds between two checkpoints."""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import numpy as np

import parkwatch.daemon.checkpoint as checkpoint
from conftest import wait_until
from parkwatch.config.loader import load_config
from parkwatch.park import ParkModel
from parkwatch.rules.engine import RuleEngine

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
