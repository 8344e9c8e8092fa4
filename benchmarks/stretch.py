"""The stretch after the held-out inpainting stop, measured directly: fit with 5% of the known pixels
held out (as ``restore()`` does) for ``N`` iterations, then go on with every known pixel for ``K``
more; beside it, the fit on every known pixel from the start. PSNR against the ground truth at
N, N+25, N+50, N+100, N+150, N+200, N+300 and N+K.

    python benchmarks/stretch.py --case inpaint-boat --crop 128 --iterations 1400 --stretch 200 --seed 0

The two phases are two ``fit()`` calls joined by a checkpoint (``resume=``, operator swapped),
which is what ``restore()`` does in memory. Cases are those of ``benchmarks/stopping.py``.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import neuralprior as npr
from neuralprior.operators import Mask
from neuralprior.presets import get_preset
from neuralprior.tasks import _hold_out
from stopping import cases, crop_case


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="inpaint-boat", help="an inpainting case of benchmarks/stopping.py")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--iterations", type=int, default=1400, help="N: iterations of the held-out fit")
    p.add_argument("--stretch", type=int, default=200, help="K: iterations on every known pixel after it")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    found = [c for c in cases(Path(a.data)) if c[0] == a.case and c[1] == "inpaint"]
    if not found:
        raise SystemExit(f"error: no inpainting case {a.case!r} in {a.data}")
    _, _, y, gt, kw, metric = crop_case(found[0], a.crop)
    preset = get_preset("inpaint", "default")
    every = Mask(kw["mask"])
    y = y * every.mask
    held, _ = _hold_out(every, y, None, preset.held_out, seed=0)          # the split restore() makes
    n, k = a.iterations, a.stretch
    marks = {n - 1 + d for d in (0, 25, 50, 100, 150, 200, 300, k) if d <= k}

    def record(into: dict):
        def callback(s):
            if s.iteration in marks:
                into[s.iteration + 1] = metric(s.estimate.cpu(), gt)
        return callback
    full, stretched = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "held-out.pt"
        net = preset.build_network(gt.shape[1], seed=a.seed)
        npr.fit(y * held.mask, held, net=net, config=replace(preset.fit, num_iter=n), seed=a.seed,
                checkpoint=ck, checkpoint_every=n, callback=record(stretched))
        longer = replace(preset.fit, num_iter=n + k)
        npr.fit(y, every, net=preset.build_network(gt.shape[1], seed=a.seed), config=longer, seed=a.seed,
                resume=ck, callback=record(stretched))
    npr.fit(y, every, net=preset.build_network(gt.shape[1], seed=a.seed), config=longer, seed=a.seed,
            callback=record(full))
    print(f"{a.case} (crop {a.crop}), seed {a.seed}\n")
    print(f"| iteration | every known pixel from the start | held out to {n}, then every known pixel |\n|---|---|---|")
    for it in sorted(full):
        print(f"| {it} | {full[it]:.2f} | {stretched[it]:.2f} |")


if __name__ == "__main__":
    main()
