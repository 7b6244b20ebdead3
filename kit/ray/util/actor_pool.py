"""``ray.util.ActorPool``: work spread over a fixed set of actors, one call each at a time.

    submit(fn, v) ── an idle actor? ── yes ──▶ fn(actor, v) -> future, numbered in order
                         └─ no ──▶ _pending_submits (sent when an actor comes back)
    get_next()            ── the oldest future's value (its actor is idle again)
    get_next_unordered()  ── the first future ready
    map / map_unordered   ── submit every value now, yield as above

A future may be a list of refs (a method with ``num_returns > 1``): its value is the
list of values. A future given up on (``ignore_if_timedout``) keeps its actor busy until
it is done, then the actor is idle again.
"""

from __future__ import annotations

from kit.api import get, wait


def _refs(future) -> list:
    return list(future) if isinstance(future, (list, tuple)) else [future]


def _key(future):
    return tuple(future) if isinstance(future, list) else future


class ActorPool:
    """Run calls on a pool of actors, each actor busy with at most one call.

    Args:
        actors: the actor handles to use.

    Example:
        >>> import kit
        >>> from kit.ray.util import ActorPool
        >>> @kit.remote
        ... class Doubler:
        ...     def double(self, x):
        ...         return 2 * x
        >>> pool = ActorPool([Doubler.remote(), Doubler.remote()])
        >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3]))
        [2, 4, 6]
    """

    def __init__(self, actors):
        self._idle_actors = list(actors)
        self._future_of_index: dict = {}  # submission number -> future, not yet returned
        self._index_of_key: dict = {}
        self._actor_of_key: dict = {}  # future's key -> (future, actor), while it runs
        self._abandoned: list = []  # keys given up on by get_next(ignore_if_timedout=True)
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits: list = []

    # ---- submitting --------------------------------------------------------------

    def submit(self, fn, value) -> None:
        """Call ``fn(actor, value)`` on an idle actor (``fn`` returns the future), or queue it.

        Example:
            >>> pool.submit(lambda a, v: a.double.remote(v), 4)  # doctest: +SKIP
        """
        self._reclaim()
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        future = fn(actor, value)
        key = _key(future)
        self._future_of_index[self._next_task_index] = future
        self._index_of_key[key] = self._next_task_index
        self._actor_of_key[key] = (future, actor)
        self._next_task_index += 1

    def map(self, fn, values):
        """Submit ``fn(actor, v)`` for every value now; yield the results in order."""
        self._drop_unreturned()
        for v in values:
            self.submit(fn, v)
        return self._results(self.get_next)

    def map_unordered(self, fn, values):
        """Like ``map``, but yield the results as they finish."""
        self._drop_unreturned()
        for v in values:
            self.submit(fn, v)
        return self._results(self.get_next_unordered)

    def _results(self, take):
        while self.has_next():
            yield take()

    def _drop_unreturned(self):
        """Results of earlier submits that are not ready are not map's: give up on them."""
        while self.has_next():
            try:
                self.get_next(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass

    # ---- results -----------------------------------------------------------------

    def has_next(self) -> bool:
        """Whether some submitted call's result has not been returned yet."""
        return bool(self._future_of_index)

    def get_next(self, timeout=None, ignore_if_timedout=False):
        """The result of the oldest call not returned yet (waits for it).

        Raises:
            StopIteration: nothing is pending.
            TimeoutError: not ready within ``timeout`` seconds (with
                ``ignore_if_timedout``, None is returned and the call is given up on).
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        index = self._next_return_index
        while index not in self._future_of_index:
            index += 1
        future = self._future_of_index[index]
        if timeout is not None:
            refs = _refs(future)
            ready, _ = wait(refs, num_returns=len(refs), timeout=timeout)
            if len(ready) < len(refs):
                if not ignore_if_timedout:
                    raise TimeoutError(f"the result was not ready within {timeout} s")
                self._forget(index, future)
                self._abandoned.append(_key(future))
                return None
        self._forget(index, future)
        _, actor = self._actor_of_key.pop(_key(future))
        self._return_actor(actor)
        return get(future)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        """The result of any pending call, the first one ready.

        Raises:
            StopIteration: nothing is pending.
            TimeoutError: none was ready within ``timeout`` seconds (None instead, with
                ``ignore_if_timedout``).
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        firsts = {_refs(f)[0]: f for f in self._future_of_index.values()}
        ready, _ = wait(list(firsts), num_returns=1, timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                return None
            raise TimeoutError(f"no result was ready within {timeout} s")
        future = firsts[ready[0]]
        self._forget(self._index_of_key[_key(future)], future)
        _, actor = self._actor_of_key.pop(_key(future))
        self._return_actor(actor)
        return get(future)

    def _forget(self, index, future):
        del self._future_of_index[index]
        self._index_of_key.pop(_key(future), None)
        if index == self._next_return_index:
            self._next_return_index += 1
            while (
                self._next_return_index < self._next_task_index
                and self._next_return_index not in self._future_of_index
            ):
                self._next_return_index += 1

    # ---- actors ------------------------------------------------------------------

    def _reclaim(self):
        """Actors whose given-up calls have finished are idle again."""
        for key in list(self._abandoned):
            future, actor = self._actor_of_key[key]
            refs = _refs(future)
            ready, _ = wait(refs, num_returns=len(refs), timeout=0)
            if len(ready) == len(refs):
                self._abandoned.remove(key)
                del self._actor_of_key[key]
                self._idle_actors.append(actor)

    def _return_actor(self, actor):
        self._idle_actors.append(actor)
        while self._idle_actors and self._pending_submits:
            self.submit(*self._pending_submits.pop(0))

    def has_free(self) -> bool:
        """Whether an actor is idle and no submit is waiting for one."""
        self._reclaim()
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self):
        """Take an idle actor out of the pool (None if none is free)."""
        return self._idle_actors.pop() if self.has_free() else None

    def push(self, actor) -> None:
        """Add an actor to the pool (it takes a waiting submit at once, if any).

        Raises:
            ValueError: the actor is already in this pool.
        """
        busy = [a for _, a in self._actor_of_key.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("the actor already belongs to this ActorPool")
        self._return_actor(actor)
