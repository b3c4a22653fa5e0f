"""Layers and initialization built on the core API (they make ordinary graph nodes).

>>> import adjit as aj
>>> from adjit import nn
>>> layer = nn.Dense(3, 2, "sigmoid", name="1")
>>> h = layer(aj.input("x", (None, 3)))
>>> [p.name for p in layer.params], h.shape
(['W1', 'b1'], (None, 2))
"""
from .container import Sequential
from .conv import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveMaxPool1d, AdaptiveMaxPool2d,
                   AvgPool1d, AvgPool2d, Conv1d, Conv2d, Flatten, MaxPool1d,
                   MaxPool2d, ReLU)
from .init import (INITIALIZERS, get_initializer, glorot_normal, glorot_uniform, he_normal,
                   he_uniform, rng_from, zeros)
from .layers import ACTIVATIONS, MLP, Dense, Dropout, Linear, get_activation
from .norm import BatchNorm, BatchNorm1d, BatchNorm2d, LayerNorm
from .seq import RNN, Attention, Embedding

__all__ = ["ACTIVATIONS", "INITIALIZERS", "MLP", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
           "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "Attention", "AvgPool1d",
           "AvgPool2d", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "Conv1d", "Conv2d", "Dense",
           "Dropout", "Embedding", "Flatten", "MaxPool1d", "MaxPool2d", "ReLU",
           "LayerNorm", "Linear", "RNN", "Sequential", "get_activation", "get_initializer",
           "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "rng_from", "zeros"]
