"""Time one restoration and print a markdown table row: preset, device, s/it, stop, PSNR, peak memory.

    python benchmarks/time_restore.py NOISY GT --task denoise --preset default [--device cuda] [--crop 256]

Wall time counts everything from the call (on CUDA: the first use of the device and the graph's
recording too). Peak memory: CUDA's largest allocation total, or the process's maximum RSS on the CPU.
The numbers in docs/ name the command line and the machine that produced them.
"""
from __future__ import annotations

import argparse
import platform
import resource
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
    p.add_argument("--no-cuda-graph", action="store_true", help="plain passes on CUDA (no recorded graph)")
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
    if a.no_cuda_graph:
        kw["cuda_graph"] = False
    t0 = time.perf_counter()
    r = npr.restore(a.task, y, preset=a.preset, device=a.device, stop=a.stop, x_true=gt, **kw)
    wall = time.perf_counter() - t0
    dev = r.device
    if dev.startswith("cuda"):
        dev = (torch.cuda.get_device_name(0) + ("" if r.config["cuda_graph"] else ", no graph")
               + (", SURE pair batched" if r.config.get("sure_batched") is True else ""))
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        dev = f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best, best_it = r.oracle_best
    if a.header:
        print("| image | preset | device | precision | iterations | returned | s/it | wall s | PSNR | oracle peak "
              "| peak MiB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {a.noisy.split('/')[-1]}{f' crop {a.crop}' if a.crop else ''} | {a.preset} | {dev} | {r.precision} "
          f"| {r.iterations_run} | {r.stopped_at} | {r.seconds / r.iterations_run:.3f} | {wall:.1f} "
          f"| {npr.psnr(r.image, gt):.2f} | {best:.2f} @ {best_it} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
