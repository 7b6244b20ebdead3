"""Tutorial 6: Monte Carlo estimate of pi with four tasks."""

import random

import kit as ray


@ray.remote
def pi4_sample(sample_count):
    in_count = 0
    for _ in range(sample_count):
        x, y = random.random(), random.random()
        if x * x + y * y <= 1:
            in_count += 1
    return in_count


if __name__ == "__main__":
    ray.init()
    SAMPLE_COUNT = 1000 * 1000
    results = ray.get([pi4_sample.remote(SAMPLE_COUNT) for _ in range(4)])
    pi = 4 * sum(results) / (4 * SAMPLE_COUNT)
    print("pi ~", pi)
    assert abs(pi - 3.14159) < 0.01
