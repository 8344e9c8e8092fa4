"""Seconds per fitting iteration of the hourglass variants: float32, float32 + channels_last and
bfloat16 + channels_last (what ``precision="auto"`` with ``channels_last`` runs: the first two
where bfloat16 is not native, the last where it is).

    python benchmarks/iteration_speed.py --size 256 [--device cpu] [--only light]

Prints a markdown table; each number is the fastest of three timed steps after a warm-up.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch

from neuralprior.networks import SkipNet, count_parameters

NETS = {
    "paper (128 x5, skip 4)": {},
    "light (16,32,64,128,128; default presets)": dict(channels_down=[16, 32, 64, 128, 128],
                                                      channels_up=[16, 32, 64, 128, 128]),
    "light, zero padding, nearest upsampling (default denoising; fused levels)": dict(
        channels_down=[16, 32, 64, 128, 128], channels_up=[16, 32, 64, 128, 128], pad="zero", upsample="nearest"),
    "light32 (32,64,128,128,128)": dict(channels_down=[32, 64, 128, 128, 128], channels_up=[32, 64, 128, 128, 128]),
    "width 64 (64 x5)": dict(channels_down=64, channels_up=64),
}


def step_time(net, size: int, device: torch.device, bf16: bool, channels_last: bool) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(device).to(memory_format=fmt)
    z = torch.rand(1, net.in_channels, size, size, device=device).contiguous(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    times = []
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with ctx:
            loss = ((net(z).float() - 0.5) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", nargs="*", help="networks whose name starts with one of these")
    a = p.parse_args()
    dev = torch.device(a.device)
    machine = torch.cuda.get_device_name(dev) if dev.type == "cuda" else \
        f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"{a.size}x{a.size}, {machine}\n")
    print("| network | parameters | float32 s/it | float32 + channels_last s/it | bfloat16 + channels_last s/it "
          "| bfloat16 speed-up |")
    print("|---|---|---|---|---|---|")
    for name, kw in NETS.items():
        if a.only and not any(name.startswith(o) for o in a.only):
            continue
        torch.manual_seed(0)
        f32 = step_time(SkipNet(**kw), a.size, dev, False, False)
        f32_cl = step_time(SkipNet(**kw), a.size, dev, False, True)
        bf = step_time(SkipNet(**kw), a.size, dev, True, True)
        print(f"| {name} | {count_parameters(SkipNet(**kw)):,} | {f32:.3f} | {f32_cl:.3f} | {bf:.3f} "
              f"| {f32 / bf:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
