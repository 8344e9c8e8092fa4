"""Image files: round trips in every mode and depth, conversions, one-line errors, masks, atomic writes."""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import neuralprior
from neuralprior import NeuralPriorError, load_image, load_mask, save_image
from neuralprior.io import ImageInfo, check_output_path

MODES = ["L", "LA", "RGB", "RGBA"]


def _random_image(mode: str, h: int = 13, w: int = 17, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = 1 if mode.startswith("L") else 3
    x = torch.rand(1, c, h, w, generator=g)
    alpha = torch.rand(1, 1, h, w, generator=g) if mode.endswith("A") else None
    return x, alpha


def _one_line_error(excinfo, path) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg.strip()
    assert str(path) in msg
    return msg


def test_error_class_is_a_value_error():
    assert issubclass(NeuralPriorError, ValueError)
    assert neuralprior.NeuralPriorError is NeuralPriorError


# --- round trips -----------------------------------------------------------------------------

@pytest.mark.parametrize("ext, fmt", [(".png", "PNG"), (".tif", "TIFF"), (".tiff", "TIFF")])
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("mode", MODES)
def test_lossless_round_trip(tmp_path, ext, fmt, depth, mode):
    x, alpha = _random_image(mode)
    path = tmp_path / f"img{ext}"
    save_image(path, x, ImageInfo(mode=mode, bit_depth=depth, alpha=alpha))
    y, info = load_image(path)
    assert (info.mode, info.bit_depth, info.format) == (mode, depth, fmt)
    assert y.shape == x.shape and y.dtype == torch.float32
    tol = 1 / 255 if depth == 8 else 1 / 65535 + 1e-6
    assert float((y - x).abs().max()) <= tol
    if alpha is None:
        assert info.alpha is None
    else:
        assert info.alpha.shape == alpha.shape
        assert float((info.alpha - alpha).abs().max()) <= tol


@pytest.mark.parametrize("depth", [8, 16])
def test_round_trip_is_exact_on_the_grid(tmp_path, depth):
    scale = 255 if depth == 8 else 65535
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, scale + 1, (1, 3, 8, 9), generator=g).float() / scale
    save_image(tmp_path / "a.png", x, ImageInfo(bit_depth=depth))
    y, _ = load_image(tmp_path / "a.png")
    assert torch.allclose(y, x, atol=1e-7, rtol=0)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


@pytest.mark.parametrize("gray", [False, True])
def test_jpeg_round_trip(tmp_path, astronaut_crop, gray):
    x = astronaut_crop.mean(1, keepdim=True) if gray else astronaut_crop
    save_image(tmp_path / "a.jpg", x)
    y, info = load_image(tmp_path / "a.jpg")
    assert (info.mode, info.bit_depth, info.format) == ("L" if gray else "RGB", 8, "JPEG")
    assert y.shape == x.shape
    assert neuralprior.psnr(y, x) > 35                                # quality 95: measured 38-42 dB
    assert float((y - x).abs().mean()) < 4 / 255


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_bmp_round_trip(tmp_path, mode):
    x, _ = _random_image(mode)
    save_image(tmp_path / "a.bmp", x)
    y, info = load_image(tmp_path / "a.bmp")
    assert (info.mode, info.bit_depth, info.format) == (mode, 8, "BMP")
    assert float((y - x).abs().max()) <= 1 / 255


@pytest.mark.parametrize("ext", [".jpg", ".bmp"])
def test_alpha_is_dropped_with_a_warning_where_the_format_has_none(tmp_path, ext):
    x, alpha = _random_image("RGBA")
    with pytest.warns(UserWarning, match="no alpha channel"):
        save_image(tmp_path / f"a{ext}", x, ImageInfo(mode="RGBA", alpha=alpha))
    y, info = load_image(tmp_path / f"a{ext}")
    assert info.mode == "RGB" and info.alpha is None and y.shape == x.shape


def test_sixteen_bit_to_jpeg_is_written_with_eight_bits(tmp_path, astronaut_crop):
    save_image(tmp_path / "a.jpg", astronaut_crop, ImageInfo(bit_depth=16))
    assert load_image(tmp_path / "a.jpg")[1].bit_depth == 8


