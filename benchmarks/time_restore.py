"""Time one restoration and print a markdown table row: preset, device, s/it, stop, PSNR.

    python benchmarks/time_restore.py NOISY GT --task denoise --preset default [--device cuda] [--crop 256]

The numbers in docs/ name the command line and the machine that produced them.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

import neuralprior as npr
from neuralprior.latent import crop_center


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("noisy")
    p.add_argument("gt")
    p.add_argument("--task", default="denoise")
    p.add_argument("--preset", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--stop", default=None)
    p.add_argument("--iterations", type=int)
    p.add_argument("--precision")
    p.add_argument("--crop", type=int, help="centred square crop of this side")
    p.add_argument("--header", action="store_true")
    a = p.parse_args()
    y, _ = npr.load_image(a.noisy)
    gt, _ = npr.load_image(a.gt)
    if a.crop:
        y, gt = crop_center(y, a.crop, a.crop), crop_center(gt, a.crop, a.crop)
    kw = {}
    if a.iterations:
        kw["num_iter"] = a.iterations
    if a.precision:
        kw["precision"] = a.precision
    t0 = time.perf_counter()
    r = npr.restore(a.task, y, preset=a.preset, device=a.device, stop=a.stop, x_true=gt, **kw)
    wall = time.perf_counter() - t0
    dev = r.device
    if dev.startswith("cuda"):
        dev = torch.cuda.get_device_name(0)
    else:
        dev = f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
    best, best_it = r.oracle_best
    if a.header:
        print("| image | preset | device | precision | iterations | returned | s/it | wall s | PSNR | oracle peak |")
        print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {a.noisy.split('/')[-1]}{f' crop {a.crop}' if a.crop else ''} | {a.preset} | {dev} | {r.precision} "
          f"| {r.iterations_run} | {r.stopped_at} | {r.seconds / r.iterations_run:.3f} | {wall:.1f} "
          f"| {npr.psnr(r.image, gt):.2f} | {best:.2f} @ {best_it} |", flush=True)


if __name__ == "__main__":
    main()
