"""Just enough PNG reading to check the Teams app icons: size, and what the outline icon's pixels are.

Teams refuses a package whose colour icon is not 192x192 or whose outline icon is not a 32x32 white shape on a
transparent background, and its JSON schema cannot see inside the files. No imaging library is a dependency
of the product, so this reads the PNG chunks with `zlib` alone, bounded: icons are tiny, and anything large
or odd is refused rather than decoded.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_FILE_BYTES = 1_048_576  # a 192x192 icon is a few KiB; a bigger file is not an icon
MAX_SIDE = 1024
COLOR_TYPE_RGBA = 6


class PngError(ValueError):
    """The file is not a PNG this check can read; the message says why."""


@dataclass(frozen=True)
class Png:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlaced: bool
    has_transparency_chunk: bool
    data: bytes  # the concatenated, still compressed IDAT chunks

    @property
    def has_alpha(self) -> bool:
        return self.color_type in (4, 6) or self.has_transparency_chunk


def read_png(content: bytes) -> Png:
    """The header of a PNG, with its compressed image data; PngError for anything else."""
    if len(content) > MAX_FILE_BYTES:
        raise PngError(f"is {len(content)} bytes; an icon is at most {MAX_FILE_BYTES}")
    if not content.startswith(SIGNATURE):
        raise PngError("is not a PNG file (no PNG signature)")
    position, chunks = len(SIGNATURE), []
    while position < len(content):
        if position + 12 > len(content):
            raise PngError("is truncated")
        (length,) = struct.unpack(">I", content[position : position + 4])
        kind = content[position + 4 : position + 8]
        body = content[position + 8 : position + 8 + length]
        (crc,) = struct.unpack(">I", content[position + 8 + length : position + 12 + length] or b"\0\0\0\0")
        if len(body) != length or zlib.crc32(kind + body) != crc:
            raise PngError(f"has a damaged {kind.decode('latin-1')!r} chunk")
        chunks.append((kind, body))
        position += 12 + length
        if kind == b"IEND":
            break
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        raise PngError("does not start with an IHDR chunk")
    width, height, depth, color, _compression, _filter, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise PngError(f"is {width}x{height}; icons are at most {MAX_SIDE}x{MAX_SIDE}")
    return Png(
        width=width,
        height=height,
        bit_depth=depth,
        color_type=color,
        interlaced=interlace != 0,
        has_transparency_chunk=any(kind == b"tRNS" for kind, _ in chunks),
        data=b"".join(body for kind, body in chunks if kind == b"IDAT"),
    )


def _paeth(left: int, up: int, corner: int) -> int:
    estimate = left + up - corner
    a, b, c = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
    return left if a <= b and a <= c else up if b <= c else corner


def rgba_pixels(png: Png) -> list[tuple[int, int, int, int]]:
    """Every pixel of an 8-bit, non-interlaced RGBA PNG, row by row (the five PNG filters undone)."""
    if png.bit_depth != 8 or png.color_type != COLOR_TYPE_RGBA or png.interlaced:
        raise PngError("must be an 8-bit RGBA PNG without interlacing (white shape on a transparent background)")
    stride = png.width * 4
    expected = png.height * (stride + 1)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(png.data, expected + 1)
    except zlib.error as exc:
        raise PngError(f"has image data that does not decompress ({exc})") from None
    if len(raw) != expected:
        raise PngError("has image data of the wrong length for its size")
    pixels: list[tuple[int, int, int, int]] = []
    previous = bytearray(stride)
    for row in range(png.height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind > 4:
            raise PngError(f"uses an unknown row filter {kind}")
        for i in range(stride):
            left = line[i - 4] if i >= 4 else 0
            up = previous[i]
            corner = previous[i - 4] if i >= 4 else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        pixels.extend((line[i], line[i + 1], line[i + 2], line[i + 3]) for i in range(0, stride, 4))
        previous = line
    return pixels
