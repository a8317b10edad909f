"""The dispatcher holds the couriers and swaps them: the whole set (at the start, and a reload's
new set) and one replaced target's courier, never two on one target at once.

Stand-in couriers record what is done to them; no broker, no store."""

from __future__ import annotations

from typing import Any

from parkwatch.alarms.dispatch import Dispatcher
from parkwatch.config.delivery import UPLINK


class FakeCourier:
    def __init__(self, name: str, log: list[str], counts: tuple[int, int, int] = (0, 0, 0)):
        self.name, self.log = name, log
        self.delivered, self.failures, self.expired = counts

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    def stop(self, timeout: float = 5.0) -> None:
        self.log.append(f"stop {self.name}")

    def wake(self) -> None:
        self.log.append(f"wake {self.name}")


def test_use_replaces_the_set_whole_and_start_stop_reach_every_courier() -> None:
    log: list[str] = []
    dispatcher = Dispatcher()
    first: dict[str, Any] = {UPLINK: FakeCourier("up", log)}
    dispatcher.use(first)
    second: dict[str, Any] = {UPLINK: first[UPLINK], "ops": FakeCourier("ops", log)}
    dispatcher.use(second)
    assert dispatcher.couriers is second and first == {UPLINK: second[UPLINK]}  # not in place
    dispatcher.start()
    dispatcher.stop(0.1)
    assert log == ["start up", "start ops", "stop up", "stop ops"]


def test_hand_over_stops_the_old_courier_before_the_new_one_starts_and_keeps_its_counts() -> None:
    log: list[str] = []
    dispatcher = Dispatcher()
    old = FakeCourier("old", log, counts=(7, 2, 1))
    before: dict[str, Any] = {UPLINK: FakeCourier("up", log), "hook": old}
    dispatcher.use(before)
    new = FakeCourier("new", log)
    dispatcher.hand_over("hook", new)
    assert log == ["stop old", "start new", "wake new"]
    assert dispatcher.couriers["hook"] is new and dispatcher.couriers[UPLINK] is before[UPLINK]
    assert before["hook"] is old  # a reader holding the old mapping still sees one whole set
    assert (new.delivered, new.failures, new.expired) == (7, 2, 1)
