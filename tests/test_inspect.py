"""Convolution explorer and architecture summary."""
import pytest
import torch
from PIL import Image

from neuralprior import NeuralPriorError
from neuralprior.cli import main
from neuralprior.inspect_net import conv_inputs_of, conv_output_size, receptive_field, summarize
from neuralprior.networks import EncoderDecoder, SkipNet


@pytest.mark.parametrize("n, k, p, d, s", [(7, 3, 1, 1, 1), (8, 3, 1, 1, 2), (10, 3, 0, 2, 1), (9, 5, 2, 1, 3)])
def test_output_size_matches_pytorch(n, k, p, d, s):
    conv = torch.nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d)
    assert conv(torch.zeros(1, 1, n, n)).shape[-1] == conv_output_size(n, k, padding=p, dilation=d, stride=s)


def test_inputs_of_an_output_pixel_match_a_gradient():
    conv = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1, dilation=2, bias=False)
    x = torch.zeros(1, 1, 9, 9, requires_grad=True)
    conv(x)[0, 0, 1, 2].backward()
    rows = sorted({int(r) for r in torch.nonzero(x.grad[0, 0])[:, 0]})
    cols = sorted({int(c) for c in torch.nonzero(x.grad[0, 0])[:, 1]})
    assert rows == [r for r in conv_inputs_of(1, 3, padding=1, dilation=2, stride=2) if 0 <= r < 9]
    assert cols == [c for c in conv_inputs_of(2, 3, padding=1, dilation=2, stride=2) if 0 <= c < 9]


def test_kernel_larger_than_input_is_an_error():
    with pytest.raises(NeuralPriorError, match="no output pixel"):
        conv_output_size(3, 5)


def test_summary_counts_the_paper_network():
    rows, params, flops = summarize(SkipNet(), (512, 512))
    assert params == 2_217_831
    assert rows[-1].shape == (1, 3, 512, 512)
    assert 100e9 < flops < 300e9                                    # about 156 GFLOPs per forward pass


def test_receptive_field_grows_with_depth():
    shallow = SkipNet(in_channels=4, channels_down=[8, 8], channels_up=[8, 8], channels_skip=0)
    deep = SkipNet(in_channels=4, channels_down=[8] * 4, channels_up=[8] * 4, channels_skip=0)
    assert receptive_field(shallow, 64)[0] < receptive_field(deep, 64)[0]
    assert receptive_field(EncoderDecoder(), 64)[0] > 20


def test_conv_and_arch_commands(tmp_path, capsys):
    png = tmp_path / "c.png"
    assert main(["conv", "--size", "8", "--kernel", "3", "--padding", "1", "--stride", "2", "-o", str(png)]) == 0
    out = capsys.readouterr().out
    assert "output 4x4" in out and Image.open(png).size[0] > 100
    assert main(["conv", "--size", "3", "--kernel", "5"]) == 2
    assert main(["arch", "denoise", "--preset", "paper", "--size", "64", "64"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 2,217,831" in out and "receptive field" in out
