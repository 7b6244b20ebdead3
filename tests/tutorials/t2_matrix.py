"""Tutorial 2: a graph of matrix tasks; refs passed as arguments."""

import numpy as np

import kit as ray


@ray.remote
def create_matrix(size):
    return np.random.normal(size=size)


@ray.remote
def multiply_matrices(x, y):
    return np.dot(x, y)


@ray.remote
def sum_matrices(x, y):
    return np.add(x, y)


if __name__ == "__main__":
    ray.init()
    x = create_matrix.remote([1000, 1000])
    y = create_matrix.remote([1000, 1000])
    z = create_matrix.remote([1000, 1000])
    w = create_matrix.remote([1000, 1000])
    xy = multiply_matrices.remote(x, y)
    zw = multiply_matrices.remote(z, w)
    s = sum_matrices.remote(xy, zw)
    result = ray.get(s)
    X, Y, Z, W = ray.get([x, y, z, w])
    assert result.shape == (1000, 1000)
    assert np.allclose(result, X @ Y + Z @ W)
    print("matrix graph ok", result.shape)
