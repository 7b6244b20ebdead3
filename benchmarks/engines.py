"""Engine adapters: one tiny common interface over kit, Ray, Dask, ipyparallel
and concurrent.futures.

Every adapter offers the same verbs, so a workload is written once:

    engine.start(slots)            # slots=None means the engine's own default
    submit = engine.task(fn)       # submit(*args) -> reference
    engine.get(ref_or_list)        # value, or list of values
    engine.put(value)              # reference to a stored value
    engine.arg(ref)                # what to pass on to a further task
    handle = engine.actor(Cls)     # only where ``has_actors``
    engine.call(handle, "m", *a)   # actor method call -> reference
    engine.shutdown()

Engines that cannot pass a reference as a task argument (ipyparallel,
concurrent.futures) set ``passes_refs = False``; ``arg`` then blocks on the
reference and passes the value, as a user of those libraries would.

Nothing heavy is imported at module import time: ``start`` (or ``load``)
imports the engine, so a workload process can time the import on its own.
"""

import os
import time

ALL_ENGINES = ("kit", "ray", "dask", "ipyparallel", "futures")


class Engine:
    """Base adapter; subclasses fill in the verbs."""

    name = ""
    passes_refs = True
    has_actors = False
    no_actor_reason = "no actor concept"

    def load(self):
        """Import the engine's module(s); returns nothing."""
        raise NotImplementedError

    def version(self):
        raise NotImplementedError

    def default_slots(self):
        return os.cpu_count() or 1

    def start(self, slots=None):
        raise NotImplementedError

    def task(self, fn):
        raise NotImplementedError

    def get(self, refs):
        if isinstance(refs, list):
            return [self.get_one(r) for r in refs]
        return self.get_one(refs)

    def get_one(self, ref):
        raise NotImplementedError

    def put(self, value):
        return value

    def is_ref(self, value):
        return False

    def arg(self, value):
        if self.passes_refs or not self.is_ref(value):
            return value
        return self.get_one(value)

    def actor(self, cls):
        raise NotImplementedError(self.no_actor_reason)

    def call(self, handle, method, *args):
        raise NotImplementedError(self.no_actor_reason)

    def shutdown(self):
        pass


class RayLike(Engine):
    """kit and Ray share one API, so they share one adapter."""

    module_name = ""
    has_actors = True

    def load(self):
        import importlib

        self.mod = importlib.import_module(self.module_name)
        if not hasattr(self.mod, "remote"):
            raise ImportError(f"{self.module_name} has no 'remote' yet")

    def version(self):
        return getattr(self.mod, "__version__", "unknown")

    def start(self, slots=None):
        if slots is None:
            self.mod.init()
        else:
            self.mod.init(num_cpus=slots)

    def task(self, fn):
        return self.mod.remote(fn).remote

    def get(self, refs):
        return self.mod.get(refs)

    def put(self, value):
        return self.mod.put(value)

    def actor(self, cls):
        return self.mod.remote(cls).remote()

    def call(self, handle, method, *args):
        return getattr(handle, method).remote(*args)

    def shutdown(self):
        self.mod.shutdown()


class Kit(RayLike):
    name = "kit"
    module_name = "kit"

    def version(self):
        version = getattr(self.mod, "__version__", None)
        if version:
            return version
        try:
            from importlib.metadata import version as dist_version

            return dist_version("nbcluster")
        except ImportError:  # PackageNotFoundError: run from a source tree
            return "source"


class Ray(RayLike):
    name = "ray"
    module_name = "ray"


class Dask(Engine):
    """dask.distributed LocalCluster: processes, one thread per worker."""

    name = "dask"
    has_actors = True  # via client.submit(Cls, actor=True)

    def load(self):
        import dask.distributed

        self.dd = dask.distributed

    def version(self):
        return self.dd.__version__

    def start(self, slots=None):
        n = slots or self.default_slots()
        self.cluster = self.dd.LocalCluster(n_workers=n, threads_per_worker=1, processes=True)
        self.client = self.dd.Client(self.cluster)

    def task(self, fn):
        submit = self.client.submit
        # pure=False: identical calls must run as separate tasks.
        return lambda *args: submit(fn, *args, pure=False)

    def get(self, refs):
        if isinstance(refs, list) and refs and isinstance(refs[0], self.dd.Future):
            return self.client.gather(refs)
        return super().get(refs)

    def get_one(self, ref):
        return ref.result()

    def put(self, value):
        return self.client.scatter(value)

    def actor(self, cls):
        return self.client.submit(cls, actor=True).result()

    def call(self, handle, method, *args):
        return getattr(handle, method)(*args)

    def shutdown(self):
        self.client.close()
        self.cluster.close()


class IPyParallel(Engine):
    """ipyparallel Cluster with a load-balanced view."""

    name = "ipyparallel"
    passes_refs = False

    def load(self):
        import ipyparallel

        self.ipp = ipyparallel

    def version(self):
        return self.ipp.__version__

    def start(self, slots=None):
        n = slots or self.default_slots()
        self.cluster = self.ipp.Cluster(n=n, log_level=40)
        self.client = self.cluster.start_and_connect_sync()
        self.view = self.client.load_balanced_view()

    def task(self, fn):
        return lambda *args: self.view.apply_async(fn, *args)

    def get_one(self, ref):
        return ref.get()

    def is_ref(self, value):
        return isinstance(value, self.ipp.AsyncResult)

    def shutdown(self):
        self.client.close()
        self.cluster.stop_cluster_sync()


class Futures(Engine):
    """concurrent.futures.ProcessPoolExecutor (the standard library)."""

    name = "futures"
    passes_refs = False

    def load(self):
        import concurrent.futures

        self.cf = concurrent.futures

    def version(self):
        import platform

        return "stdlib " + platform.python_version()

    def start(self, slots=None):
        self.pool = self.cf.ProcessPoolExecutor(max_workers=slots)

    def task(self, fn):
        return lambda *args: self.pool.submit(fn, *args)

    def get_one(self, ref):
        return ref.result()

    def is_ref(self, value):
        return isinstance(value, self.cf.Future)

    def shutdown(self):
        self.pool.shutdown(wait=True)


_CLASSES = {cls.name: cls for cls in (Kit, Ray, Dask, IPyParallel, Futures)}


def make(name):
    """A fresh, not yet loaded adapter for engine ``name``."""
    return _CLASSES[name]()


def timed_load(engine):
    """Import the engine; returns the import time in seconds."""
    t0 = time.perf_counter()
    engine.load()
    return time.perf_counter() - t0
