"""neuralprior: restore images with untrained neural networks (Deep Image Prior).

>>> import torch, neuralprior
>>> from neuralprior import operators, networks
>>> y = torch.rand(1, 3, 32, 32)
>>> net = networks.SkipNet(channels_down=[8, 8], channels_up=[8, 8], channels_skip=2, in_channels=8)
>>> result = neuralprior.fit(y, operators.Identity(), net=net, config=neuralprior.FitConfig(num_iter=3), device="cpu")
>>> result.image.shape
torch.Size([1, 3, 32, 32])
"""
from . import networks, operators
from ._validation import NeuralPriorError
from .config import FitConfig
from .fit import FitResult, FitState, fit
from .io import load_image, load_mask, save_image
from .metrics import psnr, ssim
from .presets import Preset, get_preset, preset_table
from .stopping import FixedIterations, HeldOutError, StoppingRule, WindowedVariance
from .tasks import (MRIResult, deblur, denoise, flash_no_flash, inpaint, mri, reconstruct, remove_jpeg_artifacts,
                    restore, super_resolve)

__version__ = "0.1.0"

__all__ = [
    "fit", "FitConfig", "FitResult", "FitState", "NeuralPriorError",
    "denoise", "inpaint", "super_resolve", "remove_jpeg_artifacts", "reconstruct", "restore",
    "deblur", "mri", "flash_no_flash", "MRIResult",
    "get_preset", "preset_table", "Preset", "StoppingRule", "WindowedVariance", "HeldOutError", "FixedIterations",
    "load_image", "load_mask", "save_image", "psnr", "ssim", "networks", "operators", "__version__",
]
