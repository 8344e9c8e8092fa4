"""Configuration of a fit, as a small dataclass: every field has the paper's value or says why not."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class FitConfig:
    """How :func:`neuralprior.fit` optimises the network weights."""

    num_iter: int = 3000            # maximum number of iterations (the stopping rule may end earlier)
    lr: float = 0.01                # Adam learning rate (paper: 0.01, 0.001 for 50% inpainting)
    optimizer: str = "adam"         # "adam" (the paper's), "nadam" or "radam" (measured: neither helps, docs/performance.md)
    betas: tuple[float, float] = (0.9, 0.999)   # the optimiser's (beta1, beta2): decay of its running averages of
                                    # the gradient and of its square (the paper: PyTorch's defaults)
    lr_decay_to: float = 1.0        # cosine decay of lr towards lr * lr_decay_to over num_iter (1 = constant, the paper)
    input_kind: str = "noise"       # z: "noise" (U(0, input_scale)), "meshgrid", or "observation" (z = y itself,
                                    # the noisy image: converges in far fewer iterations; denoising only)
    input_scale: float = 0.1        # z ~ U(0, 0.1) in the paper
    reg_noise_std: float = 1 / 30   # sigma_p: std of the Gaussian perturbation added to z at each step
    ema: float = 0.99               # exponential moving average of the outputs (0 = off); the returned image
    ema_warmup: bool = True         # average with weight min(ema, (1+t)/(10+t)) so early estimates are not stale
                                    # (the paper: False, the average starts from the first, random output)
    loss: str = "mse"               # data term E: "mse" (Gaussian noise, the paper's), "l1" (Laplacian noise,
                                    # outliers), "poisson" (photon counts: y = counts / peak, F(x) the rate) or
                                    # "sure" (Stein's unbiased estimate of the MSE to the clean image under
                                    # Gaussian noise of the level below; needs input_kind="observation")
    noise_sigma: float | None = None   # std of the Gaussian noise in [0, 1] units, before clipping to [0, 1];
                                    # SURE's noise level is its rms after clipping (fit.noise_level; None:
                                    # estimated from y)
    unclip: bool = True             # SURE only, where y has pixels at exactly 0 or 1: return the output average
                                    # unclipped (metrics.unclip), without the bias clipping gives noise near
                                    # black and white; the stopping rule watches the average itself
    sure_epsilon: float = 0.01      # step of the Monte-Carlo divergence in SURE, as a fraction of the noise level
    reg_noise_per_variance: float = 0.0   # SURE only: when > 0, sigma_p = this x the noise level**2 (replaces
                                    # reg_noise_std): heavier noise in the input needs a disproportionately
                                    # stronger perturbation, lighter noise a weaker one
    sure_batched: bool | str = "auto"   # SURE: run the network once on the pair (y, y + eps b) as a batch of 2
                                    # (BatchNorm statistics are then shared by the pair). "auto": on CUDA only,
                                    # where it is 25% less time per iteration at equal quality; on a 2-core CPU
                                    # it is 6% less but no sooner at the target PSNR (docs/performance.md)
    tv_weight: float = 0.0          # weight of the total-variation regulariser R(x) (mean |gradient|, edge-preserving)
    tikhonov_weight: float = 0.0    # weight of the Tikhonov smoothness regulariser R(x) (mean squared gradient)
    guard: bool = True              # divergence guard: on NaN or a loss jump, restore weights and halve lr
                                    # (a jump again at the restored weights: the loss changed; taken as its new level)
    guard_jump: float = 3.0         # a loss above guard_jump x its running average counts as a jump
    precision: str = "float32"      # "float32", "bfloat16" (autocast) or "auto" (bfloat16 where fast)
    channels_last: bool | str = False   # memory format of activations: faster with bfloat16 on a CPU, slower in
                                    # float32 on one without native bfloat16; "auto": only with bfloat16/float16
    cuda_graph: bool = True         # on CUDA: record the forward and backward pass once as a CUDA graph and
                                    # replay it (small networks are bound by kernel launches there); no
                                    # effect on other devices; falls back to plain passes if recording fails

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise TypeError(f"unknown FitConfig field(s): {', '.join(sorted(unknown))}")
        if "betas" in d:            # a list once through JSON
            d = dict(d, betas=tuple(d["betas"]))
        return cls(**d)
