"""Tutorial 1: sixteen sleeping tasks, with kit and with concurrent.futures."""

import time
from concurrent.futures import ProcessPoolExecutor

import kit as ray

SLEEPS = [0.1, 0.2, 0.1, 0.5, 0.7, 0.9, 0.5, 0.4, 1.5, 1.3, 1.0, 0.3, 0.7, 0.6, 0.3, 0.8]


def sleep_plain(t):
    time.sleep(t)
    return f"Sleep time {t}"


@ray.remote
def sleep_task(t):
    time.sleep(t)
    return f"Sleep time {t}"


if __name__ == "__main__":
    ray.init(num_cpus=16)
    start = time.time()
    futures = [sleep_task.remote(t) for t in SLEEPS]
    results = ray.get(futures)
    kit_time = time.time() - start
    assert results == [f"Sleep time {t}" for t in SLEEPS], results
    ray.shutdown()
    with ProcessPoolExecutor(16) as ex:
        start = time.time()
        pool_results = list(ex.map(sleep_plain, SLEEPS))
        pool_time = time.time() - start
    assert pool_results == results
    print(f"kit {kit_time:.2f} s, process pool {pool_time:.2f} s")
    assert kit_time < sum(SLEEPS)  # ran in parallel
