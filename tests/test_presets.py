"""Presets and the task API: the paper's settings, names in errors, reproducible networks."""
from __future__ import annotations

import pytest
import torch

import neuralprior
from neuralprior import FitConfig, NeuralPriorError, get_preset, preset_table
from neuralprior.metrics import clipped_noise_rms
from neuralprior.networks import DeepDecoder, EncoderDecoder, SkipNet, count_parameters
from neuralprior.presets import PRESETS, SR_SETTLED, TASKS, preset_names
from neuralprior.stopping import WindowedVariance
from neuralprior.tasks import _configured_preset


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_default_and_paper(task):
    names = preset_names(task)
    assert "default" in names and "paper" in names
    for name in names:
        p = get_preset(task, name)
        assert p.task == task and p.name == name and isinstance(p.fit, FitConfig)
        assert p.stop == "auto" or p.stop == "none" or int(p.stop) > 0
        assert p.description


def test_preset_names_are_unique_per_task():
    keys = [(p.task, p.name) for p in PRESETS]
    assert len(keys) == len(set(keys))


def test_unknown_task_lists_the_tasks():
    with pytest.raises(ValueError, match="unknown task 'dehaze'") as excinfo:
        get_preset("dehaze")
    for task in TASKS:
        assert task in str(excinfo.value)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(NeuralPriorError, match="unknown preset 'fancy' for inpaint") as excinfo:
        get_preset("inpaint", "fancy")
    msg = str(excinfo.value)
    for name in preset_names("inpaint"):
        assert name in msg
    assert "paper-restoration" in msg


@pytest.mark.parametrize("factor, iters, sigma_p", [(2, 2000, 0.03), (4, 2000, 0.03), (8, 4000, 0.05),
                                                    (16, 4000, 0.05), (None, 2000, 0.03)])
def test_super_resolution_paper_depends_on_the_factor(factor, iters, sigma_p):
    p = get_preset("super-resolve", "paper", factor=factor)
    assert p.fit.num_iter == iters
    assert p.fit.reg_noise_std == pytest.approx(sigma_p)
    assert p.fit.lr == pytest.approx(0.01) and p.stop == "none"


@pytest.mark.parametrize("factor, betas", [(2, (0.8, 0.9)), (4, (0.8, 0.9)), (None, (0.8, 0.9)),
                                           (8, (0.9, 0.999)), (16, (0.9, 0.999))])
def test_super_resolution_default_betas_depend_on_the_factor(factor, betas):
    assert get_preset("super-resolve", factor=factor).fit.betas == betas          # measured: x4 faster, x8 lower
    assert get_preset("super-resolve", "paper", factor=factor).fit.betas == (0.9, 0.999)   # the paper's: PyTorch's
    given = _configured_preset("super-resolve", "default", {"betas": (0.5, 0.9)}, factor=factor)
    assert given.fit.betas == (0.5, 0.9)                                            # an option wins over the preset


@pytest.mark.parametrize("factor, settled, sample", [(2, 0.0, "pixels"), (3, 0.0, "pixels"), (4, SR_SETTLED, "pixels"),
                                                     (None, SR_SETTLED, "pixels"), (8, 0.0, "pool")])
def test_super_resolution_settled_stop_at_x4(factor, settled, sample):
    # at x4 the run ends once a sample of full-resolution pixels has settled (measured on Set5 x4); at x2 that
    # ended runs up to 1.3 dB early, so x2 and x3 watch the same sample with the general rule; x8 the pooled one
    rule = get_preset("super-resolve", factor=factor).stopping_rule()
    assert rule.settled * 255 == pytest.approx(settled)
    assert rule.sample == sample
    assert rule.tolerance == 0 and rule.window == 50 and rule.patience == 300      # the general rule otherwise
    assert get_preset("super-resolve", "paper", factor=factor).stopping_rule().name == "none"
    assert 0 < SR_SETTLED < 1                                                        # grey levels, not the 0-1 scale

@pytest.mark.parametrize("name, betas", [("default", (0.8, 0.9)), ("quality", (0.8, 0.9)),
                                         ("paper", (0.9, 0.999)), ("paper-restoration", (0.9, 0.999))])
