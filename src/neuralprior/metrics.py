"""Image quality metrics, data range 1 (images in [0, 1]), and the noise model of clipped noisy images."""
from __future__ import annotations

import functools

import numpy as np
import torch


def psnr(x: torch.Tensor, ref: torch.Tensor, *, shave: int = 0) -> float:
    """Peak signal-to-noise ratio in dB of ``x`` against ``ref`` (both in [0, 1]).

    ``shave`` drops that many pixels on every border before comparing.
    """
    if x.shape != ref.shape:
        raise ValueError(f"cannot compare images of shapes {tuple(x.shape)} and {tuple(ref.shape)}")
    if shave:
        x, ref = x[..., shave:-shave, shave:-shave], ref[..., shave:-shave, shave:-shave]
    mse = torch.mean((x.detach().double().clamp(0, 1) - ref.detach().double()) ** 2)
    return float("inf") if mse == 0 else float(-10 * torch.log10(mse))


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """Luma Y of BT.601 studio range, (16 + 65.481 R + 128.553 G + 24.966 B) / 255; (N,3,H,W) -> (N,1,H,W)."""
    if x.shape[-3] == 1:
        return x
    r, g, b = x[..., 0:1, :, :], x[..., 1:2, :, :], x[..., 2:3, :, :]
    return (16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255


def psnr_y(x: torch.Tensor, ref: torch.Tensor, *, shave: int = 4) -> float:
    """Super-resolution protocol: PSNR on Y with ``shave`` border pixels removed."""
    return psnr(rgb_to_y(x.clamp(0, 1)), rgb_to_y(ref), shave=shave)


def ssim(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Structural similarity (scikit-image, Gaussian weights as in Wang et al. 2004), mean over the batch."""
    from skimage.metrics import structural_similarity

    a = x.detach().float().clamp(0, 1).cpu().numpy()
    b = ref.detach().float().cpu().numpy()
    if a.ndim == 3:
        a, b = a[None], b[None]
    vals = [structural_similarity(ai, bi, channel_axis=0, data_range=1.0, gaussian_weights=True,
                                  sigma=1.5, use_sample_covariance=False)
            for ai, bi in zip(a, b)]
    return float(np.mean(vals))


def estimate_noise_sigma(image: torch.Tensor, *, clipped: bool = True, before_clipping: bool = False) -> float:
    """Standard deviation of the noise in ``image`` (N, C, H, W) in [0, 1], estimated without reference,
    averaged over channels.

    The basis is Donoho's median rule on the finest diagonal wavelet coefficients, which is right for
    Gaussian noise. Noisy 8-bit images are clipped to [0, 1], and clipped noise is not Gaussian: it is
    weaker and biased near black and white, so the median rule returns less than the noise's actual
    root mean square (about 8% less at sigma = 50 on a photograph with dark regions). With ``clipped``
    (the default) and pixels at exactly 0 or 1, the rule is calibrated on the image itself: Gaussian
    noise is clipped around a smoothed copy of the image, its strength set so that the median rule
    gives on it what it gives on the image, and the root mean square of that simulated clipped noise
    is returned, or the median rule's value where that is higher: where little is clipped the
    calibration can come out a few per cent under the noise's rms (the smoothed copy misses the image's
    own mix of clipped and unclipped pixels), and too low a level lets a SURE fit reproduce the noise.
    Without clipped pixels, or with ``clipped=False``, the result is the median rule's:
    the same numbers as ``skimage.restoration.estimate_sigma(..., channel_axis=-1, average_sigmas=True)``,
    computed with PyWavelets directly (the scikit-image route imports SciPy's statistics at its first
    call: 0.7 s on a 2-core CPU, 1.8 s on a GPU machine measured, a large share of a 5-second GPU run).
    With ``before_clipping``, the calibrated std of the Gaussian noise before clipping is returned instead
    (what :func:`unclip` needs; scaled as the rms is where the median rule's value is taken; the same as
    the default where no pixel is clipped).
    """
    return _noise_levels(image, clipped)[1 if before_clipping else 0]


def _noise_levels(image: torch.Tensor, clipped: bool = True) -> tuple[float, float]:
    """(root mean square of the noise after clipping, std of the Gaussian noise before it), each averaged
    over channels, as :func:`estimate_noise_sigma` computes them (the same without clipped pixels)."""
    x = image.detach().float().cpu()[:1]
    a = x[0].double().numpy()
    sigmas = [_median_rule(channel) for channel in a]
    smooth = _smooth_if_clipped(x) if clipped else None
    if smooth is None:
        return float(np.mean(sigmas)), float(np.mean(sigmas))
    rng = np.random.default_rng(0)                  # the calibration is deterministic
    pairs = [_calibrated_noise(s, m, rng) if s > 0 else (s, s) for s, m in zip(sigmas, smooth)]
    rms, before = float(np.mean([p[1] for p in pairs])), float(np.mean([p[0] for p in pairs]))
    median = float(np.mean(sigmas))
    if median > rms > 0:        # the calibration came out under the median rule (little clipped): keep the higher
        before, rms = before * median / rms, median
    return rms, before


def clipped_noise_rms(image: torch.Tensor, sigma: float) -> float:
    """The root mean square, after clipping to [0, 1], of Gaussian noise of std ``sigma`` in ``image``
    (N, C, H, W) in [0, 1], the noisy image; averaged over channels.

    What a noise level given as the std of the Gaussian noise before 8-bit clipping (say 25/255 for
    the sigma = 25 benchmarks) becomes near black and white: the noise is simulated around a smoothed
    copy of the image, as :func:`estimate_noise_sigma` does, so the two give comparable levels.
    ``sigma`` itself where no pixel is exactly 0 or 1.
    """
    x = image.detach().float().cpu()[:1]
    smooth = _smooth_if_clipped(x)
    if smooth is None or not sigma > 0:
        return float(sigma)
    return float(np.mean([np.sqrt(np.mean(_clipped_mean_square(_clean_from_local_mean(m, sigma), sigma)))
                          for m in smooth]))


def has_clipped_pixels(image: torch.Tensor) -> bool:
    """Whether ``image`` in [0, 1] has pixels at exactly 0 or 1, as noise clipped to 8 bits leaves."""
    return bool(image.min() >= 0 and image.max() <= 1 and ((image == 0) | (image == 1)).any())


def unclip(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The clean values whose noisy copies (Gaussian noise of std ``sigma`` added, then clipped to [0, 1])
    have the mean ``x``: the inverse of c -> E[clip(c + sigma n, 0, 1)], element by element.

    Clipping biases noise near black and white (at sigma = 50 grey levels a black pixel's noisy copies
    average 20 grey levels), and a denoiser that estimates the mean of the noisy image returns that bias;
    this removes it (Foi, "Clipped noisy images", 2009). Values beyond the means reachable from [0, 1]
    map to 0 or 1, NaN to NaN. ``sigma`` <= 0 returns ``x`` unchanged."""
    if not sigma > 0:
        return x
    first, step, clean, slope = _unclip_table(float(sigma), x.device)
    t = ((x.float() - first) / step).nan_to_num_(0.0).clamp_(0, len(slope) - 1e-3)   # position in the table
    i = t.long()                                                        # its floor (t >= 0)
    out = clean[i] + (t - i) * slope[i]
    return (out if not x.isnan().any() else torch.where(x.isnan(), x.float(), out)).to(x.dtype)   # NaN stays NaN


@functools.lru_cache(maxsize=8)
def _unclip_table(sigma: float, device: torch.device) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(first mean, step, clean values, their differences): the clean value at 4097 evenly spaced means from
    E[clip(sigma n, 0, 1)] to E[clip(1 + sigma n, 0, 1)], float32 on ``device``, :func:`unclip`'s table (made
    once per level and device: a fit unclips its estimate at every iteration)."""
    grid = np.linspace(0.0, 1.0, 2049)
    means = _clipped_mean(grid, sigma)                   # increasing: its derivative is P(0 < c + sigma n < 1)
    even = np.linspace(means[0], means[-1], 4097)
    clean = np.interp(even, means, grid)
    return (float(means[0]), float(even[1] - even[0]), torch.from_numpy(clean).float().to(device),
            torch.from_numpy(np.append(np.diff(clean), 0.0)).float().to(device))


def _smooth_if_clipped(x: torch.Tensor) -> list[np.ndarray] | None:
    """Per channel, the local mean of a (1, C, H, W) image in [0, 1] with pixels at exactly 0 or 1
    (the approximate clean image around which clipped noise is simulated); None without such pixels."""
    if not has_clipped_pixels(x):
        return None
    pad = torch.nn.functional.pad(x, (_SMOOTH // 2,) * 4, mode="replicate")
    return [m.double().numpy() for m in torch.nn.functional.avg_pool2d(pad, _SMOOTH, stride=1)[0]]


def _median_rule(channel: np.ndarray) -> float:
    """Donoho's estimate of the Gaussian noise std of one channel (exactly-zero coefficients, as in flat
    regions, are left out; an image without any other coefficient has no noise)."""
    import pywt

    detail = pywt.dwtn(channel, wavelet="db2")["dd"]
    detail = detail[np.nonzero(detail)]
    return float(np.median(np.abs(detail)) / _NORMAL_QUARTILE) if detail.size else 0.0


def _clipped_mean(c: np.ndarray, sigma: float) -> np.ndarray:
    """E[clip(c + sigma * n, 0, 1)] for n standard normal."""
    a = torch.from_numpy((0 - c) / sigma)
    b = torch.from_numpy((1 - c) / sigma)
    cdf, pdf = torch.special.ndtr, lambda t: torch.exp(-t * t / 2) / np.sqrt(2 * np.pi)
    return (torch.from_numpy(c) * (cdf(b) - cdf(a)) + sigma * (pdf(a) - pdf(b)) + 1 - cdf(b)).numpy()


def _clipped_mean_square(c: np.ndarray, sigma: float) -> np.ndarray:
    """E[(clip(c + sigma * n, 0, 1) - c) ** 2] for n standard normal (the clipped noise's power at c)."""
    a = torch.from_numpy((0 - c) / sigma)
    b = torch.from_numpy((1 - c) / sigma)
    cdf, pdf = torch.special.ndtr, lambda t: torch.exp(-t * t / 2) / np.sqrt(2 * np.pi)
    inside = cdf(b) - cdf(a) - (b * pdf(b) - a * pdf(a))         # E[n**2; a < n < b]
    cc = torch.from_numpy(c)
    return (sigma ** 2 * inside + cc ** 2 * cdf(a) + (1 - cc) ** 2 * (1 - cdf(b))).numpy()


def _calibrated_noise(observed: float, smooth: np.ndarray, rng, steps: int = 3) -> tuple[float, float]:
    """(std, root mean square after clipping) of the Gaussian noise, clipped to [0, 1] around a clean channel
    approximated by ``smooth`` (a local mean of the noisy one), at which the median rule on the clipped noise
    gives ``observed`` (found by ``steps`` fixed-point updates)."""
    n = rng.standard_normal(smooth.shape)
    sigma = observed
    for _ in range(steps):
        clean, noise = _simulate_clipped(smooth, sigma, n)
        seen = _median_rule(clean + noise)
        sigma = sigma * observed / seen if seen > 0 else sigma
    return float(sigma), float(np.sqrt(np.mean(_simulate_clipped(smooth, sigma, n)[1] ** 2)))


def _simulate_clipped(smooth: np.ndarray, sigma: float, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(clean channel, its noise ``sigma * n`` after clipping to [0, 1]) for a noisy channel's local mean
    ``smooth``."""
    clean = _clean_from_local_mean(smooth, sigma)
    return clean, np.clip(clean + sigma * n, 0.0, 1.0) - clean


def _clean_from_local_mean(smooth: np.ndarray, sigma: float) -> np.ndarray:
    """The clean values whose noise of std ``sigma``, clipped to [0, 1], has the local mean ``smooth``
    (clipping pulls the mean away from 0 and 1)."""
    grid = np.linspace(0.0, 1.0, 513)
    return np.interp(smooth, _clipped_mean(grid, sigma), grid)


_SMOOTH = 9              # side of the box filter that approximates the clean image for the calibration


_NORMAL_QUARTILE = 0.6744897501960817   # 75th percentile of the standard normal distribution
