"""What the chunks of one SQS batch leave for the batch's end: their events and their counts.

A transform or load invocation receives up to the mapping's BatchSize chunks. Each chunk's own work (its
GET, its COPY or PUTs) is done record by record; what every chunk of a task would otherwise pay for
separately waits for the end of the batch and is paid once per task there: one PutEvents for its
ChunkTransformed events, one conditional write counting all its chunks (lifecycle.chunks_counted), and,
at the start, one standing read per task and phase (etl_steps._plan_of). That is what brings a chunk
under a dozen AWS calls end to end.

The order a single chunk keeps is kept: its output is in S3 before the batch ends, and its event is
published before it is counted, so no count stands for a chunk whose event was lost. When finishing a
task's chunks fails, every record whose work it was finishing is reported failed and delivered again;
their work is deterministic, and the count's condition and load's ledger keep its effect once.
Outside an SQS batch (a test driving a step by hand) a chunk is finished at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .contracts import Phase
from .task_state import ChunkCounted


@dataclass(frozen=True)
class ChunkDone:
    """A chunk whose work is done and stored, waiting to be announced (transform) and counted."""

    task_id: str
    count: ChunkCounted
    correlation_id: str | None
    announcement: tuple[str, BaseModel] | None = None  # (detail-type, detail) of the event it publishes
    output_key: str | None = None  # what transform wrote: deleted if the task was cancelled meanwhile


Standing = tuple[bool, frozenset[int]]  # (work on the task dropped, the chunks counted in the phase)


@dataclass
class BatchEnd:
    """One invocation's chunks done, by the record that did each; open only while a batch runs."""

    is_open: bool = False
    _claimed: list[tuple[Any, ChunkDone]] = field(default_factory=list)
    _unclaimed: list[ChunkDone] = field(default_factory=list)
    _standing: dict[tuple[str, Phase], Standing] = field(default_factory=dict)

    def open(self) -> None:
        self.is_open = True
        self._claimed.clear()
        self._unclaimed.clear()
        self._standing.clear()

    def add(self, done: ChunkDone) -> None:
        self._unclaimed.append(done)

    def claim(self, record: Any) -> None:
        """`record`'s work succeeded: what it left is finished with the batch, or fails with it."""
        self._claimed.extend((record, done) for done in self._unclaimed)
        self._unclaimed.clear()

    def drop_unclaimed(self) -> None:
        """The running record failed: what it left is not finished (SQS delivers it again)."""
        self._unclaimed.clear()

    def standing(self, task_id: str, phase: Phase, read: Callable[[], Standing]) -> Standing:
        """The task's standing in `phase`, read once per batch: a chunk counted meanwhile by a concurrent
        duplicate is done twice, and counted once (the count's condition)."""
        key = (task_id, phase)
        if not self.is_open:
            return read()
        if key not in self._standing:
            self._standing[key] = read()
        return self._standing[key]

    def close(self) -> list[tuple[str, list[tuple[Any, ChunkDone]]]]:
        """What the batch left, by task in the order the tasks first came; the batch is closed."""
        by_task: dict[str, list[tuple[Any, ChunkDone]]] = {}
        for record, done in self._claimed:
            by_task.setdefault(done.task_id, []).append((record, done))
        self.open()
        self.is_open = False
        return list(by_task.items())
