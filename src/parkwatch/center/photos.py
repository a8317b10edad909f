"""Photos of a hazard ticket (the evidence of a finding, of a rectification): what is taken.

A phone sends JPEG, PNG, WebP or HEIC.  The type is judged by the file's own first bytes, not
by its name or the browser's Content-Type, which anyone can set; the console serves a photo
back with the type found here and ``X-Content-Type-Options: nosniff``, so an upload cannot
become a page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: the largest photo taken, in bytes (a phone's photo is 2–5 MB; reduce it on the phone)
MAX_BYTES = 8 * 1024 * 1024
#: the most photos one step carries
MAX_PER_STEP = 6


class PhotoError(ValueError):
    """A photo refused; ``key`` names the message, ``name`` is the file's name."""

    def __init__(self, key: str, name: str) -> None:
        super().__init__(f"{key}: {name}")
        self.key = key
        self.name = name


@dataclass(frozen=True)
class Photo:
    name: str  # the file's name as sent (shown, never used as a path)
    content_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sniff(data: bytes) -> str | None:
    """The image type of ``data`` from its signature, None for anything else.  Signatures:
    JPEG SOI FF D8 FF (ISO/IEC 10918-1 B.1.1.2), PNG's 8-byte signature (RFC 2083 §3.1), WebP
    "RIFF" <size> "WEBP" (RFC 9649 §2.5), HEIC an ISO BMFF ``ftyp`` box whose major brand is
    heic/heix/mif1 (ISO/IEC 23008-12)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1"):
        return "image/heic"
    return None


def photo(name: str, data: bytes) -> Photo:
    """``data`` as a photo; PhotoError when it is empty, too large or not an image."""
    clean = (name or "photo").replace("\\", "/").rsplit("/", 1)[-1][:120] or "photo"
    if not data:
        raise PhotoError("photo_empty", clean)
    if len(data) > MAX_BYTES:
        raise PhotoError("photo_too_large", clean)
    kind = sniff(data)
    if kind is None:
        raise PhotoError("photo_not_image", clean)
    return Photo(clean, kind, data)


def check_count(photos: list[Photo]) -> None:
    if len(photos) > MAX_PER_STEP:
        raise PhotoError("photo_too_many", str(MAX_PER_STEP))
