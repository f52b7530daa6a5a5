"""progress.WatcherCache on a fake clock: a task's watchers read at most once a second (a task nobody watched, at
its next change), and always for its final state."""

from __future__ import annotations

from busline_core.connections import Subscriber
from busline_core.progress import WatcherCache


class Table:
    """The connections table as the cache sees it: who watches, and how often it was asked."""

    def __init__(self, *connection_ids: str) -> None:
        self.watching = [Subscriber(connection_id, "owner") for connection_id in connection_ids]
        self.reads = 0

    def read(self) -> list[Subscriber]:
        self.reads += 1
        return list(self.watching)


def test_changes_inside_a_second_read_the_watchers_once_and_a_later_one_reads_again() -> None:
    # Given a task watched by conn-1, and a cache on a fake clock
    now = [0.0]
    cache = WatcherCache(clock=lambda: now[0])
    table = Table("conn-1")
    # When changes come at 0, 0.5 and 0.99 s, conn-2 subscribing at 0.6 s, and another at 1.0 s
    seen = []
    for at, subscribes in ((0.0, None), (0.5, None), (0.6, "conn-2"), (0.99, None), (1.0, None)):
        now[0] = at
        if subscribes:
            table.watching.append(Subscriber(subscribes, "owner"))
            continue
        seen.append([s.connection_id for s in cache.of("t1", False, table.read)])
    # Then the table was read at 0 and at 1.0 s only, and conn-2 is among the watchers from then on
    assert table.reads == 2
    assert seen == [["conn-1"], ["conn-1"], ["conn-1"], ["conn-1", "conn-2"]]


def test_a_final_state_always_reads_the_watchers() -> None:
    # Given a task whose watchers were read just now, and a connection subscribing right after
    now = [0.0]
    cache = WatcherCache(clock=lambda: now[0])
    table = Table("conn-1")
    cache.of("t1", False, table.read)
    table.watching.append(Subscriber("conn-2", "owner"))
    now[0] = 0.01
    # When the task's final state comes 10 ms later / Then both connections get it
    assert [s.connection_id for s in cache.of("t1", True, table.read)] == ["conn-1", "conn-2"]
    assert table.reads == 2


def test_a_gone_connection_gets_no_more_frames_from_the_cached_watchers() -> None:
    # Given two watchers read into the cache
    cache = WatcherCache(clock=lambda: 0.0)
    table = Table("conn-1", "conn-2")
    cache.of("t1", False, table.read)
    # When conn-1 refuses a push
    cache.gone("t1", "conn-1")
    # Then the next change goes to conn-2 only, without reading the table again
    assert [s.connection_id for s in cache.of("t1", False, table.read)] == ["conn-2"]
    assert table.reads == 1


def test_the_cache_remembers_at_most_its_capacity_of_tasks() -> None:
    # Given a cache of 2 tasks that has read t1, t2 and then t3
    cache = WatcherCache(clock=lambda: 0.0, capacity=2)
    tables = {task: Table(f"conn-{task}") for task in ("t1", "t2", "t3")}
    for task, table in tables.items():
        cache.of(task, False, table.read)
    # When t1 and t3 change again / Then t1 (the oldest, forgotten) is read again, t3 is not
    cache.of("t1", False, tables["t1"].read)
    cache.of("t3", False, tables["t3"].read)
    assert [tables[task].reads for task in ("t1", "t2", "t3")] == [2, 1, 1]


def test_a_task_nobody_watched_is_read_again_at_its_next_change() -> None:
    # Given a task whose first change found no watcher, and conn-1 subscribing 60 ms later
    now = [0.0]
    cache = WatcherCache(clock=lambda: now[0])
    table = Table()
    assert cache.of("t1", False, table.read) == []
    now[0] = 0.06
    table.watching.append(Subscriber("conn-1", "owner"))
    # When the task changes again at 0.1 s
    now[0] = 0.1
    watching = [s.connection_id for s in cache.of("t1", False, table.read)]
    # Then the table is read again and conn-1 gets the change; conn-1 is then kept for a second
    assert (watching, table.reads) == (["conn-1"], 2)
    now[0] = 1.05
    cache.of("t1", False, table.read)
    assert table.reads == 2
