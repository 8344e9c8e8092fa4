"""The Deep Image Prior lab: build the network, watch it fit, restore images, run the experiments.

    python examples/lab.py -o lab-output              # 128x128 images: minutes on a laptop CPU
    python examples/lab.py --quick -o lab-output      # 32x32 and short runs: seconds (tests/test_lab.py)
    python examples/lab.py --steps e f -o lab-output  # only some steps

docs/lab.md walks through the steps and says what to look for in each figure:

  a  build an encoder-decoder with two skip connections; what it outputs before any fitting
  b  reconstruction: fit a clean image and watch it; structure is fitted faster than noise
  c  denoising
  d  inpainting
  e  experiment: learning rate 0.01 against 1e-4
  f  experiment: number of skip connections (0, 1, 2) and depth (2 and 5 levels)
  g  experiment: stopping before overfitting, PSNR against the truth with the automatic stop marked

Every figure is written to the output folder (PNG, and GIF animations for b and c), with
``results.json`` holding the numbers printed along the way.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from skimage import data
from skimage.transform import resize

import neuralprior as npr
from neuralprior import FitConfig, networks, operators
from neuralprior.bench import classical_baseline
from neuralprior.inspect_net import architecture_table
from neuralprior.stopping import Decision, StoppingRule, WindowedVariance
from neuralprior.viz import FrameRecorder, comparison_panels, plot_comparison, plot_curves, plot_report

STEPS = "abcdefg"


@dataclass
class Lab:
    """Sizes and lengths of the lab's runs."""

    size: int = 128                     # side of the images, pixels
    width: int = 32                     # channels at every level of the networks
    iterations: int = 1200              # each run of steps b, c and d
    experiment_iterations: int = 500    # each run of experiments e and f, and b's other targets
    stop_iterations: int = 2400         # the run of experiment g: long enough to overfit
    stop_window: int = 50               # automatic stop (g): variance over this many estimates,
    stop_patience: int = 300            # stop when it has not fallen for this many iterations,
    stop_min_iterations: int = 100      # and never before this one
    sigma: float = 25 / 255             # standard deviation of the noise in c, f and g
    seed: int = 0
    device: str = "auto"


QUICK = Lab(size=32, width=16, iterations=150, experiment_iterations=100, stop_iterations=300,
            stop_window=10, stop_patience=60, stop_min_iterations=20)


# ------------------------------------------------------------------------------ images and networks

def photo(size: int) -> torch.Tensor:
    """The astronaut's face (scikit-image) as a (1, 3, size, size) float32 image in [0, 1]."""
    crop = data.astronaut()[20:276, 130:386]
    return torch.from_numpy(resize(crop, (size, size), anti_aliasing=True).astype(np.float32)).permute(2, 0, 1)[None]


