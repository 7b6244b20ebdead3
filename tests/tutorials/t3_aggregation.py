"""Tutorial 3: linear versus tree aggregation of [1..8] with 1-second adds."""

import time

import kit as ray


@ray.remote
def add(x, y):
    time.sleep(1)
    return x + y


if __name__ == "__main__":
    ray.init(num_cpus=8)
    start = time.time()
    values = list(range(1, 9))
    total = values[0]
    for v in values[1:]:
        total = add.remote(total, v)
    linear = ray.get(total)
    linear_time = time.time() - start

    start = time.time()
    values = list(range(1, 9))
    while len(values) > 1:
        values = values[2:] + [add.remote(values[0], values[1])]
    tree = ray.get(values[0])
    tree_time = time.time() - start
    assert linear == tree == 36
    print(f"linear {linear_time:.2f} s, tree {tree_time:.2f} s")
    assert linear_time >= 7.0 and tree_time < 5.0
