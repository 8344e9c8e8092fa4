"""Generators x = f_theta(z) used as image priors.

Every network exposes ``in_channels`` (depth of z), ``out_channels``, ``multiple``
(the output height and width must be multiples of it; :func:`neuralprior.fit` pads
and crops back) and ``latent_size(h, w)`` (the spatial size of z).
"""
from .decoder import DeepDecoder
from .lab import EncoderDecoder
from .layers import count_parameters
from .skip import SkipConfig, SkipNet, set_fused

__all__ = ["SkipNet", "SkipConfig", "EncoderDecoder", "DeepDecoder", "count_parameters", "set_fused"]