def test_inpainting_betas(name, betas):
    assert get_preset("inpaint", name).fit.betas == betas      # measured: sooner to a higher peak (docs/stopping.md)


@pytest.mark.parametrize("name, betas, tolerance", [("default", (0.9, 0.999), 0.007), ("fast", (0.8, 0.9), 0.016)])
def test_denoising_betas_and_settled_tolerance(name, betas, tolerance):
    # fast: the short betas peak sooner, then decline; its looser settled stop ends the fit near the peak
    p = get_preset("denoise", name)
    assert p.fit.betas == betas and p.fit.loss == "sure"
    rule = p.stopping_rule()
    assert rule.tolerance == pytest.approx(tolerance) and rule.tolerance_power == pytest.approx(2.5)


def test_jpeg_default_short_betas_and_the_residual_relative_stop():
    # measured on ten crops at JPEG qualities 10 to 50 and checked on four held out (docs/stopping.md)
    p = get_preset("jpeg")
    assert p.fit.betas == (0.8, 0.9) and p.fit.num_iter == 2400
    rule = p.stopping_rule()
    assert (rule.sample, rule.residual_power, rule.rise) == ("pixels", 1.5, 0.05)
    assert (rule.window, rule.patience, rule.min_iterations, rule.settled, rule.tolerance) == (50, 100, 300, 0, 0)
    assert get_preset("jpeg", "paper").fit.betas == (0.9, 0.999) and get_preset("jpeg", "paper").stop == "none"
    assert get_preset("denoise").stopping_rule().residual_power == 0      # the other tasks watch the std itself


def test_denoise_paper():
    p = get_preset("denoise", "paper")
    f = p.fit
    assert f.lr == pytest.approx(0.01)
    assert f.reg_noise_std == pytest.approx(1 / 30)
    assert f.ema == pytest.approx(0.99)
    assert f.num_iter == 3000
    assert f.precision == "float32"
    assert f.input_kind == "noise" and f.input_scale == pytest.approx(0.1) and f.loss == "mse"
    assert p.stop == "none"
    net = p.build_network(out_channels=3)
    assert isinstance(net, SkipNet)
    assert count_parameters(net) == 2_217_831


def test_inpaint_paper():
    p = get_preset("inpaint", "paper")
    assert p.fit.lr == pytest.approx(0.01)
    assert p.fit.reg_noise_std == pytest.approx(0.03)
    assert p.network_args["upsample"] == "nearest"
    assert p.fit.num_iter == 6001 and p.stop == "none"
    assert count_parameters(p.build_network(out_channels=3)) == 3_002_627


def test_jpeg_paper_network():
    p = get_preset("jpeg", "paper")
    assert count_parameters(p.build_network(out_channels=3)) == 572_827
    assert p.fit.num_iter == 2400


@pytest.mark.parametrize("task", ["denoise", "super-resolve"])
def test_paper_presets_use_float32(task):
    assert get_preset(task, "paper").fit.precision == "float32"


def test_default_presets_are_lighter_than_the_paper():
    for task in ("denoise", "inpaint", "super-resolve", "jpeg"):
        d = get_preset(task, "default").build_network(out_channels=3)
        assert count_parameters(d) < count_parameters(SkipNet())
        assert get_preset(task, "default").stop == "auto"


@pytest.mark.parametrize("task, name, cls", [("denoise", "decoder", DeepDecoder), ("reconstruct", "lab", EncoderDecoder),
                                             ("reconstruct", "default", SkipNet)])
def test_other_network_kinds(task, name, cls):
    net = get_preset(task, name).build_network(out_channels=1)
    assert isinstance(net, cls) and net.out_channels == 1


def test_get_preset_returns_a_copy():
    p = get_preset("denoise", "paper")
    p.fit.num_iter = 1
    p.network_args["channels_skip"] = 0
    fresh = get_preset("denoise", "paper")
    assert fresh.fit.num_iter == 3000
    assert "channels_skip" not in fresh.network_args
    x8 = get_preset("super-resolve", "paper", factor=8)
    assert x8.fit.num_iter == 4000 and get_preset("super-resolve", "paper").fit.num_iter == 2000


