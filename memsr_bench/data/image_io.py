"""Reading and writing test images as uint8 RGB arrays (H x W x 3).

Only PNG and BMP files are test images (lossless, 8 bits per channel). A file is checked before it
is decoded, so that a damaged or unusual file is an error naming it instead of a wrong PSNR:

- PNG: the chunk structure and every chunk's CRC, the IHDR (bit depth, colour type), and that the
  IDAT stream holds all the pixel bytes its header implies. PIL itself decodes a PNG whose pixel
  data stops early but still ends with IEND as black rows, without an error.
- BMP: that the file holds the pixel bytes its header implies (uncompressed BMPs).
- Both: the size against PIL's decompression-bomb limit, the mode (no alpha, no 16-bit data).

:func:`inspect_image` runs these checks and returns the size, for test-set discovery (before any
model runs); :func:`read_image_rgb` runs them and decodes. Bytes that passed are remembered by
their digest, so that discovery and loading decompress a file once.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from memsr_bench.errors import MemsrInputError

IMAGE_SUFFIXES = (".png", ".bmp")
IMAGE_FORMATS = ("PNG", "BMP")  # PIL format names of the files read

# Suffixes of other image formats: such a file in a test-set folder is an error, not skipped.
_OTHER_IMAGE_SUFFIXES: dict[str, str] = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".jp2": "JPEG 2000",
    ".j2k": "JPEG 2000", ".jpx": "JPEG 2000", ".jxl": "JPEG XL", ".tif": "TIFF", ".tiff": "TIFF",
    ".webp": "WebP", ".gif": "GIF", ".ppm": "PPM", ".pgm": "PGM", ".pbm": "PBM", ".pnm": "PNM",
    ".pam": "PAM", ".pfm": "PFM", ".tga": "TGA", ".exr": "OpenEXR", ".hdr": "Radiance HDR",
    ".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".ico": "ICO", ".icns": "ICNS", ".dds": "DDS",
    ".psd": "PSD", ".pcx": "PCX", ".sgi": "SGI", ".qoi": "QOI", ".dng": "DNG raw", ".cr2": "CR2 raw",
    ".nef": "NEF raw", ".arw": "ARW raw", ".raw": "raw", ".svg": "SVG", ".apng": "APNG",
}  # fmt: skip


def other_image_kind(path: str | Path) -> str | None:
    """The format name when ``path``'s suffix says it is an image that is not read (JPEG, TIFF...)."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES or not suffix:
        return None
    if suffix in _OTHER_IMAGE_SUFFIXES:
        return _OTHER_IMAGE_SUFFIXES[suffix]
    kind, _ = mimetypes.guess_type(f"x{suffix}", strict=False)
    return suffix[1:].upper() if kind and kind.startswith("image/") else None


