"""The inbox: the first stage of the alarm path, where drivers drop their raw input.

What goes in is of two sorts, told apart by their class:

* **input**, one :data:`Item` per message or reading: a plain tuple whose first field is its
  :class:`Source` (the driver that decodes it, on the pipeline thread, in bulk) and whose
  other fields are that source's own, named by the driver's type of item
  (:data:`parkwatch.drivers.base.Reading`, :data:`parkwatch.drivers.mqtt.driver.Message`,
  :data:`parkwatch.drivers.mqtt.process.Frame`).  A plain tuple, not a NamedTuple: one is
  built per reading, 100,000 and more a second, and a NamedTuple's constructor costs ten
  times a tuple's.
* **control**, the pipeline's own work, each of a class of its own (:data:`CONTROL`):
  :class:`Call` (work run on the pipeline thread in turn with the input), :class:`Barrier`
  (the same, waited for), :data:`WAKE` (urgent input waits) and :data:`STOP`.

Fire-button input goes into an urgent lane of its own (:meth:`Inbox.put_urgent`), evaluated
before the ordinary queue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, Protocol

from parkwatch.readings import ReadingBatch


class Source(Protocol):
    """Who decodes an input item: a driver.  It may also have ``settle(items)``, called once
    the alarm changes its items caused are committed (an MQTT driver acknowledges them)."""

    def decode(self, items: list[Any]) -> ReadingBatch: ...


#: one message or reading of input: its source first, then the source's own fields
Item = tuple[Source, *tuple[Any, ...]]


class Stop:
    """Ends the pipeline's loop, after everything queued before it."""

    __slots__ = ()


class Wake:
    """Wakes the pipeline for input waiting in the urgent lane."""

    __slots__ = ()


STOP = Stop()
WAKE = Wake()


class Call:
    """Work run on the pipeline thread (the owner of the alarms and the counters), after the
    input queued before it is evaluated and before any queued after it."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn


class Barrier:
    """Work that must run between batches, never inside one: a reload swaps the rule engine
    here, so no batch is decoded for one park and evaluated by another.  The caller waits for
    it, and may give up first (`cancel`): then it never runs, and nothing has changed."""

    __slots__ = ("_lock", "_state", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._state = "waiting"  # → running → done, or → cancelled

    def run(self) -> None:
        with self._lock:
            if self._state != "waiting":
                return
            self._state = "running"
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout: float) -> Any:
        """The work's result; TimeoutError (and the work cancelled) when the pipeline did not
        get to it in time."""
        if not self.done.wait(timeout):
            with self._lock:
                if self._state == "waiting":
                    self._state = "cancelled"
                    raise TimeoutError("the alarm pipeline did not get to it in time")
            self.done.wait()  # it started just now: let it finish, it cannot be undone
        if self.error is not None:
            raise self.error
        return self.result


#: the pipeline's own work in the queue (one set lookup tells it from input)
Control = Stop | Wake | Call | Barrier
CONTROL: frozenset[type] = frozenset({Stop, Wake, Call, Barrier})


class Inbox:
    """Where drivers drop raw input, decoded later in bulk; fire-button input in an urgent
    lane of its own, evaluated first."""

    def __init__(self) -> None:
        self.queue: SimpleQueue[Item | Control] = SimpleQueue()
        #: the drivers' way in, one item at a time (the queue's own method: no extra call)
        self.put = self.queue.put
        self.urgent: SimpleQueue[Item] = SimpleQueue()

    def put_urgent(self, item: Item) -> None:
        """Input that must not wait behind the ordinary queue (a fire button's)."""
        self.urgent.put(item)
        self.queue.put(WAKE)

    def call(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on the pipeline thread, in turn with the input."""
        self.queue.put(Call(fn))

    def barrier(self, fn: Callable[[], Any]) -> Barrier:
        """Run ``fn()`` on the pipeline thread after every item queued before it and before
        any queued after it; wait on the returned :class:`Barrier`."""
        barrier = Barrier(fn)
        self.queue.put(barrier)
        return barrier
