"""Seconds per iteration of a task's preset under run-time levers: threads, torch.compile, fusion,
memory format.

    python benchmarks/runtime_levers.py --case denoise-F16 --crop 256 [--iterations 60] [--lever NAME ...] [--preset NAME]

The fit itself is timed (the real step of the preset, SURE pair included for denoising), through
``neuralprior.fit`` with a callback: the median time between iterations after the first
``--warmup`` ones, for the `default` preset or ``--preset``. torch.compile's own compilation
time is reported separately (it is the difference between the first iteration and a plain one).
``unfused`` computes the network layer by layer, without the fused nearest-upsampling levels
of ``SkipNet`` (same function); ``padded-1x1`` passes the input of every 1x1 convolution through a
padding of 0 pixels in the network's mode, as PyTorch does for a padding mode other than zeros
(same function; how the networks ran before 2026-11-28). ``channels-last`` and ``contiguous`` fix
the memory format whatever the precision (the presets' ``channels_last="auto"`` picks channels_last
with bfloat16 only; before 2026-12-02 they used it in float32 too). Cases are those of ``benchmarks/stopping.py``, read from
``--data``. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

import neuralprior as npr
from neuralprior.networks import set_fused
from neuralprior.networks.layers import PAD_MODES
from neuralprior.tasks import _configured_preset, _operator
from stopping import cases, crop_case

# name: (torch threads or None for the default, torch.compile mode or None, fused SkipNet levels,
#        1x1 convolutions padded by 0 pixels, FitConfig overrides)
LEVERS = {
    "eager": (None, None, True, False, {}),
    "unfused": (None, None, False, False, {}),
    "padded-1x1": (None, None, True, True, {}),
    "threads-1": (1, None, True, False, {}),
    "threads-4": (4, None, True, False, {}),
    "compile": (None, "default", True, False, {}),
    "compile-max-autotune": (None, "max-autotune-no-cudagraphs", True, False, {}),
    # the memory format whatever the precision (the presets' "auto": channels_last with bfloat16 only)
    "channels-last": (None, None, True, False, dict(channels_last=True)),
    "contiguous": (None, None, True, False, dict(channels_last=False)),
}


def pad_1x1(net: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Give the unpadded (1x1) convolutions of ``net`` the padding mode ``mode`` (a 0-pixel padding copy)."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d) and m.padding == (0, 0):
            m.padding_mode = mode
    return net


def time_fit(task, y, gt, operator, threads, mode, fused, padded_1x1, overrides: dict, iterations: int, warmup: int,
             seed: int = 0, preset_name: str = "default", profile=None):
    """(median s/it after ``warmup`` iterations, seconds of the first iteration). ``profile``: a
    ``torch.profiler.profile`` that records the iterations after the warm-up."""
    default_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        preset = _configured_preset(task, preset_name, dict(overrides, num_iter=iterations),
                                    factor=getattr(operator, "factor", None))
        net = set_fused(preset.build_network(gt.shape[1], seed=seed), fused)
        if padded_1x1:
            pad_1x1(net, PAD_MODES[preset.network_args.get("pad", "reflection")])
        if mode:
            torch._dynamo.reset()
            net = torch.compile(net, mode=mode)
        stamps = [time.perf_counter()]

        def tick(s):
            stamps.append(time.perf_counter())
            if profile is not None and len(stamps) == warmup + 2:
                profile.start()
        npr.fit(y, operator, net=net, config=preset.fit, stop="none", seed=seed, callback=tick)
    finally:
        torch.set_num_threads(default_threads)
        if profile is not None and len(stamps) >= warmup + 2:
            profile.stop()
    steps = sorted(b - a for a, b in zip(stamps[warmup + 1:], stamps[warmup + 2:]))
    return steps[len(steps) // 2], stamps[1] - stamps[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="denoise-F16", help="a case of benchmarks/stopping.py")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--crop", type=int, default=256, help="centred square crop (0: whole image; not for SR)")
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--lever", action="append", choices=list(LEVERS))
    p.add_argument("--preset", default="default", help="the task's preset to time (default: default)")
    p.add_argument("--profile", action="store_true", help="also print where the time of the iterations after the "
                   "warm-up goes (torch.profiler, by operator and input shape; its overhead is in that s/it)")
    a = p.parse_args()
    if a.iterations < a.warmup + 3:
        raise SystemExit(f"error: --iterations must be at least --warmup + 3 ({a.warmup + 3})")
    found = [c for c in cases(Path(a.data)) if c[0] == a.case]
    if not found:
        raise SystemExit(f"error: no case {a.case!r} in {a.data}")
    name, task, y, gt, kw, _ = crop_case(found[0], a.crop)
    op = _operator(task, y, kw.get("mask"), kw.get("factor"))
    print(f"{name} ({gt.shape[-2]}x{gt.shape[-1]}), preset {a.preset}, {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads by default")
    print("| lever | threads | s/it | first iteration s |")
    print("|---|---|---|---|")
    for lever in a.lever or ["eager"]:
        threads, mode, fused, padded_1x1, overrides = LEVERS[lever]
        prof = torch.profiler.profile(record_shapes=True) if a.profile else None
        spi, first = time_fit(task, y, gt, op, threads, mode, fused, padded_1x1, overrides, a.iterations, a.warmup,
                              preset_name=a.preset, profile=prof)
        print(f"| {lever} | {threads or torch.get_num_threads()} | {spi:.3f} | {first:.1f} |", flush=True)
        if prof is not None:
            print(prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=32, max_shapes_column_width=80))


if __name__ == "__main__":
    main()
