"""Quality and data residual of a fit, per iteration: is the fit still converging where it stops?

    python benchmarks/residual.py --case sr4-butterfly --iterations 3000 --every 100

Runs the ``default`` preset of a case of ``benchmarks/stopping.py`` without stopping and prints, every
``--every`` iterations, the quality of the estimate (the output average; RGB PSNR, or Y PSNR with 4
pixels shaved for super-resolution) and the root mean square of its data residual A(estimate) - y,
and of the raw output's, in 8-bit grey levels: where the residual still falls fast, the fit has not
converged, and no stop before that point keeps the quality. Ground truth is only measured.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

import neuralprior as npr
from neuralprior.tasks import _operator
from stopping import cases, crop_case


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", required=True, help="a case of benchmarks/stopping.py, read from --data")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--crop", type=int, help="denoising and inpainting cases: centred square crop")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    found = [c for c in cases(Path(a.data), (), ()) if c[0] == a.case]
    if not found:
        raise SystemExit(f"error: no case {a.case!r} in {a.data}")
    name, task, y, gt, kw, metric = crop_case(found[0], a.crop)
    op = _operator(task, y, kw.get("mask"), kw.get("factor"))
    print(f"{name}, default preset, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print("| iteration | quality | residual of the estimate | residual of the raw output | s |\n|---|---|---|---|---|")
    t0 = time.perf_counter()

    def rms(x):             # of the data residual, in grey levels (over the fitted pixels for inpainting)
        with torch.no_grad():
            r = op(x.detach().float().cpu().clamp(0, 1)) - op.mask * y if task == "inpaint" else \
                op(x.detach().float().cpu().clamp(0, 1)) - y
            n = op.mask.expand_as(r).sum() if task == "inpaint" else r.numel()
            return float((r.square().sum() / n).sqrt()) * 255

    def show(s):
        if (s.iteration + 1) % a.every == 0:
            print(f"| {s.iteration + 1} | {metric(s.estimate.cpu(), gt):.2f} | {rms(s.estimate):.3f} | "
                  f"{rms(s.output):.3f} | {time.perf_counter() - t0:.0f} |", flush=True)
    npr.restore(task, y, stop="none", num_iter=a.iterations, callback=show, device=a.device,
                **{k: v for k, v in kw.items() if k in ("mask", "factor")})


if __name__ == "__main__":
    main()