def looks_like_image(path: str | Path) -> bool:
    """Whether ``path``'s suffix is an image's: a test image (PNG, BMP) or another format."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES or other_image_kind(path) is not None


@dataclass(frozen=True)
class ImageHeader:
    """What :func:`inspect_image` found in a test image that passed every check."""

    format: str  # "PNG" or "BMP"
    height: int
    width: int
    mode: str  # PIL mode before conversion to RGB: "RGB", "L" or "P"


# ---------------------------------------------------------------------------------------------
# Checks on the bytes of a file (no decoding)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOURS = {0: ("greyscale", 1), 2: ("RGB", 3), 3: ("palette", 1), 4: ("greyscale+alpha", 2), 6: ("RGBA", 4)}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_MAGIC = (  # other formats, to say what a misnamed or foreign file is
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"qoif", "QOI"),
    (b"8BPS", "PSD"),
    (b"v/1\x01", "OpenEXR"),
)


def _sniff(data: bytes) -> str | None:
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"BM"):
        return "BMP"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypheix", b"ftypmif1"):
        return "AVIF/HEIF"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def _pil_pixel_limit() -> int | None:
    """Pixels above which PIL refuses to open an image (``DecompressionBombError``)."""
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def _check_pixel_limit(path: Path, width: int, height: int) -> None:
    limit = _pil_pixel_limit()
    if limit is not None and width * height > limit:
        raise MemsrInputError(
            path,
            f"image header says {height}x{width} px (height x width) = {width * height} pixels, which exceeds "
            f"PIL's limit of {limit} pixels (decompression-bomb guard; raise PIL.Image.MAX_IMAGE_PIXELS "
            "if the image is genuine)",
        )


def _chunk_name(ctype: bytes) -> str:
    return ctype.decode("ascii", "backslashreplace")


def _png_raw_size(width: int, height: int, depth: int, channels: int, interlace: int) -> tuple[int, int]:
    """(bytes of the decompressed IDAT stream, bytes per row of the full image) that IHDR implies."""

    def rows(w: int, h: int) -> int:
        return 0 if w <= 0 or h <= 0 else h * (1 + (w * channels * depth + 7) // 8)

    stride = 1 + (width * channels * depth + 7) // 8
    if not interlace:
        return rows(width, height), stride
    total = sum(rows((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy) for x0, y0, dx, dy in _ADAM7)
    return total, stride


def _check_png(path: Path, data: bytes) -> tuple[int, int]:
    """Structure, CRCs, IHDR and complete pixel data of a PNG; returns (height, width)."""
    view = memoryview(data)
    if len(data) < 33:
        raise MemsrInputError(path, f"cannot read image: file is truncated ({len(data)} bytes, no complete PNG header)")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise MemsrInputError(path, "cannot read image: corrupt PNG (the first chunk is not a 13-byte IHDR)")
    if zlib.crc32(view[12:29]) != struct.unpack(">I", data[29:33])[0]:
        raise MemsrInputError(path, "cannot read image: corrupt PNG (bad CRC in chunk IHDR)")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if not (0 < width < 2**31 and 0 < height < 2**31):
        raise MemsrInputError(path, f"cannot read image: corrupt PNG (IHDR size {height}x{width}, height x width)")
    if colour not in _PNG_COLOURS or depth not in _PNG_DEPTHS[colour]:
        raise MemsrInputError(path, f"cannot read image: corrupt PNG (IHDR colour type {colour}, bit depth {depth})")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise MemsrInputError(path, "cannot read image: corrupt PNG (IHDR compression, filter or interlace method)")
    colour_name, channels = _PNG_COLOURS[colour]
    if depth > 8:
        raise MemsrInputError(
            path,
            f"image is not 8-bit: {depth}-bit {colour_name} PNG ({depth} bits per channel, "
            f"{depth * channels} bits per pixel); convert it to 8-bit RGB first",
        )
    _check_pixel_limit(path, width, height)

    # Walk the chunks: every CRC, consecutive IDATs, up to IEND.
    idat: list[memoryview] = []
    idat_closed = False
    pos = 8
    while True:
        if pos + 12 > len(data):
            raise MemsrInputError(path, f"cannot read image: PNG file is truncated at byte {len(data)} (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if length >= 2**31 or end > len(data):
            raise MemsrInputError(
                path,
                f"cannot read image: PNG file is truncated (chunk {_chunk_name(ctype)!r} at byte {pos} "
                f"needs {length} bytes, {max(len(data) - pos - 12, 0)} are left)",
            )
        if zlib.crc32(view[pos + 4 : end - 4]) != struct.unpack(">I", data[end - 4 : end])[0]:
            raise MemsrInputError(
                path, f"cannot read image: corrupt PNG (bad CRC in chunk {_chunk_name(ctype)!r} at byte {pos})"
            )
        if ctype == b"IDAT":
            if idat_closed:
                raise MemsrInputError(path, "cannot read image: corrupt PNG (IDAT chunks are not consecutive)")
            idat.append(view[pos + 8 : end - 4])
        elif idat:
            idat_closed = True
        if ctype == b"IEND":
            break
        pos = end
    if not idat:
        raise MemsrInputError(path, "cannot read image: corrupt PNG (no IDAT chunk: no pixel data)")

    # The IDAT stream must inflate to the bytes IHDR implies (PIL reads a short one as black rows).
    expected, stride = _png_raw_size(width, height, depth, channels, interlace)
    inflater = zlib.decompressobj()
    total = 0
    try:
        for piece in idat:
            for start in range(0, len(piece), 1 << 16):
                buf: bytes | memoryview = piece[start : start + (1 << 16)]
                while buf and total <= expected and not inflater.eof:
                    total += len(inflater.decompress(buf, 1 << 20))
                    buf = inflater.unconsumed_tail
            if total > expected or inflater.eof:
                break
        if total < expected and not inflater.eof:
            total += len(inflater.flush())
    except zlib.error as err:
        raise MemsrInputError(path, f"cannot read image: corrupt PNG pixel data (zlib: {err})") from None
    if total < expected:
        rows = f"about {total // stride} of {height} rows" if not interlace else "interlaced"
        raise MemsrInputError(
            path,
            f"truncated pixel data: the IDAT stream holds {total} of the {expected} bytes that its header "
            f"implies ({height}x{width} px, height x width, {depth}-bit {colour_name}; {rows}); the file was "
            "cut off or written incompletely",
        )
    return height, width


def _check_bmp(path: Path, data: bytes) -> None:
    """Header and pixel-data length of an uncompressed BMP (PIL decodes what it gets otherwise)."""
    if len(data) < 26:
        raise MemsrInputError(path, f"cannot read image: BMP file is truncated ({len(data)} bytes)")
    offset, header_size = struct.unpack("<II", data[10:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER
        width, height, _, bits = struct.unpack("<HHHH", data[18:26])
        compression = 0
    elif header_size >= 40 and len(data) >= 34:
        width, height, _, bits, compression = struct.unpack("<iiHHI", data[18:34])
    else:
        return  # PIL decides (and raises for what it cannot read)
    height = abs(height)
    if width <= 0 or height <= 0:
        return
    _check_pixel_limit(path, width, height)
    if compression in (0, 3, 6) and bits in (1, 4, 8, 16, 24, 32):  # uncompressed rows, 4-byte aligned
        needed = offset + ((width * bits + 31) // 32) * 4 * height
        if len(data) < needed:
            raise MemsrInputError(
                path,
                f"truncated pixel data: the file has {len(data)} of the {needed} bytes that its header "
                f"implies ({height}x{width} px, height x width, {bits}-bit BMP); the file was cut off",
            )


def _check_bytes(path: Path, data: bytes) -> None:
    kind = _sniff(data)
    if kind == "PNG":
        _check_png(path, data)
    elif kind == "BMP":
        _check_bmp(path, data)
    elif kind is not None:
        raise MemsrInputError(
            path, f"file is a {kind} image, not PNG or BMP; only lossless PNG and BMP test images are read"
        )
    else:
        raise MemsrInputError(path, "cannot read image (not a PNG or BMP file)")


def _check_mode(path: Path, image: Image.Image) -> None:
    mode = image.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        raise MemsrInputError(path, f"image has an alpha channel (mode {mode}); SR test images are RGB")
    if mode in ("I", "F") or mode.startswith("I;"):
        raise MemsrInputError(path, f"image is not 8-bit (mode {mode}); convert it to 8-bit RGB first")
    if mode == "1":
        raise MemsrInputError(path, "image is 1-bit black and white; SR test images are 8-bit")
    if mode not in ("RGB", "P", "L"):
        raise MemsrInputError(path, f"unsupported image mode {mode}; expected 8-bit RGB or greyscale")


def _open(path: Path, data: bytes) -> Image.Image:
    """PIL image of checked bytes, header parsed, pixels not decoded; errors name the file."""
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError:
        limit = _pil_pixel_limit()
        raise MemsrInputError(
            path,
            f"image exceeds PIL's limit of {limit} pixels (decompression-bomb guard; raise "
            "PIL.Image.MAX_IMAGE_PIXELS if the image is genuine)",
        ) from None
    except Exception as err:  # any failure of PIL's parser on a damaged file
        raise MemsrInputError(path, f"cannot read image ({type(err).__name__}: {err})".replace("\n", " ")) from None
    try:
        _check_mode(path, image)
    except MemsrInputError:
        image.close()
        raise
    return image


def _stat(path: Path) -> os.stat_result:
    if path.is_symlink() and not path.exists():
        raise MemsrInputError(path, f"broken symbolic link (its target {os.readlink(path)} does not exist)")
    if not path.is_file():
        raise MemsrInputError(path, "image file not found")
    try:
        return path.stat()
    except OSError as err:
        raise MemsrInputError(path, f"cannot read image ({type(err).__name__}: {err.strerror or err})") from None


def _read(path: Path) -> bytes:
    _stat(path)
    try:
        return path.read_bytes()
    except OSError as err:
        raise MemsrInputError(path, f"cannot read image ({type(err).__name__}: {err.strerror or err})") from None


# Files that passed every check: by content (the bytes decoded are the bytes checked), and by path,
# inode, size and modification time (discovery of the same set at several scales reads them once).
_CHECKED_CONTENT: dict[bytes, ImageHeader] = {}
_CHECKED_FILES: dict[tuple, ImageHeader] = {}


def _checked(path: Path, data: bytes) -> ImageHeader:
    digest = hashlib.blake2b(data, digest_size=20).digest()
    header = _CHECKED_CONTENT.get(digest)
    if header is not None:
        return header
    _check_bytes(path, data)
    with _open(path, data) as image:
        width, height = image.size
        header = ImageHeader(format=str(image.format), height=height, width=width, mode=image.mode)
    if len(_CHECKED_CONTENT) > 100_000:
        _CHECKED_CONTENT.clear()
    _CHECKED_CONTENT[digest] = header
    return header


def inspect_image(path: str | Path) -> ImageHeader:
    """Check a test image without decoding it and return its format and size.

    Raises :class:`MemsrInputError` naming the file for what :func:`read_image_rgb` would refuse
    from the file's bytes: another format, a damaged or truncated file (PNG CRCs and the length of
    the pixel data), 16-bit data, alpha, or a size over PIL's decompression-bomb limit. A file
    that passed is remembered (by path, inode, size and modification time) and not read again;
    :func:`read_image_rgb` checks the bytes it decodes in any case.
    """
    path = Path(path)
    stat = _stat(path)
    identity = (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    header = _CHECKED_FILES.get(identity)
    if header is None:
        header = _checked(path, _read(path))
        if len(_CHECKED_FILES) > 100_000:
            _CHECKED_FILES.clear()
        _CHECKED_FILES[identity] = header
    return header


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read a PNG/BMP file as uint8 RGB, H x W x 3.

    Greyscale files (8-bit, or palette/RGB with R=G=B stored as such) become three equal channels,
    which is how the SR papers evaluate them. RGBA, 16-bit, truncated and unreadable files (and
    files of other formats) are rejected with an error naming the file: silently dropping alpha,
    rescaling 16-bit data or reading missing rows as black would change PSNR.
    """
    path = Path(path)
    data = _read(path)
    _checked(path, data)  # the checks of inspect_image, on these very bytes (remembered by content)
    with _open(path, data) as image:
        try:
            image.load()
            if image.mode == "L":
                grey = np.asarray(image, dtype=np.uint8)
                return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
            # an RGB file is read as is: convert() would copy it (4 bytes a pixel in PIL) for nothing
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
        except Exception as err:  # any failure of PIL's decoder on a damaged file
            message = f"cannot read image ({type(err).__name__}: {err})".replace("\n", " ")
            raise MemsrInputError(path, message) from None
    return np.ascontiguousarray(rgb)