def test_build_network_is_reproducible_and_leaves_the_global_rng_alone():
    p = get_preset("denoise", "default")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = p.build_network(out_channels=3, seed=5)
    b = p.build_network(out_channels=3, seed=5)
    c = p.build_network(out_channels=3, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))                        # the global stream continues unchanged


def test_preset_table_lists_every_preset():
    table = preset_table()
    lines = table.splitlines()
    assert len(lines) == 2 + len(PRESETS)
    for p in PRESETS:
        assert any(f"| {p.task} | {p.name} |" in line for line in lines)


# --- restore() -------------------------------------------------------------------------------

def test_restore_rejects_unknown_keywords(astronaut_crop):
    with pytest.raises(TypeError, match="unknown option.*num_iters"):
        neuralprior.restore("denoise", astronaut_crop, num_iters=3)
    with pytest.raises(TypeError):
        neuralprior.denoise(astronaut_crop, learning_rate=0.1)


def test_restore_passes_fit_overrides_and_stop(astronaut_crop):
    r = neuralprior.restore("denoise", astronaut_crop, preset="paper", num_iter=2, lr=0.005, reg_noise_std=0,
                            device="cpu")
    assert r.iterations_run == 2
    assert r.config["lr"] == pytest.approx(0.005) and r.config["reg_noise_std"] == 0
    assert r.config["precision"] == "float32" and r.config["ema"] == pytest.approx(0.99)
    r = neuralprior.denoise(astronaut_crop, num_iter=50, stop=3, device="cpu")
    assert r.iterations_run == 3


def test_restore_rejects_a_bad_task_or_factor(astronaut_crop):
    with pytest.raises(NeuralPriorError, match="unknown task"):
        neuralprior.restore("colorize", astronaut_crop)
    with pytest.raises(NeuralPriorError, match="factor"):
        neuralprior.super_resolve(astronaut_crop, 0, num_iter=1, device="cpu")


def test_fit_config_from_dict_round_trip():
    cfg = FitConfig(num_iter=7, lr=0.5)
    assert FitConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match="unknown FitConfig field"):
        FitConfig.from_dict({"num_iter": 3, "bogus": 1})


def test_default_denoising_fits_the_noisy_image_with_sure():
    p = get_preset("denoise", "default")
    assert p.fit.loss == "sure" and p.fit.input_kind == "observation"
    for channels in (1, 3):                                         # z is the image: as many input channels
        net = p.build_network(out_channels=channels)
        assert net.in_channels == channels == net.out_channels
    rule = p.stopping_rule()
    assert rule.tolerance > 0 and rule.window == p.stop_args["window"]
    assert p.stopping_rule("none").name == "none" and p.stopping_rule(7).n == 7
    assert get_preset("denoise", "paper").stopping_rule("auto").tolerance == 0     # other presets: plain ES-WMV


def test_sure_loss_override_switches_the_input_to_the_observation(astronaut_crop):
    r = neuralprior.restore("denoise", astronaut_crop, preset="paper", loss="sure", noise_sigma=0.05, num_iter=2,
                            device="cpu")
    assert r.config["input_kind"] == "observation" and r.config["noise_sigma_given"] == 0.05
    assert r.config["noise_sigma"] == clipped_noise_rms(astronaut_crop, 0.05) < 0.05     # a few pixels at 0 or 1
    # another loss on the default preset goes back to a random input z, which it needs
    r = neuralprior.denoise(astronaut_crop, loss="l1", num_iter=2, device="cpu")
    assert r.config["input_kind"] == "noise"


