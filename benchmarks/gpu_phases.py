"""Where the time of one F16 denoising on CUDA goes: start-up phases, then s/it per variant.

    python benchmarks/gpu_phases.py NOISY GT

Prints (1) the wall time of each start-up phase in a fresh process (imports, first CUDA use, first
cuDNN convolution, the noise estimate, the first and a second whole restoration), (2) GPU kernel
time per iteration (PyTorch profiler) against wall time per iteration, and (3) seconds per iteration
of the default preset's loop (200 iterations, no stop) under a few variants.
"""
import time

T0 = time.perf_counter()
import sys  # noqa: E402

import torch  # noqa: E402

T_TORCH = time.perf_counter()
import neuralprior as npr  # noqa: E402
from neuralprior.metrics import estimate_noise_sigma  # noqa: E402

T_NPR = time.perf_counter()


def since(t):
    return f"{time.perf_counter() - t:.2f}"


def main(noisy_path: str, gt_path: str) -> None:
    print(f"| phase | seconds |\n|---|---|\n| import torch | {T_TORCH - T0:.2f} |\n| import neuralprior | {T_NPR - T_TORCH:.2f} |")
    t = time.perf_counter()
    y, _ = npr.load_image(noisy_path)
    gt, _ = npr.load_image(gt_path)
    print(f"| read both images | {since(t)} |")
    t = time.perf_counter()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    print(f"| first CUDA tensor (context) | {since(t)} |")
    t = time.perf_counter()
    torch.nn.functional.conv2d(torch.rand(1, 3, 64, 64, device="cuda"), torch.rand(8, 3, 3, 3, device="cuda"))
    torch.cuda.synchronize()
    print(f"| first cuDNN convolution | {since(t)} |")
    t = time.perf_counter()
    estimate_noise_sigma(y)
    print(f"| noise estimate, first (imports scikit-image) | {since(t)} |")
    t = time.perf_counter()
    estimate_noise_sigma(y)
    print(f"| noise estimate, again | {since(t)} |")
    for n in ("first", "second"):
        t = time.perf_counter()
        r = npr.denoise(y, device="cuda", x_true=gt)
        print(f"| {n} denoise() call: wall (loop) | {since(t)} ({r.seconds:.2f}; {r.iterations_run} it, "
              f"{npr.psnr(r.image, gt):.2f} dB) |")
    t = time.perf_counter()
    r = npr.denoise(y, device="cuda")
    print(f"| denoise() without ground truth: wall (loop) | {since(t)} ({r.seconds:.2f}; {r.iterations_run} it) |")

    # GPU kernel time per iteration against wall time per iteration
    from torch.profiler import ProfilerActivity, profile
    n = 60
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        r = npr.denoise(y, device="cuda", num_iter=n, stop="none")
    events = prof.key_averages()
    gpu = sum(e.self_device_time_total for e in events) / 1e6
    print(f"\nprofiled {n} iterations: wall/it {r.seconds / n * 1e3:.1f} ms (profiler on), GPU kernels/it "
          f"{gpu / n * 1e3:.1f} ms")
    print(events.table(sort_by="self_device_time_total", row_limit=12, max_name_column_width=60))

    # variants of the loop: s/it over 200 iterations, no stop, no ground truth
    print("| variant | s/it | PSNR at 200 |\n|---|---|---|")
    variants = [("default (graph, SURE pair batched, channels_last, bfloat16)", {}, False),
                ("SURE pair as two passes", dict(sure_batched=False), False),
                ("cudnn.benchmark", {}, True),
                ("no channels_last", dict(channels_last=False), False),
                ("float16", dict(precision="float16"), False),
                ("no graph", dict(cuda_graph=False), False),
                ("no graph, two passes (before)", dict(cuda_graph=False, sure_batched=False), False)]
    for name, kw, bench in variants:
        torch.backends.cudnn.benchmark = bench
        npr.denoise(y, device="cuda", num_iter=10, stop="none", **kw)       # warm the kernel choice
        r = npr.denoise(y, device="cuda", num_iter=200, stop="none", **kw)
        print(f"| {name} | {r.seconds / 200:.4f} | {npr.psnr(r.image, gt):.2f} |", flush=True)
    torch.backends.cudnn.benchmark = False


if __name__ == "__main__":
    main(*sys.argv[1:3])
