"""Estimated versus measured memory of a fit (CPU): one case per process, so max RSS is its own.

    python benchmarks/memory.py            # runs every case in a subprocess and prints a table
"""
from __future__ import annotations

import resource
import subprocess
import sys

import torch

CASES = [("light", 512, "float32"), ("light", 512, "bfloat16"), ("paper", 512, "float32"), ("light", 1024, "float32")]
LIGHT = dict(channels_down=[16, 32, 64, 128, 128], channels_up=[16, 32, 64, 128, 128])


def one(kind: str, size: int, precision: str) -> None:
    from neuralprior import FitConfig, fit
    from neuralprior.memory import estimate_fit_bytes
    from neuralprior.networks import SkipNet

    net = SkipNet(**({} if kind == "paper" else LIGHT))
    est = estimate_fit_bytes(net, (size, size), window=50)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fit(torch.rand(1, 3, size, size), net=net, config=FitConfig(num_iter=2, precision=precision), device="cpu",
        stop="auto")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"| {kind} | {size}x{size} | {precision} | {est / 2**20:.0f} MiB | {(peak - base) / 1024:.0f} MiB |")


if __name__ == "__main__":
    if len(sys.argv) == 4:
        one(sys.argv[1], int(sys.argv[2]), sys.argv[3])
    else:
        print("| network | image | precision | estimate | measured (max RSS growth) |\n|---|---|---|---|---|")
        for case in CASES:
            subprocess.run([sys.executable, __file__, *map(str, case)], check=True)