def test_sigma_p_can_scale_with_the_noise_variance(astronaut_crop):
    kw = dict(noise_sigma=0.04, num_iter=3, device="cpu", precision="float32", channels_last=False)
    x = 0.1 + 0.8 * astronaut_crop                      # nothing at 0 or 1: the level given is the level used
    scaled = neuralprior.restore("denoise", x, reg_noise_per_variance=37.5, **kw)
    assert scaled.config["reg_noise_std"] == pytest.approx(0.06)          # 37.5 x the noise variance
    given = neuralprior.restore("denoise", x, reg_noise_std=0.06, **kw)
    assert given.config["reg_noise_per_variance"] == 0                        # a given sigma_p wins over the scaling
    assert torch.equal(scaled.image, given.image)                          # the same perturbation, step for step
    other = neuralprior.restore("denoise", astronaut_crop, reg_noise_std=0.2, **kw)
    assert not torch.equal(other.image, given.image)
    # without SURE there is no noise level to scale with
    assert neuralprior.denoise(astronaut_crop, loss="l1", num_iter=1, device="cpu").config["reg_noise_per_variance"] == 0
    net = get_preset("denoise").build_network(3)
    with pytest.raises(NeuralPriorError, match="SURE"):
        neuralprior.fit(astronaut_crop, net=net, config=FitConfig(num_iter=1, reg_noise_per_variance=1.0), device="cpu")


def test_fast_denoising_preset_stops_sooner_on_the_same_estimates():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 16, 16, generator=g)
    seq = [base + 0.2 / (1 + t) * torch.randn(base.shape, generator=g) for t in range(600)]   # settling estimates
    stops = {}
    for name in ("default", "fast"):
        rule = get_preset("denoise", name).stopping_rule()
        rule.noise_level = 25 / 255
        stops[name] = next(t for t, x in enumerate(seq) if rule.update(t, x).stop)
    assert 100 < stops["fast"] < stops["default"] - 50


@pytest.mark.parametrize("name", ["default", "fast"])
def test_denoise_sure_network_zero_padding_nearest_upsampling(name):
    # the SURE denoising presets build the light hourglass with padding inside the convolutions
    # (no reflection copies) and nearest upsampling; the other default presets keep reflection
    net = get_preset("denoise", name).build_network(out_channels=3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    ups = [m for m in net.modules() if isinstance(m, torch.nn.Upsample)]
    assert convs and all(c.padding_mode == "zeros" for c in convs)
    assert len(ups) == 5 and all(u.mode == "nearest" for u in ups)
    other = get_preset("super-resolve", "default").build_network(out_channels=3)
    assert any(m.padding_mode == "reflect" for m in other.modules() if isinstance(m, torch.nn.Conv2d))


def test_denoising_stop_waits_out_a_150_iteration_stall():
    # estimates settle, wobble more for 150 iterations (a stalled fit: the windowed variance rises), then
    # settle further: the default rule keeps going and returns an estimate from after the stall, where a
    # patience of 100 would have ended the run inside it
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 16, 16, generator=g)

    def spread(t):
        return 0.02 / (1 + t) * (4 if 400 <= t < 550 else 1)

    seq = [base + spread(t) * torch.randn(base.shape, generator=g) for t in range(900)]
    rule = get_preset("denoise").stopping_rule()
    assert rule.patience == 200
    decisions = [rule.update(t, x) for t, x in enumerate(seq)]
    first_stop = next((t for t, d in enumerate(decisions) if d.stop), None)
    assert first_stop is None or first_stop > 550
    assert max(t for t, d in enumerate(decisions) if d.best) > 550
    short = WindowedVariance(**dict(get_preset("denoise").stop_args, patience=100))
    assert next(t for t, x in enumerate(seq) if short.update(t, x).stop) < 550


def test_denoising_stop_ends_a_slow_edge_down_that_every_minimum_would_keep_going():
    """The default denoising rule counts a new minimum of the windowed std only 5% under the last counted one: a
    std edging down by 4% in 300 iterations after iteration 150 ends the run 200 iterations after the last clear
    minimum (at 2% a new minimum would count about every 150 iterations, less than the patience, and the run would
    go on to the end); with every minimum counting the run goes on to the end. The fast preset's rule does the
    same as the default's."""
    def std(t):
        return 0.02 * 0.99 ** t if t <= 150 else 0.02 * 0.99 ** 150 * (1 - 0.04 * (t - 150) / 300)

    def first_stop(name, **change):
        preset = get_preset("denoise", name)
        rule = WindowedVariance(**dict(preset.stop_args, **change)) if change else preset.stopping_rule()
        rule.noise_level = 0.5 / 255            # a settled threshold far below: only the patience can end the run
        return next((t for t in range(900) if rule.judge(t, std(t) ** 2).stop), None), rule.best_iteration

    stop, best = first_stop("default")
    assert 140 <= best <= 160 and stop == best + 200
    assert first_stop("fast") == (stop, best)
    assert first_stop("default", min_decrease=0.02)[0] is None
    assert first_stop("default", min_decrease=0.0) == (None, 899)


