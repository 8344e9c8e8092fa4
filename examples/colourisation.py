"""Colourisation with a user-written operator, in a few lines.

Any differentiable map F(x) -> y is a forward model for :func:`neuralprior.fit`. Here F
averages the colour channels: the observation is a grayscale photo, and the network, which
outputs three channels, is fitted so that the mean of its channels matches it. Nothing in y
says which colours to use: those come from the network alone (the prior), so expect muted,
plausible-but-arbitrary colours; only the gray levels are constrained.

    python examples/colourisation.py                      # 64x64 astronaut, 300 iterations
    python examples/colourisation.py --iterations 1000 --size 128 -o colourised.png
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from skimage import data
from skimage.transform import resize

import neuralprior
from neuralprior import FitConfig, fit, operators


class ChannelMean(operators.Operator):
    """F(x) = mean over the colour channels: (N, 3, H, W) -> (N, 1, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:     # optional: lets operators.adjoint_test check F
        return y.expand(-1, 3, -1, -1) / 3


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300, help="number of iterations (default: %(default)s)")
    parser.add_argument("--size", type=int, default=64, help="side of the image in pixels (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", help="write the colourised image to this PNG")
    args = parser.parse_args(argv)

    photo = resize(data.astronaut(), (args.size, args.size), anti_aliasing=True).astype(np.float32)
    colour = torch.from_numpy(photo).permute(2, 0, 1)[None]          # (1, 3, H, W), the truth: never shown to fit
    op = ChannelMean()
    gray = op(colour)                                               # the observation y, (1, 1, H, W)
    print(f"adjoint test of ChannelMean: {operators.adjoint_test(op, (1, 3, 8, 8)):.1e}")

    net = neuralprior.get_preset("denoise").build_network(out_channels=3, seed=args.seed)
    config = FitConfig(num_iter=args.iterations, precision="float32", reg_noise_std=0.0)
    result = fit(gray, op, net=net, config=config, seed=args.seed, device="cpu")

    scores = {"gray_match_psnr": neuralprior.psnr(op(result.image), gray),       # how well F(x) fits y
              "colour_psnr": neuralprior.psnr(result.image, colour),             # against the true colours
              "gray_as_colour_psnr": neuralprior.psnr(gray.expand(-1, 3, -1, -1), colour)}
    print(f"{result.iterations_run} iterations in {result.seconds:.1f} s: gray levels matched to "
          f"{scores['gray_match_psnr']:.2f} dB; colour PSNR {scores['colour_psnr']:.2f} dB "
          f"(the gray image itself: {scores['gray_as_colour_psnr']:.2f} dB)")
    if args.output:
        neuralprior.save_image(args.output, result.image)
        print(f"wrote {args.output}")
    return scores


if __name__ == "__main__":
    main()
