"""Image files <-> NCHW float tensors in [0, 1]: the only place that sees uint8, uint16, HWC or PIL.

Reads PNG, JPEG, TIFF and BMP; grayscale, RGB and RGBA (alpha carried through, never
restored); 8 and 16 bits. Palette, LA and CMYK images are converted (to RGB/RGBA, L +
alpha, RGB). EXIF orientation is applied. Writes keep the mode and bit depth of the
input, atomically (a temporary file in the same folder, then a rename).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ._validation import NeuralPriorError

Image.MAX_IMAGE_PIXELS = 300_000_000      # refuse decompression bombs, allow large photos
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}


@dataclass
class ImageInfo:
    """What is needed to write a result the way the input was stored."""

    mode: str = "RGB"          # "L", "LA", "RGB" or "RGBA" after conversion
    bit_depth: int = 8         # 8 or 16
    alpha: torch.Tensor | None = field(default=None, repr=False)   # (1, 1, H, W) in [0, 1], carried through unchanged
    format: str = "PNG"


def _fail(path, what: str):
    raise NeuralPriorError(f"{path}: {what}")


def _check_readable(path: Path) -> None:
    if not path.exists():
        _fail(path, "no such file")
    if path.is_dir():
        _fail(path, "is a directory, not an image file")
    if not os.access(path, os.R_OK):
        _fail(path, "permission denied")
    if path.stat().st_size == 0:
        _fail(path, "empty file")


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    return head[24] if len(head) >= 26 and head[:8] == b"\x89PNG\r\n\x1a\n" else 8


def _read_array(path: Path) -> tuple[np.ndarray, str]:
    """Pixels as an (H, W, C) integer or float array, and the format name."""
    try:
        with Image.open(path) as im:
            fmt = im.format or ""
            im.load()
            im = ImageOps.exif_transpose(im)
            mode = im.mode
            if fmt == "PNG" and mode in ("RGB", "RGBA") and _png_bit_depth(path) == 16:
                return _read_png16(path), fmt
            if fmt == "TIFF" and mode in ("RGB", "RGBA"):
                arr = _read_tiff(path)
                if arr is not None:
                    return arr, fmt
            if mode == "P" or mode == "PA":
                im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
            elif mode == "1":
                im = im.convert("L")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            elif mode == "La":
                im = im.convert("LA")
            elif mode == "RGBa":
                im = im.convert("RGBA")
            arr = np.asarray(im)
    except NeuralPriorError:
        raise
    except UnidentifiedImageError:
        arr = _read_tiff(path, any_kind=True) if path.suffix.lower() in (".tif", ".tiff") else None
        if arr is None:
            _fail(path, "not a readable image (unknown format or corrupt file)")
        return (arr[:, :, None] if arr.ndim == 2 else arr), "TIFF"
    except Image.DecompressionBombError as e:
        _fail(path, f"image too large ({e})")
    except (OSError, SyntaxError, ValueError) as e:
        _fail(path, f"corrupt or truncated image ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr, fmt


def _read_png16(path: Path) -> np.ndarray:
    import png

    try:
        w, h, rows, info = png.Reader(filename=str(path)).asDirect()
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(h, w, info["planes"])
    except png.Error as e:          # pypng's errors are not OSError/ValueError: name them here
        _fail(path, f"corrupt or truncated image ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return arr


def _read_tiff(path: Path, any_kind: bool = False):
    """16-bit colour TIFF (which PIL reads as 8 bits), or any TIFF PIL cannot read."""
    try:
        import tifffile
        arr = tifffile.imread(str(path))
    except Exception:
        return None
    if arr.ndim == 2 and any_kind:
        return arr
    if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4) and (any_kind or arr.dtype == np.uint16):
        return arr
    return None


def load_image(path: str | os.PathLike) -> tuple[torch.Tensor, ImageInfo]:
    """Read an image file as a (1, C, H, W) float32 tensor in [0, 1] (C = 1 or 3) and its :class:`ImageInfo`.

    Raises :class:`NeuralPriorError` (a ``ValueError``) with a one-line message for a
    missing, empty, unreadable, corrupt or degenerate file.
    """
    path = Path(path)
    _check_readable(path)
    arr, fmt = _read_array(path)
    if arr.ndim != 3 or arr.size == 0:
        _fail(path, f"image has no pixels (array of shape {arr.shape})")
    if arr.dtype == np.uint8 or arr.dtype == bool:
        depth, scale = 8, 255.0
    elif arr.dtype in (np.uint16, np.int32, np.int64, np.uint32):
        depth, scale = 16, 65535.0
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            _fail(path, "image contains NaN or infinite values")
        depth, scale = 16, (1.0 if arr.max() <= 1.0 else 65535.0)
    else:
        _fail(path, f"unsupported pixel type {arr.dtype}")
    h, w, c = arr.shape
    if h < 2 or w < 2:
        _fail(path, f"image is {w}x{h} pixels; at least 2x2 is needed")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32) / scale).clamp(0, 1).permute(2, 0, 1)[None]
    alpha = None
    if c in (2, 4):
        x, alpha = x[:, :-1], x[:, -1:]
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(c)
    if mode is None:
        _fail(path, f"unsupported number of channels: {c}")
    return x.contiguous(), ImageInfo(mode=mode, bit_depth=depth, alpha=alpha, format=fmt)


# the luminance quantisation table of the JPEG standard (Annex K), which the IJG library scales by quality
_JPEG_LUMINANCE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                   14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                   49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


def _ijg_table(quality: int) -> list[int]:
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(max((q * scale + 50) // 100, 1), 255) for q in _JPEG_LUMINANCE]


def jpeg_quality(path: str | os.PathLike) -> int | None:
    """The quality (1 to 100, on the IJG scale that Pillow and libjpeg use) whose luminance table is nearest
    to a JPEG file's, or None when the file is no JPEG or has no quantisation table.

    Tables not made by that scaling (some cameras') give the nearest quality all the same: an estimate of how
    strongly the image was compressed, not a certainty. A missing file raises :class:`NeuralPriorError`.
    """
    path = Path(path)
    _check_readable(path)
    try:
        with Image.open(path) as im:
            tables = getattr(im, "quantization", None) if im.format == "JPEG" else None
    except (UnidentifiedImageError, OSError):
        return None
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return None
    seen = sorted(int(v) for v in tables[0])       # sorted: the same whatever order the table is given in
    return min(range(1, 101), key=lambda q: sum(abs(a - b) for a, b in zip(seen, sorted(_ijg_table(q)))))


def load_mask(path: str | os.PathLike, shape: tuple[int, int] | None = None) -> torch.Tensor:
    """Read a mask image as a (1, 1, H, W) float tensor: 1 = known pixel (non-zero), 0 = missing.

    A mask with values other than 0 and the maximum is thresholded at half range, with a warning.
    ``shape`` (H, W) is checked when given.
    """
    x, info = load_image(path)
    m = x.mean(dim=1, keepdim=True) if x.shape[1] > 1 else x
    if info.alpha is not None and (info.alpha < 1).any():
        m = m * info.alpha
    binary = ((m == 0) | (m == 1)).all()
    if not binary:
        warnings.warn(f"{path}: mask is not binary; pixels above half range count as known", stacklevel=2)
        m = (m > 0.5).float()
    else:
        m = (m > 0).float()
    if shape is not None and tuple(m.shape[-2:]) != tuple(shape):
        raise NeuralPriorError(f"{path}: mask is {m.shape[-1]}x{m.shape[-2]} but the image is {shape[1]}x{shape[0]}")
    if m.sum() == 0:
        raise NeuralPriorError(f"{path}: mask has no known pixel (all zero); non-zero marks known pixels")
    return m


def check_writable_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Check that a file can be created at ``path`` (its folder exists and is writable)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise NeuralPriorError(f"{path}: {what} folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise NeuralPriorError(f"{path}: {what} folder {parent} is not writable")
    if path.is_dir():
        raise NeuralPriorError(f"{path}: is a directory; give a file name")
    return path


def _umask() -> int:
    mask = os.umask(0o022)      # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on failure removed.

    The file gets the permissions a plain ``open(path, "w")`` would give (mkstemp makes it private).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def check_output_path(path: str | os.PathLike, *, input_path: str | os.PathLike | None = None,
                      force: bool = False) -> Path:
    """Check before a long run that ``path`` can be written; return it as a Path."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise NeuralPriorError(f"{path}: unknown output format {path.suffix or '(none)'}; use "
                               + ", ".join(sorted(FORMATS)))
    check_writable_file(path)
    if input_path is not None and not force and path.exists() and Path(input_path).exists() \
            and os.path.samefile(path, input_path):
        raise NeuralPriorError(f"{path}: output would overwrite the input; choose another name or pass --force")
    return path


