"""Waiting in tests: poll a condition with a timeout, never sleep and hope.

Every wait for something to happen goes through ``wait_until``; a ``time.sleep`` left
in a test is the behaviour under test (a task body that must still be running when the
test cancels it, ...). ``wait_until`` needs only the standard library, so code that a
test runs in a kernel or a subprocess can use it too::

    sys.path.insert(0, TESTS)
    from helpers import wait_until

The kit helpers (``latest_event``, ``wait_tasks``) import kit when called.
"""

import os
import queue
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
INTERVAL = 0.02  # seconds between two calls of a predicate


def wait_until(predicate, timeout=10.0, message="the condition", interval=INTERVAL):
    """Call ``predicate`` until it returns something true; return that value.

    Args:
        predicate: a function of no arguments, called at once, then every ``interval`` s.
        timeout: seconds to wait at most.
        message: what is awaited, for the failure: a string, or a function of no
            arguments (called only on failure, so it can describe the latest state).
        interval: seconds between calls (more for a costly predicate).

    Returns:
        The predicate's first true value.

    Raises:
        AssertionError: after ``timeout`` s, naming ``message`` and the last value seen.

    Example:
        >>> wait_until(lambda: [1, 2], 1, "a list")
        [1, 2]
        >>> wait_until(lambda: 0, 0.05, "a number")
        Traceback (most recent call last):
        ...
        AssertionError: timed out after 0.05 s waiting for a number (last value: 0)
    """
    __tracebackhide__ = True
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message() if callable(message) else message
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what} (last value: {value!r})"
            )
        time.sleep(interval)


def stays_true(predicate, seconds, message="the condition", interval=INTERVAL):
    """Check that ``predicate`` stays true for ``seconds``: a negative test's window (a
    timeout passes and nothing goes wrong), ended early by the first false value.

    Raises:
        AssertionError: naming ``message``, as soon as the predicate is false.

    Example:
        >>> stays_true(lambda: True, 0.05, "a constant")
    """
    __tracebackhide__ = True
    try:
        wait_until(lambda: not predicate(), seconds, message, interval)
    except AssertionError:
        return  # it held for the whole window
    what = message() if callable(message) else message
    raise AssertionError(f"{what} stopped holding within {seconds} s")


def latest_event():
    """The sequence number of kit's last task event: pass it as ``since`` to see only newer ones."""
    import kit

    return kit.events(2**62)[0]


def wait_tasks(match, state="running", count=1, since=0, timeout=10.0):
    """Wait until ``count`` tasks matching ``match`` have reached ``state`` (kit.events).

    Args:
        match: an ``ObjectRef`` (the task that makes it), a task label (``"nap"``), or
            a function of an event dict.
        state: queued, running, finished, failed or cancelled. A task is "running"
            from the moment the head sends it to a worker.
        count: how many distinct tasks.
        since: only events after this sequence number (``latest_event()``).
        timeout: seconds to wait at most.

    Returns:
        The first event in ``state`` of each task seen, ``count`` or more.

    Raises:
        AssertionError: after ``timeout`` s, with the states the matching tasks went through.
    """
    __tracebackhide__ = True
    import kit

    if isinstance(match, str):
        label, what = match, f"task(s) labelled {match!r}"
        match = lambda e: e["label"] == label  # noqa: E731
    elif isinstance(match, kit.ObjectRef):
        tid, what = match.task_id().hex(), f"task {match.task_id().hex()}"
        match = lambda e: e["task_id"] == tid  # noqa: E731
    else:
        what = "task(s) matching"
    cursor, reached, history = since, {}, []

    def enough():
        nonlocal cursor
        cursor, events = kit.events(cursor)
        for e in events:
            if match(e):
                history.append((e["task_id"][-6:], e["state"]))
                if e["state"] == state:
                    reached.setdefault(e["task_id"], e)
        return len(reached) >= count and list(reached.values())

    return wait_until(enough, timeout, lambda: f"{count} {what} {state}; seen: {history}")


def task_spans(refs):
    """``[(started, ended), ...]`` of the finished tasks that make ``refs``, from kit's
    timeline (the worker's clock): to check that tasks ran at the same time without
    timing the test."""
    import kit

    ids = [r.task_id().hex() for r in refs]
    done = {e["task_id"]: e for e in kit.timeline() if e["state"] == "finished"}
    missing = [t for t in ids if t not in done]
    assert not missing, f"no finished event for tasks {missing}"
    return [(done[t]["started"], done[t]["time"]) for t in ids]


def all_overlap(spans):
    """True if one moment lies inside every ``(start, end)`` span: they all ran together."""
    return max(s for s, _ in spans) < min(e for _, e in spans)


class Kernel:
    """A Jupyter kernel client that keeps every iopub message it reads (``km``, ``kc``:
    jupyter_client's manager and client; tests/test_magics_kernel.py starts one)."""

    def __init__(self, km, kc):
        self.km, self.kc = km, kc
        self.msgs = []

    def _read(self, timeout):
        try:
            m = self.kc.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        self.msgs.append(m)
        return m

    def submit(self, code):
        return self.kc.execute(code)

    def finish(self, msg_id, timeout=30):
        """Read until the cell's kernel goes idle; return the execute reply's content."""

        def idle():
            m = self._read(0.2)
            return (
                m is not None
                and m["parent_header"].get("msg_id") == msg_id
                and m["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"
            )

        wait_until(idle, timeout, f"cell {msg_id} to finish", interval=0)  # _read waits
        while True:
            reply = self.kc.get_shell_msg(timeout=timeout)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def run(self, code, timeout=30):
        msg_id = self.submit(code)
        reply = self.finish(msg_id, timeout)
        assert reply["status"] == "ok", (code, reply)
        return msg_id

    def wait_for(self, pred, timeout=10):
        def seen():
            if not pred():
                self._read(0.1)  # one more message, or 0.1 s
            return pred()

        wait_until(seen, timeout, "the kernel's messages", interval=0)  # _read waits

    def of(self, msg_id, msg_type=None):
        return [
            m
            for m in self.msgs
            if m["parent_header"].get("msg_id") == msg_id
            and (msg_type is None or m["msg_type"] == msg_type)
        ]

    def streams(self, msg_id=None):
        return "".join(
            m["content"]["text"]
            for m in self.msgs
            if m["msg_type"] == "stream"
            and (msg_id is None or m["parent_header"].get("msg_id") == msg_id)
        )

    def widget_state(self, model_id):
        """The state of a widget model, from its comm_open and later updates."""
        state = {}
        for m in self.msgs:
            c = m["content"]
            if m["msg_type"] in ("comm_open", "comm_msg") and c.get("comm_id") == model_id:
                state.update(c.get("data", {}).get("state", {}))
        return state

    def widget_output_text(self, msg_id):
        """All text in the Output widgets displayed by cell ``msg_id``."""
        text = ""
        for d in self.of(msg_id, "display_data"):
            view = d["content"]["data"].get("application/vnd.jupyter.widget-view+json")
            if not view:
                continue
            for child in self.widget_state(view["model_id"]).get("children", []):
                state = self.widget_state(child.replace("IPY_MODEL_", ""))
                for out in state.get("outputs", []):
                    text += out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
        return text

    def widget_status(self, msg_id):
        for d in self.of(msg_id, "display_data"):
            view = d["content"]["data"].get("application/vnd.jupyter.widget-view+json")
            if view:
                children = self.widget_state(view["model_id"]).get("children", [])
                return self.widget_state(children[0].replace("IPY_MODEL_", "")).get("value", "")
        return ""