def test_alpha_of_another_size_is_resized(tmp_path):
    x, _ = _random_image("RGB", 12, 16)
    save_image(tmp_path / "a.png", x, ImageInfo(mode="RGBA", alpha=torch.ones(1, 1, 6, 8)))
    y, info = load_image(tmp_path / "a.png")
    assert info.alpha.shape == (1, 1, 12, 16) and torch.all(info.alpha == 1)


def test_save_accepts_three_dimensional_tensors_and_clips(tmp_path):
    x = torch.linspace(-0.5, 1.5, 3 * 4 * 5).reshape(3, 4, 5)
    save_image(tmp_path / "a.png", x)
    y, info = load_image(tmp_path / "a.png")
    assert y.shape == (1, 3, 4, 5) and info.mode == "RGB"
    assert float(y.min()) == 0 and float(y.max()) == 1
    save_image(tmp_path / "g.png", x[:1])
    assert load_image(tmp_path / "g.png")[1].mode == "L"


def test_save_rejects_an_unknown_extension(tmp_path):
    with pytest.raises(NeuralPriorError, match="unknown output format"):
        save_image(tmp_path / "a.gif", torch.rand(1, 3, 4, 4))


# --- conversions on load ---------------------------------------------------------------------

@pytest.fixture
def rgb_array() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def test_palette_image_loads_as_rgb(tmp_path, rgb_array):
    im = Image.fromarray(rgb_array).convert("P")
    im.save(tmp_path / "p.png")
    y, info = load_image(tmp_path / "p.png")
    assert info.mode == "RGB" and y.shape == (1, 3, 20, 30)
    expected = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    np.testing.assert_allclose(y[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_palette_image_with_transparency_loads_with_alpha(tmp_path, rgb_array):
    Image.fromarray(rgb_array).convert("P").save(tmp_path / "p.png", transparency=0)
    y, info = load_image(tmp_path / "p.png")
    assert info.mode == "RGBA" and y.shape == (1, 3, 20, 30) and info.alpha.shape == (1, 1, 20, 30)


@pytest.mark.parametrize("ext", [".jpg", ".tif"])
def test_cmyk_loads_as_rgb(tmp_path, rgb_array, ext):
    Image.fromarray(rgb_array).convert("CMYK").save(tmp_path / f"c{ext}")
    y, info = load_image(tmp_path / f"c{ext}")
    assert info.mode == "RGB" and y.shape == (1, 3, 20, 30)


def test_bilevel_image_loads_as_gray(tmp_path, rgb_array):
    Image.fromarray(rgb_array[..., 0] > 127).save(tmp_path / "b.png")
    y, info = load_image(tmp_path / "b.png")
    assert info.mode == "L" and set(y.unique().tolist()) == {0.0, 1.0}


def test_sixteen_bit_gray_written_by_pillow(tmp_path):
    arr = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g.png")
    y, info = load_image(tmp_path / "g.png")
    assert (info.mode, info.bit_depth) == ("L", 16)
    np.testing.assert_allclose(y[0, 0].numpy(), arr / 65535, atol=1e-7)


def test_exif_orientation_is_applied_to_jpeg(tmp_path, rgb_array):
    exif = Image.Exif()
    exif[0x0112] = 6                                                  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb_array).save(tmp_path / "r.jpg", exif=exif)
    y, _ = load_image(tmp_path / "r.jpg")
    assert y.shape == (1, 3, 30, 20)                                  # stored 20x30 (HxW), shown 30x20


def test_exif_orientation_rotates_the_pixels(tmp_path):
    arr = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "r.png", exif=exif)
    y, _ = load_image(tmp_path / "r.png")
    assert np.array_equal((y[0, 0].numpy() * 255).round().astype(np.uint8), np.rot90(arr, -1))


# --- errors ----------------------------------------------------------------------------------

def _good_png(path: Path, shape=(32, 32, 3)) -> bytes:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path.read_bytes()


