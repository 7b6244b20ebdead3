"""A joblib backend: ``joblib.Parallel`` (and scikit-learn's ``n_jobs``) on a kit cluster.

    Parallel ──submit(batch)──▶ KitBackend ──▶ large args: kit.put once per call
                                    │          (cached by id(arg) until stop_call)
                                    ▼
                Executor._submit(run_batch, batch, *refs) ──▶ one kit task per batch
    Parallel ◀── callback (executor thread) ◀── Future done

Each joblib batch (joblib sizes them automatically) becomes one kit task
named ``joblib:<function>``. Arguments larger than kit's inline limit
(numpy arrays, pandas objects, bytes over 100 KiB) are put in the object store
once per ``Parallel`` call and travel as top-level refs, so every task reads
the same shared copy. ``n_jobs=-1`` means the cluster's CPUs.

joblib is imported only by ``register()``, so ``import kit`` stays light.
"""

from __future__ import annotations

import copy

from .serialization import INLINE_LIMIT

BACKEND_NAME = "kit"
_registered = {}


def register(make_default=False):
    """Make ``"kit"`` a joblib backend (starting a local cluster on first use if needed).

    Args:
        make_default: also make it joblib's default backend.

    Example:
        >>> import joblib, kit
        >>> kit.joblib.register()
        >>> with joblib.parallel_backend("kit"):
        ...     joblib.Parallel(n_jobs=-1)(joblib.delayed(abs)(-i) for i in range(3))
        [0, 1, 2]
    """
    import joblib

    cls = _registered.get("cls")
    if cls is None:
        cls = _registered["cls"] = _backend_class()
    joblib.register_parallel_backend(BACKEND_NAME, cls, make_default=make_default)


class _Slot(int):
    """Stands in a batch for the i-th large argument, passed to the task as a ref."""


def run_batch(batch, *values):
    """The task: put the shared values back into the batch's calls and run them."""

    def fill(a):
        return values[a] if type(a) is _Slot else a

    if values:
        batch.items = [
            (f, [fill(a) for a in args], {k: fill(v) for k, v in kwargs.items()})
            for f, args, kwargs in batch.items
        ]
    return batch()


def nbytes(value) -> int:
    """The size of a value's data if it is array-like (numpy, pandas, bytes), else 0."""
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    n = getattr(value, "nbytes", None) if hasattr(type(value), "nbytes") else None
    if isinstance(n, int) and not isinstance(n, bool):
        return n
    if type(value).__module__.startswith("pandas") and hasattr(value, "memory_usage"):
        try:
            return int(value.memory_usage(index=True).sum())
        except Exception:
            return 0
    return 0


def _cluster_cpus() -> int:
    from .api import _client, cluster_resources

    _client()  # starts a local cluster if kit is not initialized
    return max(int(cluster_resources().get("CPU", 1)), 1)


def _backend_class():  # noqa: C901 (a class built on first use, so joblib loads only then)
    from joblib._parallel_backends import AutoBatchingMixin, ParallelBackendBase

    from .executor import Executor, label_of

    class KitBackend(AutoBatchingMixin, ParallelBackendBase):
        """joblib's view of kit: batches become kit tasks, results come by callback."""

        supports_retrieve_callback = True
        default_n_jobs = -1
        uses_threads = False
        supports_sharedmem = False

        def __init__(self, nesting_level=None, inner_max_num_threads=None, **kwargs):
            # the options of every task (``task_options``, or Ray's ``ray_remote_args``)
            self._task_options = kwargs.pop("task_options", None) or kwargs.pop(
                "ray_remote_args", None
            )
            super().__init__(
                nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads, **kwargs
            )
            self._executor = None
            self._shared = {}  # id(arg) -> (arg, ref): one put per Parallel call

        def effective_n_jobs(self, n_jobs):
            if n_jobs == 0:
                raise ValueError(
                    "n_jobs == 0 in Parallel has no meaning; pass -1 for all of the cluster's CPUs"
                )
            if n_jobs is None:
                n_jobs = self.default_n_jobs
            if n_jobs < 0:
                n_jobs = max(_cluster_cpus() + 1 + n_jobs, 1)
            return n_jobs

        def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **kwargs):
            n = self.effective_n_jobs(n_jobs)
            self.parallel = parallel
            if self._executor is None:
                self._executor = Executor(task_options=self._task_options)
            return n

        def start_call(self):
            self._shared = {}

        def stop_call(self):
            self._shared = {}

        def terminate(self):
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None
            self._shared = {}
            self.reset_batch_stats()

        def abort_everything(self, ensure_ready=True):
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor._cancel_all()
                self._executor = None
            if ensure_ready:
                self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel)

        def submit(self, func, callback=None):
            refs = []
            items = [
                (
                    f,
                    [self._share(a, refs) for a in args],
                    {k: self._share(v, refs) for k, v in kwargs.items()},
                )
                for f, args, kwargs in func.items
            ]
            batch = copy.copy(func)
            batch.items = items
            name = "joblib:" + (label_of(items[0][0]) if items else "batch")
            fut = self._executor._submit(run_batch, (batch, *(r for _, r in refs)), {}, name)
            if callback is not None:
                fut.add_done_callback(callback)
            return fut

        def _share(self, value, refs):
            if nbytes(value) <= INLINE_LIMIT:
                return value
            key = id(value)
            entry = self._shared.get(key)
            if entry is None:
                from .api import put

                entry = self._shared[key] = (value, put(value))  # value kept: id stays unique
            for i, (k, _) in enumerate(refs):
                if k == key:
                    return _Slot(i)
            refs.append((key, entry[1]))
            return _Slot(len(refs) - 1)

        def retrieve_result_callback(self, out):
            return out.result()

    return KitBackend
