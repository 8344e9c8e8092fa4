"""The noise level estimate against the noise actually added: the median rule and the estimate calibrated for
clipping (what the SURE loss of the `default` denoising preset uses), per denoising case.

    python benchmarks/noise_estimate.py --data ../shared/data --crop 256 --sigmas 15 25 35 50 75

Cases are those of ``benchmarks/stopping.py`` (the development images with noise sigma 25 and scikit-image's
astronaut and coffee with clipped, 8-bit Gaussian noise of each ``--sigmas``), whole and, with ``--crop``,
also as centred crops. Prints a markdown table in grey levels (0-255): the root mean square of the noise
(observation minus ground truth; the ground truth is only measured against), the median rule, the calibrated
estimate, their errors, the calibrated estimate's time, and the level a given noise std (the sigma the
noise was drawn with, before clipping: ``noise_sigma``, CLI ``--noise-sigma``) becomes, with its error.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from neuralprior.metrics import clipped_noise_rms, estimate_noise_sigma
from stopping import cases, crop_case, drawn_sigma


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--crop", type=int, help="also each case's centred square crop of this side")
    p.add_argument("--sigmas", type=int, nargs="+", default=[15, 25, 50])
    p.add_argument("--images", nargs="+", default=["astronaut", "coffee"],
                   help="scikit-image images (skimage.data names) the synthetic noise is added to")
    args = p.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}\n")
    print("| case | noise rms | median rule | error | calibrated | error | s | given sigma | as used (rms) | error |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for case in cases(Path(args.data), args.sigmas, args.images):
        if case[1] != "denoise":
            continue
        for size in ([None, args.crop] if args.crop else [None]):
            name, _, y, gt, _, _ = crop_case(case, size)
            rms = float((y - gt).pow(2).mean().sqrt()) * 255
            median_rule = estimate_noise_sigma(y, clipped=False) * 255
            t = time.perf_counter()
            calibrated = estimate_noise_sigma(y) * 255
            seconds = time.perf_counter() - t
            sigma = drawn_sigma(name)
            given = clipped_noise_rms(y, sigma / 255) * 255
            print(f"| {name} | {rms:.2f} | {median_rule:.2f} | {median_rule - rms:+.2f} | {calibrated:.2f} | "
                  f"{calibrated - rms:+.2f} | {seconds:.2f} | {sigma} | {given:.2f} | {given - rms:+.2f} |", flush=True)


if __name__ == "__main__":
    main()