@pytest.mark.parametrize("case, match", [
    ("missing", "no such file"), ("directory", "is a directory"), ("empty", "empty file"),
    ("truncated", "corrupt or truncated"), ("text", "not a readable image"),
    ("1x1", "1x1 pixels"), ("1xN", "7x1 pixels"), ("Nx1", "1x7 pixels"), ("truncated16", "corrupt or truncated"),
])
def test_load_errors_are_one_line_neural_prior_errors(tmp_path, case, match):
    path = tmp_path / "bad.png"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        good = _good_png(tmp_path / "good.png")
        path.write_bytes(good[: len(good) // 2])
    elif case == "truncated16":
        save_image(tmp_path / "good.png", torch.rand(1, 3, 32, 32), ImageInfo(bit_depth=16))
        good = (tmp_path / "good.png").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    elif case == "text":
        path.write_text("this is not an image\n")
    elif case == "1x1":
        Image.fromarray(np.zeros((1, 1), np.uint8)).save(path)
    elif case == "1xN":
        Image.fromarray(np.zeros((1, 7), np.uint8)).save(path)
    elif case == "Nx1":
        Image.fromarray(np.zeros((7, 1), np.uint8)).save(path)
    with pytest.raises(NeuralPriorError, match=match) as excinfo:
        load_image(path)
    _one_line_error(excinfo, path)
    with pytest.raises(NeuralPriorError):
        load_mask(path)


def test_sixteen_bit_png_with_a_bad_checksum_raises(tmp_path):
    # Pillow does not verify IDAT checksums; the 16-bit reader (pypng) does, with its own exception types
    save_image(tmp_path / "good.png", torch.rand(1, 3, 6, 6), ImageInfo(bit_depth=16))
    blob = bytearray((tmp_path / "good.png").read_bytes())
    i = blob.index(b"IDAT")
    n = int.from_bytes(blob[i - 4:i], "big")
    blob[i + 4 + n] ^= 0xFF                                           # first byte of the IDAT CRC
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(blob))
    with pytest.raises(NeuralPriorError, match="corrupt or truncated") as excinfo:
        load_image(path)
    _one_line_error(excinfo, path)


def test_float_tiff_loads_and_non_finite_float_tiff_raises(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    a = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", a, photometric="rgb")
    y, info = load_image(tmp_path / "f.tif")
    assert info.mode == "RGB" and info.bit_depth == 16
    np.testing.assert_allclose(y[0].permute(1, 2, 0).numpy(), a, atol=1e-7)
    a[1, 1, 1] = np.nan
    tifffile.imwrite(tmp_path / "n.tif", a, photometric="rgb")
    with pytest.raises(NeuralPriorError, match="NaN or infinite"):
        load_image(tmp_path / "n.tif")


def test_empty_tiff_raises(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                               # "writing zero-size array"
        tifffile.imwrite(tmp_path / "e.tif", np.zeros((0, 5, 3), np.float32))   # float: the scale probe once failed
    with pytest.raises(NeuralPriorError, match="no pixels"):
        load_image(tmp_path / "e.tif")


# --- masks -----------------------------------------------------------------------------------

def _save_gray(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return path


def test_binary_mask_loads_exactly(tmp_path):
    arr = np.zeros((6, 8), np.uint8)
    arr[:, :5] = 255
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                # a binary mask gives no warning
        m = load_mask(_save_gray(tmp_path / "m.png", arr), shape=(6, 8))
    assert m.shape == (1, 1, 6, 8) and m.dtype == torch.float32
    assert torch.equal(m[0, 0], torch.from_numpy(arr > 0).float())


def test_non_binary_mask_warns_and_is_thresholded(tmp_path):
    arr = np.array([[0, 100, 128, 200], [255, 10, 250, 0]], np.uint8)
    with pytest.warns(UserWarning, match="not binary"):
        m = load_mask(_save_gray(tmp_path / "m.png", arr))
    assert torch.equal(m[0, 0], torch.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]]))


def test_rgb_mask_uses_the_mean_of_the_channels(tmp_path):
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[:2] = 255
    Image.fromarray(arr).save(tmp_path / "m.png")
    m = load_mask(tmp_path / "m.png")
    assert m.shape == (1, 1, 4, 4) and float(m.sum()) == 8


def test_transparent_mask_pixels_count_as_missing(tmp_path):
    arr = np.full((4, 4, 2), 255, np.uint8)
    arr[0, :, 1] = 0                                                  # first row fully transparent
    Image.fromarray(arr, mode="LA").save(tmp_path / "m.png")
    m = load_mask(tmp_path / "m.png")
    assert float(m[0, 0, 0].sum()) == 0 and float(m[0, 0, 1:].sum()) == 12


def test_sixteen_bit_binary_mask(tmp_path):
    arr = np.zeros((4, 5), np.uint16)
    arr[1:] = 65535
    Image.fromarray(arr).save(tmp_path / "m.png")
    assert float(load_mask(tmp_path / "m.png").sum()) == 15


def test_mask_of_the_wrong_shape_raises(tmp_path):
    path = _save_gray(tmp_path / "m.png", np.full((6, 8), 255))
    with pytest.raises(NeuralPriorError, match="mask is 8x6 but the image is 9x7") as excinfo:
        load_mask(path, shape=(7, 9))
    _one_line_error(excinfo, path)


def test_all_zero_mask_raises(tmp_path):
    path = _save_gray(tmp_path / "m.png", np.zeros((6, 8)))
    with pytest.raises(NeuralPriorError, match="no known pixel") as excinfo:
        load_mask(path)
    _one_line_error(excinfo, path)


# --- atomic writes and output paths ----------------------------------------------------------

@pytest.mark.parametrize("ext, depth", [(".png", 8), (".png", 16), (".tif", 16), (".jpg", 8), (".bmp", 8)])
def test_save_leaves_no_temporary_files(tmp_path, ext, depth):
    out = save_image(tmp_path / f"out{ext}", torch.rand(1, 3, 8, 8), ImageInfo(bit_depth=depth))
    assert out == tmp_path / f"out{ext}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{ext}"]


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    import neuralprior.io as nio

    path = tmp_path / "out.png"
    save_image(path, torch.zeros(1, 3, 4, 4))
    before = path.read_bytes()

    def broken_write(p, arr, fmt, depth):
        Path(p).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nio, "_write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        save_image(path, torch.ones(1, 3, 4, 4))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_saved_files_get_the_usual_permissions_not_the_temporary_files_private_ones(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = save_image(tmp_path / "out.png", torch.zeros(1, 1, 4, 4))
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_overwrites_an_existing_file(tmp_path):
    path = tmp_path / "out.png"
    save_image(path, torch.zeros(1, 1, 4, 4))
    save_image(path, torch.ones(1, 1, 4, 4))
    assert torch.all(load_image(path)[0] == 1)


