"""Layers and initialization built on the core API (they make ordinary graph nodes).

>>> import adjit as aj
>>> from adjit import nn
>>> layer = nn.Dense(3, 2, "sigmoid", name="1")
>>> h = layer(aj.input("x", (None, 3)))
>>> [p.name for p in layer.params], h.shape
(['W1', 'b1'], (None, 2))
"""
from .container import Sequential
from .init import (INITIALIZERS, get_initializer, glorot_normal, glorot_uniform, he_normal,
                   he_uniform, rng_from, zeros)
from .layers import ACTIVATIONS, MLP, Dense, Dropout, Linear, get_activation
from .norm import BatchNorm, LayerNorm
from .seq import RNN, Attention, Embedding

__all__ = ["ACTIVATIONS", "INITIALIZERS", "MLP", "Attention", "BatchNorm", "Dense", "Dropout", "Embedding",
           "LayerNorm", "Linear", "RNN", "Sequential", "get_activation", "get_initializer",
           "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "rng_from", "zeros"]
