"""What a file is, from its first bytes: for error messages about a file given in the wrong place.

``describe_file_kind(path)`` → "a JPEG image", "a PNG image", "a zip archive (a PyTorch
checkpoint written by torch.save)", "a Python pickle", "a gzip archive", "empty", "text" or
"binary data". Reads at most 16 bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"PK\x03\x04", "a zip archive (a PyTorch checkpoint written by torch.save)"),
    (b"\x80", "a Python pickle"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"%PDF", "a PDF document"),
)


def describe_file_kind(path: str | os.PathLike[str]) -> str:
    """A short description of ``path``'s content type, from its first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        return "empty"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    return "text"


def is_torch_save_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` starts like a ``torch.save`` file (zip archive or legacy pickle)."""
    return describe_file_kind(path).startswith(("a zip archive", "a Python pickle"))


def binary_text_error(path: str | Path, what: str, expected: str) -> str:
    """``"annotation file x.jpg is a JPEG image, not a JSON text file"``."""
    return f"{what} {path} is {describe_file_kind(path)}, not {expected}"