def test_check_output_path_accepts_a_writable_file(tmp_path):
    assert check_output_path(tmp_path / "new.PNG") == tmp_path / "new.PNG"
    existing = tmp_path / "old.tif"
    existing.write_bytes(b"x")
    assert check_output_path(existing) == existing


def test_check_output_path_relative_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output_path("out.png") == Path("out.png")


@pytest.mark.parametrize("name, match", [("missing/out.png", "does not exist"), ("out.gif", "unknown output format"),
                                         ("out", r"\(none\)"), ("adir.png", "is a directory")])
def test_check_output_path_rejects(tmp_path, name, match):
    (tmp_path / "adir.png").mkdir()
    path = tmp_path / name
    with pytest.raises(NeuralPriorError, match=match) as excinfo:
        check_output_path(path)
    _one_line_error(excinfo, path)


def test_check_output_path_protects_the_input_unless_forced(tmp_path):
    inp = tmp_path / "in.png"
    _good_png(inp)
    with pytest.raises(NeuralPriorError, match="overwrite the input"):
        check_output_path(inp, input_path=inp)
    with pytest.raises(NeuralPriorError, match="overwrite the input"):      # same file by another name
        check_output_path(tmp_path / "." / "in.png", input_path=str(inp))
    assert check_output_path(inp, input_path=inp, force=True) == inp
    assert check_output_path(tmp_path / "out.png", input_path=inp) == tmp_path / "out.png"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_check_output_path_rejects_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(NeuralPriorError, match="not writable"):
            check_output_path(ro / "out.png")
    finally:
        ro.chmod(0o700)


# --- fuzzing: malformed files raise NeuralPriorError and nothing else ------------------------