def write_image_rgb(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 RGB (or greyscale H x W) array as PNG/BMP, creating parent folders."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right so that height and width are multiples of ``scale`` (MATLAB modcrop)."""
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]


PNG_LEVEL = 2  # the default of png_compressor: ISA-L level 2


def png_compressor(level: int = PNG_LEVEL):
    """A zlib-format compressor (``compress``/``flush``) for PNG image data at ``level`` 0-9.

    0: stored, no compression. 1-3: ISA-L's igzip (``isal``) at its levels 1-3. 4-9: zlib at that level.
    Measured on 37 MB of a CARN-M SR photo filtered as :class:`PngStreamWriter` does (2 cores): ISA-L level 2
    compressed at 191 MB/s to 0.557 of the size, zlib level 6 at 13 MB/s to 0.525 (zlib level 1: 49 MB/s,
    0.551), so the 192-megapixel PNG of reports/tiling/large_photos.md takes about 3 s instead of 46 s."""
    if not 0 <= int(level) <= 9:
        raise ValueError(f"PNG compression level must be 0-9, not {level}")
    if 1 <= level <= 3:
        from isal import isal_zlib

        return isal_zlib.compressobj(int(level))
    return zlib.compressobj(int(level))


class PngStreamWriter:
    """Write an 8-bit RGB PNG band of rows by band of rows, never holding the whole image.

    For outputs too large to keep in memory (a 16000x12000 SR photo is 576 MB of uint8): the rows go
    through one deflate stream (:func:`png_compressor`) into IDAT chunks of at most ``chunk_bytes`` as they
    arrive. Each row is filtered with PNG filter 2 ("Up", the difference to the row above, mod 256), which
    compresses smooth photographs about as well as adaptive filtering and is one vectorised subtraction.
    Rows are filtered ``_ROWS_PER_PASS`` at a time, so the writer's own temporaries stay at a few MB whatever
    the band height.

    Use as a context manager: leaving it normally checks that exactly ``height`` rows were written
    and finishes the file; leaving it with an exception (or too few rows) removes the partial file,
    so that no truncated PNG is left behind.
    """

    _ROWS_PER_PASS = 64

    def __init__(
        self, path: str | Path, height: int, width: int, compress_level: int = PNG_LEVEL, chunk_bytes: int = 1 << 20
    ):
        if not (0 < int(height) < 2**31 and 0 < int(width) < 2**31):
            raise ValueError(f"PNG size must be positive and below 2**31, not {height}x{width}")
        self.path = Path(path)
        self.height, self.width = int(height), int(width)
        self.rows_written = 0
        self._compressor = png_compressor(compress_level)
        self._chunk_bytes = int(chunk_bytes)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._previous = np.zeros((self.width * 3,), dtype=np.uint8)  # the row above the first is zeros
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 -- closed in close()/abort()
        self._file.write(_PNG_SIGNATURE)
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0))

    def __enter__(self) -> PngStreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self._file.write(struct.pack(">I", len(data)) + kind)
        self._file.write(data)
        self._file.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))

    def _emit(self, data: bytes, force: bool = False) -> None:
        if data:
            self._pending.append(data)
            self._pending_bytes += len(data)
        if self._pending_bytes >= self._chunk_bytes or (force and self._pending_bytes):
            self._chunk(b"IDAT", b"".join(self._pending))
            self._pending, self._pending_bytes = [], 0

    def write_rows(self, rows: np.ndarray) -> None:
        """Append ``rows`` (n x width x 3 uint8 RGB) below the rows written so far."""
        expected = (self.width, 3)
        if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 3 or rows.shape[1:] != expected:
            shape = getattr(rows, "shape", None)
            raise ValueError(f"expected uint8 rows n x {self.width} x 3, not {getattr(rows, 'dtype', None)} {shape}")
        if self.rows_written + rows.shape[0] > self.height:
            raise ValueError(f"{self.rows_written + rows.shape[0]} rows written to a PNG of height {self.height}")
        flat = rows.reshape(rows.shape[0], self.width * 3)
        for start in range(0, flat.shape[0], self._ROWS_PER_PASS):
            part = flat[start : start + self._ROWS_PER_PASS]
            filtered = np.empty((part.shape[0], 1 + part.shape[1]), dtype=np.uint8)
            filtered[:, 0] = 2  # filter type "Up"
            np.subtract(part[:1], self._previous, out=filtered[:1, 1:])  # uint8 arithmetic wraps mod 256
            np.subtract(part[1:], part[:-1], out=filtered[1:, 1:])
            self._previous = part[-1].copy()
            self._emit(self._compressor.compress(filtered.data))
        self.rows_written += rows.shape[0]

    def close(self) -> None:
        """Finish the file (IDAT, IEND); a PNG with rows missing is removed and raises ``ValueError``."""
        if self._file.closed:
            return
        if self.rows_written != self.height:
            self.abort()
            raise ValueError(f"{self.path}: {self.rows_written} of {self.height} rows written; partial file removed")
        self._emit(self._compressor.flush(), force=True)
        self._chunk(b"IEND", b"")
        self._file.close()

    def abort(self) -> None:
        """Close and remove the partial file."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)