def test_inpaint_quality_preset_is_the_default_with_a_wider_top(astronaut_crop):
    d, q = get_preset("inpaint", "default"), get_preset("inpaint", "quality")
    assert q.fit == d.fit and q.stop == d.stop == "auto"
    assert q.network_args["channels_down"][0] == 32 and q.network_args["channels_skip"] == 8
    assert count_parameters(q.build_network(out_channels=3)) > count_parameters(d.build_network(out_channels=3))
    # it inpaints: 50% missing pixels on a 64x64 crop, 300 iterations, against filling them with the mean
    x = astronaut_crop
    mask = (torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    missing = (mask == 0).expand_as(x)
    r = neuralprior.inpaint(x * mask, mask, preset="quality", device="cpu", num_iter=300, stop="none", seed=0)
    ours = float(-10 * torch.log10(((r.image - x)[missing] ** 2).mean()))
    base = float(-10 * torch.log10(((x[~missing].mean() - x)[missing] ** 2).mean()))
    assert ours > base + 6, f"quality preset: {ours:.2f} dB on missing pixels, mean fill {base:.2f} dB"



def test_inpaint_quality_2_is_quality_fitted_twice_and_averaged():
    q, q2 = get_preset("inpaint", "quality"), get_preset("inpaint", "quality-2")
    assert (q2.network_args, q2.fit, q2.held_out, q2.stop) == (q.network_args, q.fit, q.held_out, q.stop)
    assert q.restarts == 1 and q2.restarts == 2
    assert "| inpaint | quality-2 |" in preset_table() and "x 2 fits, averaged" in preset_table()


def test_jpeg_strong_artefacts_take_the_squared_residual():
    """At a JPEG quality of 8 or less the default's stop watches std / residual^2 (docs/stopping.md, "strong
    artefacts"); above it, unknown, or with another preset, the rule is unchanged."""
    p = get_preset("jpeg")
    assert p.strong_jpeg == {"max_quality": 8, "residual_power": 2.0}
    for quality, power in ((1, 2.0), (5, 2.0), (8, 2.0), (9, 1.5), (50, 1.5), (None, 1.5)):
        rule = p.for_jpeg_quality(quality).stopping_rule()
        assert rule.residual_power == power, quality
        assert (rule.sample, rule.rise, rule.patience, rule.min_iterations) == ("pixels", 0.05, 100, 300)
    assert p.stopping_rule().residual_power == 1.5                    # a copy: the preset itself is unchanged
    paper = get_preset("jpeg", "paper")
    assert paper.for_jpeg_quality(5) is paper and paper.stop == "none"
    assert "JPEG quality at most 8: residual_power 2" in preset_table()


def test_restore_passes_the_jpeg_quality_to_the_stop(astronaut_crop, monkeypatch):
    import neuralprior.tasks as tasks

    seen = []
    real = tasks.fit
    monkeypatch.setattr(tasks, "fit", lambda *a, **kw: (seen.append(kw["stop"]), real(*a, **kw))[1])
    for quality, power in ((5, 2.0), (30, 1.5), (None, 1.5)):
        r = neuralprior.restore("jpeg", astronaut_crop, quality=quality, num_iter=2, device="cpu")
        assert seen[-1].residual_power == power
        assert r.config.get("jpeg_quality") == quality
    for bad in (0, 101, 2.5):
        with pytest.raises(NeuralPriorError, match="quality"):
            neuralprior.restore("jpeg", astronaut_crop, quality=bad, num_iter=2, device="cpu")
    with pytest.raises(NeuralPriorError, match="jpeg task only"):
        neuralprior.denoise(astronaut_crop, quality=5, num_iter=2, device="cpu")