@functools.lru_cache(maxsize=1)
def _valid_files() -> tuple[tuple[str, bytes], ...]:
    """Small valid files of every format, mode and depth the reader handles."""
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as d:
        for ext, depths in ((".png", (8, 16)), (".tif", (8, 16)), (".jpg", (8,)), (".bmp", (8,))):
            for depth in depths:
                for mode in MODES:
                    if ext in (".jpg", ".bmp") and mode.endswith("A"):
                        continue
                    x, alpha = _random_image(mode, 6, 5, seed=len(out))
                    p = Path(d) / f"f{ext}"
                    save_image(p, x, ImageInfo(mode=mode, bit_depth=depth, alpha=alpha))
                    out.append((ext, p.read_bytes()))
    return tuple(out)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXTENSIONS = st.sampled_from([".png", ".jpg", ".tif", ".bmp", ".dat"])
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_or_raise_cleanly(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                               # non-binary masks warn: not under test here
        try:
            x, info = load_image(path)
        except NeuralPriorError as e:
            assert "\n" not in str(e)
        else:
            assert x.ndim == 4 and x.shape[0] == 1 and x.shape[1] in (1, 3)
            assert x.shape[-2] >= 2 and x.shape[-1] >= 2
            assert x.dtype == torch.float32 and torch.isfinite(x).all()
            assert float(x.min()) >= 0 and float(x.max()) <= 1
            assert info.mode in MODES and info.bit_depth in (8, 16)
        try:
            m = load_mask(path)
        except NeuralPriorError as e:
            assert "\n" not in str(e)
        else:
            assert m.ndim == 4 and m.shape[:2] == (1, 1)
            assert set(m.unique().tolist()) <= {0.0, 1.0} and float(m.sum()) > 0


@SETTINGS
@given(data=st.binary(max_size=600), ext=EXTENSIONS)
def test_fuzz_random_bytes(tmp_path, data, ext):
    path = tmp_path / f"fuzz{ext}"
    path.write_bytes(data)
    _load_or_raise_cleanly(path)


@SETTINGS
@given(tail=st.binary(max_size=400), keep_ihdr=st.booleans(), ext=EXTENSIONS)
def test_fuzz_bytes_after_a_png_header(tmp_path, tail, keep_ihdr, ext):
    valid = _valid_files()[0][1]                                      # an 8-bit PNG
    head = valid[:33] if keep_ihdr else PNG_SIGNATURE                 # signature (+ IHDR chunk)
    path = tmp_path / f"fuzz{ext}"
    path.write_bytes(head + tail)
    _load_or_raise_cleanly(path)


@SETTINGS
@given(data=st.data())
def test_fuzz_truncated_and_corrupted_valid_files(tmp_path, data):
    files = _valid_files()
    ext, valid = files[data.draw(st.integers(0, len(files) - 1), label="file")]
    cut = data.draw(st.integers(1, len(valid)), label="cut")
    blob = bytearray(valid[:cut])
    for _ in range(data.draw(st.integers(0, 4), label="flips")):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    blob += data.draw(st.binary(max_size=64), label="tail")
    path = tmp_path / f"fuzz{data.draw(st.sampled_from([ext, '.png', '.tif']), label='ext')}"
    path.write_bytes(bytes(blob))
    _load_or_raise_cleanly(path)


@pytest.mark.parametrize("quality", [2, 5, 10, 20, 35, 50, 70, 90, 100])
def test_jpeg_quality_reads_the_quality_a_file_was_saved_with(tmp_path, rgb_array, quality):
    from neuralprior.io import jpeg_quality

    Image.fromarray(rgb_array).save(tmp_path / "a.jpg", quality=quality)
    Image.fromarray(rgb_array).convert("L").save(tmp_path / "g.jpg", quality=quality)
    assert jpeg_quality(tmp_path / "a.jpg") == jpeg_quality(tmp_path / "g.jpg") == quality


def test_jpeg_quality_of_files_that_are_no_jpeg(tmp_path, rgb_array):
    from neuralprior.io import jpeg_quality

    Image.fromarray(rgb_array).save(tmp_path / "a.png")
    assert jpeg_quality(tmp_path / "a.png") is None
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    assert jpeg_quality(tmp_path / "b.jpg") is None
    with pytest.raises(NeuralPriorError, match="no such file"):
        jpeg_quality(tmp_path / "missing.jpg")
