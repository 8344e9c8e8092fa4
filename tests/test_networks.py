"""Generators: parameter counts of the paper's networks, shapes, and every architectural knob."""
from __future__ import annotations

import pytest
import torch

from neuralprior.networks import DeepDecoder, EncoderDecoder, SkipConfig, SkipNet, count_parameters, set_fused

TINY = dict(in_channels=4, channels_down=[4, 8], channels_up=[4, 8], channels_skip=2)


# --- the paper's configurations --------------------------------------------------------------

@pytest.mark.parametrize("kwargs, expected", [
    ({}, 2_217_831),                                                   # denoising / super-resolution
    (dict(out_channels=1), 2_217_573),
    (dict(in_channels=3, channels_down=[8, 16, 32, 64, 128], channels_up=[8, 16, 32, 64, 128],
          channels_skip=[0, 0, 0, 4, 4]), 572_827),                    # JPEG artefacts (snail)
    (dict(in_channels=2, channels_skip=0, upsample="nearest"), 2_157_955),   # meshgrid input, no skips
    (dict(channels_skip=128, upsample="nearest"), 3_002_627),          # inpainting (text masks)
], ids=["default", "gray", "jpeg", "meshgrid-noskip", "inpaint"])
def test_paper_parameter_counts(kwargs, expected):
    assert count_parameters(SkipNet(**kwargs)) == expected


def test_skipnet_accepts_a_config_object():
    cfg = SkipConfig(out_channels=1)
    assert count_parameters(SkipNet(cfg)) == 2_217_573
    assert SkipNet(cfg, out_channels=3).config.out_channels == 3
    assert cfg.out_channels == 1                                      # overrides do not change the config passed in


def test_count_parameters_ignores_frozen_parameters():
    net = SkipNet(**TINY)
    total = count_parameters(net)
    frozen = sum(p.numel() for p in net.head.parameters())
    for p in net.head.parameters():
        p.requires_grad_(False)
    assert count_parameters(net) == total - frozen


# --- shapes ----------------------------------------------------------------------------------

def test_skipnet_output_shape_equals_input_shape(rng):
    net = SkipNet(in_channels=8, channels_down=[8, 8, 16, 16, 16], channels_up=[8, 8, 16, 16, 16], channels_skip=4)
    assert net.multiple == 32 and net.latent_size(64, 64) == (64, 64)
    z = torch.rand(1, 8, 64, 64, generator=rng) * 0.1
    with torch.no_grad():
        x = net(z)
    assert x.shape == (1, 3, 64, 64)
    assert float(x.min()) >= 0 and float(x.max()) <= 1                # sigmoid output


def test_skipnet_without_sigmoid_is_unbounded(rng):
    net = SkipNet(**TINY, sigmoid=False)
    x = net(torch.randn(1, 4, 16, 16, generator=rng) * 50)
    assert x.shape == (1, 3, 16, 16)
    assert not isinstance(net.head[-1], torch.nn.Sigmoid)


