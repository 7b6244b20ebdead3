"""Lineage: which task made an object, kept while the object could need rebuilding.

When a node dies, the objects whose only copy lived in its shared memory are
gone. An object a task made can be made again by running that task again, if
the task's spec is still known and its retry budget is not spent; its
arguments may themselves have to be rebuilt first, so the specs of the tasks
that made them are kept too. An object made by ``kit.put`` has no lineage: if
its only copy is lost, ``get`` raises ``ObjectLostError``.

    task finishes ──▶ record(spec, owner, retries)     entry per task id
    object freed  ──▶ object_gone(oid)                 entry dropped when none of its
                                                       results is alive and no kept
                                                       entry uses one of them
    node dies     ──▶ producer(oid) -> entry           the scheduler re-runs entry.spec

Only specs are kept, never values: holding a final result keeps the recipe for
its inputs (a tuple per task, with small arguments inline), not the inputs.
This is the scheduler's bookkeeping; it is pure and touches no process.
"""

from __future__ import annotations


class Entry:
    __slots__ = ("spec", "owner", "retries", "live", "users", "parents", "cancelled")

    def __init__(self, spec, owner, retries, live, parents):
        self.spec = spec
        self.owner = owner
        self.retries = retries  # runs left (negative: forever), for crash retries and rebuilds
        self.live = live  # its result oids still in the object table
        self.users = 0  # kept entries whose tasks read one of its results
        self.parents = parents  # task ids of the entries it reads from
        self.cancelled = False  # cancelled after it finished: never run again (as Ray)


class LineageTable:
    """Specs of finished tasks whose results are alive or feed a kept entry.

    Example:
        >>> t = LineageTable()
        >>> from kit.records import TaskSpec
        >>> spec = TaskSpec.new(b"t1", "f", returns=(b"t1.0",))
        >>> t.record(spec, b"driver", 3, [b"t1.0"])
        >>> t.producer(b"t1.0").retries
        3
        >>> t.object_gone(b"t1.0"); t.producer(b"t1.0") is None
        True
    """

    def __init__(self):
        self.entries: dict = {}  # task id -> Entry
        self.made_by: dict = {}  # result oid -> task id, for kept entries

    def __len__(self):
        return len(self.entries)

    def record(self, spec, owner, retries, live) -> None:
        """A task finished; ``live`` are its result oids that are still held."""
        tid = spec.tid
        entry = self.entries.get(tid)
        if entry is not None:  # a rebuild finished: its budget went down
            entry.retries = retries
            entry.live.update(live)
            return
        if not live:
            return  # nothing to rebuild, and no one reads it later
        made_by = self.made_by
        parents = []
        for oid in spec.deps + spec.contained:
            p = made_by.get(oid)
            if p is not None:
                self.entries[p].users += 1
                parents.append(p)
        self.entries[tid] = Entry(spec, owner, retries, set(live), parents)
        for oid in spec.returns:
            made_by[oid] = tid

    def cancel(self, tid) -> None:
        """Task ``tid`` was cancelled after it finished: its results are not made again."""
        entry = self.entries.get(tid)
        if entry is not None:
            entry.cancelled = True

    def producer(self, oid):
        """The entry of the task that made ``oid``, or None (a put, or forgotten)."""
        tid = self.made_by.get(oid)
        return self.entries.get(tid) if tid is not None else None

    def object_gone(self, oid) -> None:
        """``oid`` was freed: drop entries nobody can need any more."""
        tid = self.made_by.get(oid)
        if tid is None:
            return
        entry = self.entries[tid]
        entry.live.discard(oid)
        if entry.live or entry.users:
            return
        stack = [tid]
        while stack:
            tid = stack.pop()
            entry = self.entries.pop(tid)
            for r in entry.spec.returns:
                if self.made_by.get(r) == tid:
                    del self.made_by[r]
            for p in entry.parents:
                parent = self.entries.get(p)
                if parent is None:
                    continue
                parent.users -= 1
                if parent.users == 0 and not parent.live:
                    stack.append(p)