def add_noise(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """x plus Gaussian noise of standard deviation sigma, clipped to [0, 1]."""
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return (x + sigma * noise).clamp(0, 1)


def encoder_decoder(lab: Lab, skips: tuple[bool, bool] = (True, True)) -> torch.nn.Module:
    """The lab's network: three levels down, three up, skip connections at 1/2 and 1/4 resolution.

    Its weights depend only on ``lab.seed``: every run starts from the same network.
    """
    torch.manual_seed(lab.seed)
    return networks.EncoderDecoder(in_channels=32, out_channels=3, width=lab.width, skip_channels=8, skips=skips)


def hourglass(lab: Lab, levels: int) -> torch.nn.Module:
    """The paper's hourglass (SkipNet) with ``levels`` levels of ``lab.width`` channels, 4-channel skips."""
    torch.manual_seed(lab.seed)
    return networks.SkipNet(channels_down=[lab.width] * levels, channels_up=[lab.width] * levels, channels_skip=4)


def fit(lab: Lab, y: torch.Tensor, config: FitConfig, *, net=None, operator=None, x_true=None, stop="none",
        callback=None) -> npr.FitResult:
    """One Deep Image Prior run: fit ``net`` (default: the lab's network) so that operator(net(z)) = y."""
    return npr.fit(y, operator, net=net if net is not None else encoder_decoder(lab), config=config, stop=stop,
                   x_true=x_true, seed=lab.seed, device=lab.device, callback=callback)


def reconstruction_config(iterations: int, lr: float = 0.01) -> FitConfig:
    """Plain fitting: no input perturbation, no output averaging; the output is the network's own."""
    return FitConfig(num_iter=iterations, lr=lr, reg_noise_std=0.0, ema=0.0)


def restoration_config(iterations: int, reg_noise_std: float = 1 / 30) -> FitConfig:
    """The paper's restoration settings: z perturbed at every step, outputs averaged (EMA 0.99)."""
    return FitConfig(num_iter=iterations, lr=0.01, reg_noise_std=reg_noise_std, ema=0.99)


class KeepEstimates:
    """A fit callback that keeps a copy of the estimate at the given iterations."""

    def __init__(self, iterations):
        self.wanted, self.images = set(iterations), {}

    def __call__(self, state) -> None:
        if state.iteration in self.wanted:
            self.images[state.iteration] = state.estimate.detach().cpu().clone()


def callbacks(*functions):
    """Several fit callbacks as one."""
    def call_all(state):
        for f in functions:
            f(state)
    return call_all


# ------------------------------------------------------------------------------ the steps

def step_a(lab: Lab, out: Path) -> dict:
    """Build the network and look at what it produces before any fitting."""
    net = encoder_decoder(lab)
    table = architecture_table(net, (lab.size, lab.size))
    (out / "a_architecture.md").write_text(table + "\n")
    torch.manual_seed(lab.seed)
    z = torch.rand(1, 32, lab.size, lab.size) * 0.1            # the fixed input: 32 channels of U(0, 0.1) noise
    with torch.no_grad():                                       # in training mode, as at the first step of a fit
        untrained = net(z)
        no_skips = encoder_decoder(lab, skips=(False, False))(z)
    plot_comparison([("z: channels 0-2 (stretched)", z[:, :3] / 0.1), ("f(z), untrained", untrained),
                     ("f(z), untrained, no skips", no_skips)], out / "a_network.png",
                    title="the input z and the output of the untrained network")
    params = npr.networks.count_parameters(net)
    print(f"a  EncoderDecoder(width={lab.width}): {params:,} parameters; layers in a_architecture.md")
    return {"parameters": params}


def step_b(lab: Lab, out: Path, clean: torch.Tensor) -> dict:
    """Fit the clean image itself; then targets without structure, to see what the network fits easily."""
    n = lab.iterations
    keep, frames = KeepEstimates({0, n // 20, n // 5, n - 1}), FrameRecorder()
    result = fit(lab, clean, reconstruction_config(n), x_true=clean, callback=callbacks(keep, frames))
    frames.finish()
    frames.save(out / "b_reconstruction.gif")
    panels = [(f"iteration {i}: {npr.psnr(x, clean):.1f} dB", x) for i, x in sorted(keep.images.items())]
    plot_comparison(panels + [("target", clean)], out / "b_reconstruction.png", title="fitting a clean image")

    g = torch.Generator().manual_seed(lab.seed + 1)
    shuffled = clean.flatten(2)[..., torch.randperm(lab.size ** 2, generator=g)].view_as(clean)
    targets = {"image + noise": add_noise(clean, lab.sigma, lab.seed + 2), "shuffled pixels": shuffled,
               "U(0, 1) noise": torch.rand(clean.shape, generator=g)}
    m = lab.experiment_iterations                               # shorter runs: the differences show early
    losses = {"image": result.history["loss"][:m]}
    for name, target in targets.items():
        losses[name] = fit(lab, target, reconstruction_config(m)).history["loss"]
    plot_curves(losses, out / "b_image_vs_noise.png", ylabel="MSE between f(z) and the target", log=True,
                title="the same network fitting four targets")
    psnr = result.history["psnr"]
    print(f"b  reconstruction: {psnr[0]:.2f} dB at iteration 0, {psnr[n // 5]:.2f} dB at {n // 5}, "
          f"{psnr[-1]:.2f} dB at {n - 1}")
    print(f"   MSE after {m} iterations: " + ", ".join(f"{k} {v[-1]:.2e}" for k, v in losses.items()))
    return {"psnr": {"0": psnr[0], str(n // 5): psnr[n // 5], str(n - 1): psnr[-1]},
            "loss_after": {k: v[-1] for k, v in losses.items()}}


def step_c(lab: Lab, out: Path, clean: torch.Tensor, noisy: torch.Tensor) -> dict:
    """Denoising: fit the noisy image with the paper's restoration settings."""
    frames = FrameRecorder()
    result = fit(lab, noisy, restoration_config(lab.iterations), x_true=clean, callback=frames)
    frames.finish(result)
    frames.save(out / "c_denoising.gif")
    baseline = classical_baseline("denoise", noisy)
    plot_comparison(comparison_panels(noisy, result.image, truth=clean, baseline=baseline,
                                      output_label=f"DIP, {lab.iterations} iterations"),
                    out / "c_denoising.png", title=f"denoising, sigma {lab.sigma * 255:.0f}/255")
    scores = {"noisy": npr.psnr(noisy, clean), "dip": npr.psnr(result.image, clean),
              baseline[0]: npr.psnr(baseline[1], clean), "oracle_best": result.oracle_best[0]}
    print("c  denoising PSNR: " + ", ".join(f"{k} {v:.2f} dB" for k, v in scores.items()))
    return scores


def step_d(lab: Lab, out: Path, clean: torch.Tensor) -> dict:
    """Inpainting: half of the pixels are missing; the data term only looks at the known ones."""
    g = torch.Generator().manual_seed(lab.seed + 3)
    mask = (torch.rand(1, 1, lab.size, lab.size, generator=g) > 0.5).float()      # 1 = known
    observed = clean * mask
    result = fit(lab, observed, restoration_config(lab.iterations, reg_noise_std=0.03),
                 operator=operators.Mask(mask), x_true=clean)
    baseline = classical_baseline("inpaint", observed, mask=mask)
    plot_comparison(comparison_panels(observed, result.image, truth=clean, baseline=baseline,
                                      input_label="input (50% of the pixels)",
                                      output_label=f"DIP, {lab.iterations} iterations"),
                    out / "d_inpainting.png", title="inpainting")
    scores = {"masked": npr.psnr(observed, clean), "dip": npr.psnr(result.image, clean),
              baseline[0]: npr.psnr(baseline[1], clean)}
    print("d  inpainting PSNR: " + ", ".join(f"{k} {v:.2f} dB" for k, v in scores.items()))
    return scores


def step_e(lab: Lab, out: Path, clean: torch.Tensor) -> dict:
    """Learning rate: the same network and image, Adam at 0.01 and at 1e-4."""
    losses = {f"lr {lr:g}": fit(lab, clean, reconstruction_config(lab.experiment_iterations, lr=lr)).history["loss"]
              for lr in (0.01, 1e-4)}
    plot_curves(losses, out / "e_learning_rate.png", ylabel="MSE", log=True, title="fitting the image: learning rate")
    final = {k: v[-1] for k, v in losses.items()}
    print(f"e  MSE after {lab.experiment_iterations} iterations: " + ", ".join(f"{k} {v:.2e}" for k, v in final.items()))
    return {"loss_after": final}


def step_f(lab: Lab, out: Path, clean: torch.Tensor, noisy: torch.Tensor) -> dict:
    """Architecture: denoise with 0, 1 or 2 skip connections, and with a shallow and a deep hourglass."""
    nets = {"0 skips": encoder_decoder(lab, skips=(False, False)),
            "1 skip (1/2 resolution)": encoder_decoder(lab, skips=(True, False)),
            "2 skips": encoder_decoder(lab, skips=(True, True)),
            "hourglass, 2 levels": hourglass(lab, 2),
            "hourglass, 5 levels": hourglass(lab, 5)}
    curves, images, scores = {}, [], {}
    for name, net in nets.items():
        result = fit(lab, noisy, restoration_config(lab.experiment_iterations), net=net, x_true=clean)
        curves[name] = result.history["psnr"]
        scores[name] = {"final": result.history["psnr"][-1], "best": result.oracle_best[0],
                        "best_iteration": result.oracle_best[1]}
        images.append((f"{name}: {scores[name]['final']:.2f} dB", result.image))
    plot_curves(curves, out / "f_skips_and_depth.png", ylabel="PSNR against the clean image (dB)",
                title="denoising with other architectures")
    plot_comparison(images, out / "f_outputs.png", title=f"after {lab.experiment_iterations} iterations")
    print("f  denoising PSNR after the run (best): " + ", ".join(
        f"{k} {v['final']:.2f} ({v['best']:.2f})" for k, v in scores.items()))
    return scores


class WatchOnly(StoppingRule):
    """Runs a stopping rule alongside the fit and notes where it would stop, but never stops.

    Until the rule fires, its choice of the best estimate is followed, so the fit returns the
    estimate the rule would have returned.
    """

    def __init__(self, rule: StoppingRule):
        self.rule = rule
        self.reset()

    def reset(self) -> None:
        self.rule.reset()
        self.fired_at, self.returned = None, -1

    def update(self, iteration: int, estimate: torch.Tensor) -> Decision:
        if self.fired_at is not None:
            return Decision()
        decision = self.rule.update(iteration, estimate)
        if decision.best:
            self.returned = iteration
        if decision.stop:
            self.fired_at = iteration
        return Decision(best=decision.best)


def step_g(lab: Lab, out: Path, clean: torch.Tensor, noisy: torch.Tensor) -> dict:
    """Stopping: plain fitting of the noisy image for long, PSNR against the clean one, automatic stop marked."""
    rule = WatchOnly(WindowedVariance(window=lab.stop_window, patience=lab.stop_patience,
                                      min_iterations=lab.stop_min_iterations))
    last = KeepEstimates({lab.stop_iterations - 1})
    result = fit(lab, noisy, reconstruction_config(lab.stop_iterations), x_true=clean, stop=rule, callback=last)
    psnr = result.history["psnr"]
    report = {"task": "denoise", "preset": "lab, plain fitting", "history": result.history,
              "stopped_at": rule.returned}
    plot_report(report, out / "g_stopping.png")
    final = last.images[lab.stop_iterations - 1]
    plot_comparison([("noisy", noisy), (f"automatic stop, iteration {rule.returned}: {psnr[rule.returned]:.2f} dB",
                                        result.image),
                     (f"iteration {lab.stop_iterations - 1}: {psnr[-1]:.2f} dB", final), ("clean", clean)],
                    out / "g_images.png", title="stopping before the noise is fitted")
    best, best_it = result.oracle_best
    fired = "never" if rule.fired_at is None else f"at iteration {rule.fired_at}"
    print(f"g  PSNR peak {best:.2f} dB at iteration {best_it}; automatic stop fired {fired}, returning iteration "
          f"{rule.returned} ({psnr[rule.returned]:.2f} dB); last iteration {psnr[-1]:.2f} dB")
    return {"peak": best, "peak_iteration": best_it, "stop_fired_at": rule.fired_at,
            "stop_returned": rule.returned, "psnr_at_stop": psnr[rule.returned], "psnr_last": psnr[-1]}


# ------------------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="lab-output", help="folder for the figures (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="32x32 images and short runs: a check that all runs")
    parser.add_argument("--steps", nargs="+", choices=list(STEPS), default=list(STEPS), metavar="STEP",
                        help="which steps to run, from a-g (default: all)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    args = parser.parse_args(argv)

    lab = replace(QUICK if args.quick else Lab(), device=args.device)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    clean = photo(lab.size)
    noisy = add_noise(clean, lab.sigma, lab.seed)
    steps = {"a": lambda: step_a(lab, out), "b": lambda: step_b(lab, out, clean),
             "c": lambda: step_c(lab, out, clean, noisy), "d": lambda: step_d(lab, out, clean),
             "e": lambda: step_e(lab, out, clean), "f": lambda: step_f(lab, out, clean, noisy),
             "g": lambda: step_g(lab, out, clean, noisy)}
    results = {"settings": asdict(lab), "seconds": {}}
    for name in sorted(set(args.steps)):
        start = time.perf_counter()
        results[name] = steps[name]()
        results["seconds"][name] = round(time.perf_counter() - start, 1)
    print("seconds per step: " + ", ".join(f"{k} {v:g}" for k, v in results["seconds"].items()))
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"figures and results.json in {out}/")
    return results


if __name__ == "__main__":
    main()