def test_encoder_decoder_output_shape_equals_input_shape(rng):
    net = EncoderDecoder(in_channels=8, width=8, skip_channels=4)
    assert net.multiple == 8 and net.latent_size(64, 64) == (64, 64)
    assert net(torch.rand(1, 8, 64, 64, generator=rng)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("num_layers", [3, 4])
def test_deep_decoder_maps_a_small_code_to_the_image_size(num_layers, rng):
    net = DeepDecoder(channels=8, num_layers=num_layers, out_channels=1)
    assert net.multiple == 2**num_layers
    lh, lw = net.latent_size(64, 64)
    assert (lh, lw) == (64 // 2**num_layers, 64 // 2**num_layers)
    x = net(torch.rand(1, 8, lh, lw, generator=rng))
    assert x.shape == (1, 1, 64, 64)


def test_deep_decoder_is_under_parameterised():
    # 7 bias-free 64x64 1x1 convolutions, 7 batch norms and a 64 -> 3 head: far fewer weights than SkipNet
    assert count_parameters(DeepDecoder()) == 7 * 64 * 64 + 7 * 2 * 64 + 64 * 3 + 3
    assert count_parameters(DeepDecoder()) < count_parameters(SkipNet()) // 50


def test_encoder_decoder_skip_connections_add_parameters():
    n = {s: count_parameters(EncoderDecoder(width=16, skip_channels=8, skips=s))
         for s in [(False, False), (True, False), (False, True), (True, True)]}
    assert n[(False, False)] < n[(True, False)] < n[(True, True)]
    assert n[(False, False)] < n[(False, True)] < n[(True, True)]


@pytest.mark.parametrize("skips", [(False, False), (True, False), (False, True)])
def test_encoder_decoder_runs_without_skips(skips, rng):
    net = EncoderDecoder(in_channels=4, width=8, skip_channels=2, skips=skips)
    assert net(torch.rand(1, 4, 32, 32, generator=rng)).shape == (1, 3, 32, 32)


# --- every knob builds and runs --------------------------------------------------------------

def _runs(net, rng, size=16, channels=4):
    x = net(torch.rand(2, channels, size, size, generator=rng))
    assert x.shape == (2, net.out_channels, size, size)
    assert torch.isfinite(x).all()
    x.mean().backward()                                               # differentiable end to end
    return x


@pytest.mark.parametrize("pad", ["reflection", "reflect", "zero", "zeros", "replicate", "circular"])
def test_every_padding_mode(pad, rng):
    _runs(SkipNet(**TINY, pad=pad), rng)


@pytest.mark.parametrize("pad", ["reflection", "replicate", "circular"])
def test_unpadded_convolutions_skip_the_padding_copy_and_compute_the_same(pad):
    torch.manual_seed(0)
    net = SkipNet(**TINY, pad=pad).eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    ones = [c for c in convs if c.padding == (0, 0)]
    assert ones and all(c.padding_mode == "zeros" for c in ones)          # 1x1: nothing to pad
    assert all(c.padding_mode != "zeros" for c in convs if c.padding != (0, 0))
    z = torch.rand(1, 4, 16, 16)
    before = net(z)
    for c in ones:                                                        # PyTorch's padding of 0 pixels
        c.padding_mode = next(c.padding_mode for c in convs if c.padding != (0, 0))
    assert torch.equal(net(z), before)


@pytest.mark.parametrize("down", ["stride", "avg", "max", "lanczos", ["lanczos", "avg"]])
def test_every_downsampling_mode(down, rng):
    _runs(SkipNet(**TINY, downsample=down), rng)


def test_downsampling_modes_give_different_networks():
    n = {d: count_parameters(SkipNet(**TINY, downsample=d)) for d in ("stride", "avg", "max", "lanczos")}
    assert len(set(n.values())) == 1                                   # the pooling has no weights ...
    torch.manual_seed(0)
    a = SkipNet(**TINY, downsample="stride")
    torch.manual_seed(0)
    b = SkipNet(**TINY, downsample="avg")
    z = torch.rand(1, 4, 16, 16)
    assert not torch.allclose(a(z), b(z))                             # ... but it changes the function


@pytest.mark.parametrize("up", ["nearest", "bilinear", "bicubic", ["nearest", "bicubic"]])
def test_every_upsampling_mode(up, rng):
    _runs(SkipNet(**TINY, upsample=up), rng)


@pytest.mark.parametrize("act", ["LeakyReLU", "ReLU", "ELU", "Swish", "SiLU", "GELU", "none", "leakyrelu"])
def test_every_activation(act, rng):
    _runs(SkipNet(**TINY, act=act), rng)


@pytest.mark.parametrize("norm", ["batch", "bn", "instance", "group", "none"])
def test_every_normalisation(norm, rng):
    _runs(SkipNet(**TINY, norm=norm), rng)        # the concatenation has 2 + 8 = 10 channels


def test_group_norm_with_the_paper_widths(rng):
    # the paper's levels concatenate 4 skip + 128 channels: 132 is not a multiple of 8
    net = SkipNet(in_channels=4, channels_down=[128], channels_up=[128], channels_skip=4, norm="group")
    assert net(torch.rand(1, 4, 8, 8, generator=rng)).shape == (1, 3, 8, 8)


def test_per_level_kernels_dilation_and_no_1x1(rng):
    _runs(SkipNet(**TINY, kernel_down=[3, 5], kernel_up=[5, 3], kernel_skip=3, dilation=[1, 2], need_1x1_up=False),
          rng, size=32)


@pytest.mark.parametrize("down", ["stride", "avg"])
def test_separable_convolutions(down, rng):
    # each 3x3 convolution becomes depthwise 3x3 (9 weights per input channel) + 1x1 (cin x cout + bias)
    net = SkipNet(**TINY, separable=True, downsample=down)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.kernel_size == (1, 1) or m.groups == m.in_channels for m in convs)
    assert any(m.groups > 1 for m in convs)
    x = _runs(net, rng)
    assert x.shape[-2:] == (16, 16)
    # the light network of the default presets: about 6x fewer weights
    light = dict(channels_down=[16, 32, 64, 128, 128], channels_up=[16, 32, 64, 128, 128], channels_skip=4)
    assert count_parameters(SkipNet(**light)) > 6 * count_parameters(SkipNet(**light, separable=True))
    top = SkipNet(**TINY, separable=[True, False])          # per level: the first level only
    assert count_parameters(SkipNet(**TINY)) > count_parameters(top) > count_parameters(net)


@pytest.mark.parametrize("act", ["ReLU", "GELU"])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("up", ["nearest", "bilinear"])
def test_deep_decoder_and_lab_variants(act, norm, up, rng):
    x = DeepDecoder(channels=4, num_layers=2, act=act, norm_name=norm, up=up)(torch.rand(1, 4, 4, 4, generator=rng))
    assert x.shape == (1, 3, 16, 16)
    y = EncoderDecoder(in_channels=4, width=8, skip_channels=2, act=act, norm=norm, up=up)(
        torch.rand(1, 4, 16, 16, generator=rng))
    assert y.shape == (1, 3, 16, 16)


def test_depth_follows_the_channel_list():
    assert SkipNet(in_channels=4, channels_down=[4], channels_up=[4], channels_skip=0).multiple == 2
    assert SkipNet(in_channels=4, channels_down=[4] * 3, channels_up=[4] * 3, channels_skip=0).multiple == 8


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value", [
    ("channels_up", [4, 8, 8]), ("channels_skip", [2]), ("kernel_down", [3, 3, 3]), ("kernel_up", [3]),
    ("kernel_skip", [1, 1, 1]), ("dilation", [1]), ("downsample", ["stride"]), ("upsample", ["nearest"] * 3),
])
def test_per_level_list_of_wrong_length_raises(name, value):
    with pytest.raises(ValueError, match=f"{name} has {len(value)} entries"):
        SkipNet(**{**TINY, name: value})


