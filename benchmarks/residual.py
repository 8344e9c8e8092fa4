"""Quality and data residual of a fit, per iteration: is the fit still converging where it stops?

    python benchmarks/residual.py --case sr4-butterfly --iterations 3000 --every 100

Runs the ``default`` preset of a case of ``benchmarks/stopping.py`` (as ``benchmarks/levers.py --case``
names them) without stopping and prints, every ``--every`` iterations, the quality of the estimate (the
output average; RGB PSNR, or Y PSNR with 4 pixels shaved for super-resolution) and the root mean square
of its data residual A(estimate) - y, and of the raw output's, in 8-bit grey levels (over the known
pixels for inpainting): where the residual still falls fast, the fit has not converged, and no stop
before that point keeps the quality. At the end: the best estimate and the first iteration within
0.5 dB of it (iterations counted from 1). Ground truth is only measured.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

import neuralprior as npr
from levers import problem


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", required=True, help="a case of benchmarks/stopping.py, read from --data")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--crop", type=int, help="denoising, inpainting and JPEG cases: centred square crop")
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--device", default="auto")
    a = p.parse_args()
    if a.iterations < 1 or a.every < 1 or (a.crop is not None and a.crop < 1):
        raise SystemExit("error: --iterations, --every and --crop must be positive")
    a.noisy = a.gt = None
    task, y, gt, op, metric, label = problem(a)
    inpaint = task == "inpaint"
    print(f"{label}, default preset, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print("| iteration | quality | residual of the output average | residual of the raw output | s |\n|---|---|---|---|---|")
    quality: list[float] = []
    t0 = time.perf_counter()

    def rms(x):             # of the data residual, in grey levels
        with torch.no_grad():
            r = op(x.detach().float().cpu().clamp(0, 1)) - (op.mask * y if inpaint else y)
            n = op.mask.expand_as(r).sum() if inpaint else r.numel()
            return float((r.square().sum() / n).sqrt()) * 255

    def show(s):
        quality.append(metric(s.estimate.cpu(), gt))
        if (s.iteration + 1) % a.every == 0:
            print(f"| {s.iteration + 1} | {quality[-1]:.2f} | {rms(s.average):.3f} | {rms(s.output):.3f} | "
                  f"{time.perf_counter() - t0:.0f} |", flush=True)
    kw = dict(mask=op.mask) if inpaint else dict(factor=op.factor) if task == "super-resolve" else {}
    try:
        npr.restore(task, y, stop="none", num_iter=a.iterations, callback=show, device=a.device, **kw)
    except npr.NeuralPriorError as e:
        raise SystemExit(f"error: {e}") from None
    best = max(range(len(quality)), key=quality.__getitem__)
    near = next(i for i, q in enumerate(quality) if q >= quality[best] - 0.5)
    print(f"best: {quality[best]:.2f} at iteration {best + 1}; within 0.5 dB of it from iteration {near + 1}")


if __name__ == "__main__":
    main()