def to_array(x: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) float in [0, 1] -> (H, W, C) uint8 or uint16, rounded."""
    if x.ndim == 4:
        x = x[0]
    scale, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    a = (x.detach().float().clamp(0, 1).cpu() * scale).round().permute(1, 2, 0).numpy()
    return a.astype(dtype)


def save_image(path: str | os.PathLike, x: torch.Tensor, info: ImageInfo | None = None) -> Path:
    """Write ``x`` (1 or 3 channels in [0, 1]) in the mode and bit depth of ``info``, atomically.

    The format follows the file extension. JPEG and BMP hold 8 bits and no alpha: a 16-bit
    image is written with 8 bits and an alpha channel is dropped (with a warning).
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise NeuralPriorError(f"{path}: unknown output format {path.suffix or '(none)'}")
    info = info or ImageInfo(mode="L" if x.shape[-3] == 1 else "RGB")
    depth = info.bit_depth if fmt in ("PNG", "TIFF") else 8
    alpha = info.alpha
    if alpha is not None and fmt in ("JPEG", "BMP"):
        warnings.warn(f"{path}: {fmt} has no alpha channel; it is dropped", stacklevel=2)
        alpha = None
    if alpha is not None and tuple(alpha.shape[-2:]) != tuple(x.shape[-2:]):
        alpha = torch.nn.functional.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)
    if x.ndim == 3:
        x = x[None]
    full = torch.cat([x, alpha.to(x)], dim=1) if alpha is not None else x
    arr = to_array(full, depth)
    with atomic_path(path) as tmp:
        _write(tmp, arr, fmt, depth)
    return path


def _write(path: Path, arr: np.ndarray, fmt: str, depth: int) -> None:
    h, w, c = arr.shape
    if depth == 16 and fmt == "TIFF":
        import tifffile
        tifffile.imwrite(str(path), arr[..., 0] if c == 1 else arr, photometric="minisblack" if c <= 2 else "rgb",
                         extrasamples=("unassalpha",) if c in (2, 4) else None)
        return
    if depth == 16 and fmt == "PNG" and c != 1:
        import png
        png.from_array(arr.reshape(h, w * c), {2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[c]).save(str(path))
        return
    if depth == 16:                                      # 16-bit grayscale PNG
        im = Image.fromarray(arr[..., 0].astype(np.uint16))
    else:
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
        im = Image.fromarray(arr[..., 0] if c == 1 else arr, mode=None if c == 1 else mode)
        if fmt == "BMP" and c in (2, 4):
            im = im.convert("RGB" if c == 4 else "L")
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    im.save(path, format=fmt, **kwargs)