@pytest.mark.parametrize("kwargs, match", [
    (dict(act="tanhh"), "unknown activation"),
    (dict(norm="layer"), "unknown normalisation"),
    (dict(pad="mirror"), "unknown padding"),
    (dict(downsample="bilinear"), "unknown downsampling"),
    (dict(upsample="area"), "unknown upsampling"),
    (dict(channels_down=[], channels_up=[]), "at least one level"),
])
def test_unknown_options_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SkipNet(**{**TINY, **kwargs})


def test_unknown_option_name_raises_type_error():
    with pytest.raises(TypeError):
        SkipNet(widht=3)


# --- nearest upsampling computed as a transposed convolution (same function, less arithmetic) ----

def _unfused(net):
    import copy
    return set_fused(copy.deepcopy(net), False)


@pytest.mark.parametrize("kwargs, fusable", [
    (dict(pad="zero", upsample="nearest"), [True, True]),
    (dict(pad="reflection", upsample="nearest"), [True, True]),
    (dict(pad="replicate", upsample="nearest", channels_skip=[0, 2]), [True, True]),   # a level without skip
    (dict(pad="circular", upsample="nearest", norm="none"), [True, True]),
    (dict(upsample=["nearest", "bilinear"]), [True, False]),                          # only nearest levels
    (dict(upsample="nearest", kernel_up=[3, 5]), [True, False]),                      # only 3x3 convolutions
    (dict(upsample="nearest", separable=[True, False]), [False, True]),
    (dict(upsample="nearest", norm="instance"), [False, False]),
])
def test_fused_nearest_levels_are_the_same_function(kwargs, fusable):
    torch.manual_seed(0)
    net = SkipNet(**{**TINY, **kwargs}).double()
    assert [m.fusable for m in net.modules() if hasattr(m, "fusable")] == fusable
    ref = _unfused(net)
    z = torch.rand(2, 4, 16, 16, dtype=torch.float64)
    out, out_ref = net(z), ref(z)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
    (out * torch.linspace(0, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    (out_ref * torch.linspace(0, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-10)
    for b, c in zip(net.buffers(), ref.buffers()):            # running statistics as batch norm keeps them
        torch.testing.assert_close(b, c, rtol=0, atol=1e-12)
    net.eval(), ref.eval()
    torch.testing.assert_close(net(z), ref(z), rtol=0, atol=1e-12)


def test_fused_levels_skip_the_upsampling_and_listing_shows_every_layer():
    from neuralprior.inspect_net import summarize

    net = SkipNet(**TINY, upsample="nearest", pad="zero")
    calls = []
    hooks = [m.register_forward_hook(lambda *a: calls.append(1)) for m in net.modules()
             if isinstance(m, torch.nn.Upsample)]
    net(torch.rand(1, 4, 16, 16))
    assert calls == []                              # fused: no upsampled tensor is made
    _unfused(net)(torch.rand(1, 4, 16, 16))        # (the copy keeps the hooks)
    assert len(calls) == 2                          # layer by layer: both levels upsample
    for h in hooks:
        h.remove()
    layers, _, _ = summarize(net, (16, 16))
    assert sum(layer.kind == "Upsample" for layer in layers) == 2      # the listing is layer by layer
