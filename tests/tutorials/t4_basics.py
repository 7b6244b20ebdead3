"""Tutorial 4: a map of squares; counters; calls without waiting."""

import kit as ray


@ray.remote
def f(x):
    return x * x


@ray.remote
class Counter(object):
    def __init__(self):
        self.value = 0

    def inc(self):
        self.value += 1

    def get_value(self):
        return self.value


if __name__ == "__main__":
    ray.init()
    futures = [f.remote(i) for i in range(4)]
    assert ray.get(futures) == [0, 1, 4, 9]
    counters = [Counter.remote() for i in range(4)]
    [c.inc.remote() for c in counters for _ in range(3)]
    futures = [c.get_value.remote() for c in counters]
    assert ray.get(futures) == [3, 3, 3, 3]
    c = Counter.remote()
    c.inc.remote()
    c.inc.remote()
    assert ray.get(c.get_value.remote()) == 2
    print("basics ok")
