"""A small model whose products go through the GEMM (shared by the tests of tests/cpu)."""
import adjit as aj


def two_layer(dt: str, n_out: int):
    """``y = tanh(x W1) W2`` with its loss ``sum(y²)`` and the gradients in x, W1, W2."""
    x = aj.input("x", (None, 300), dt)
    W1, W2 = aj.param("W1", (300, 130), dt), aj.param("W2", (130, n_out), dt)
    y = aj.tanh(x @ W1) @ W2
    loss = aj.sum(y * y)
    return [y, loss] + list(aj.grad(loss, [x, W1, W2]))
