"""The images of a request: where each one is (`ImageRef.path`) and what it holds.

OpenAI chat requests carry images as content parts, `{"type": "image_url", "image_url":
{"url": ...}}`, whose URL is a `data:` URL (base64) or an http(s) address. Ollama requests
carry base64 strings in `images`, on each /api/chat message and on the /api/generate payload.

Nothing here raises on odd input: an image that cannot be read (bad base64, a data URL that
declares something other than an image, a part without a URL, too many bytes) is returned
with its `error`, so that the check decides what it does (`on_error`). URLs are returned as
they are; fetching them is the proxy's business, and only when a policy asks for it. The
walk that finds them in chat messages is `monitor.guard.messages.parts`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from monitor.guard.messages import ImagePart, OllamaImages, parts

_FETCHABLE = ("http://", "https://")


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One image of a request: its bytes, or a URL to fetch, or why it cannot be read."""

    path: str  # messages[0].content[1].image_url, messages[0].images[0], images[0]
    role: str
    data: bytes | None = None
    url: str | None = None
    error: str | None = None


def images_in_messages(messages: Any, max_bytes: int) -> list[ImageRef]:
    """Every image of chat `messages` (OpenAI `image_url` parts, Ollama `images`), in order."""
    found: list[ImageRef] = []
    for part in parts(messages, texts=False):
        if isinstance(part, ImagePart):
            found.append(_from_url(part.path, part.role, part.image_url, max_bytes))
        elif isinstance(part, OllamaImages):
            found += _ollama_images(part.path, part.role, part.images, max_bytes)
    return found


def images_in_prompt(payload: dict[str, Any], max_bytes: int) -> list[ImageRef]:
    """The images of an Ollama /api/generate request (its top-level `images`)."""
    if "images" not in payload:
        return []
    return _ollama_images("images", "user", payload["images"], max_bytes)


def _ollama_images(path: str, role: str, images: Any, max_bytes: int) -> list[ImageRef]:
    if images is None:
        return []
    if not isinstance(images, list):
        return [ImageRef(path, role, error="`images` is not a list of base64 strings")]
    found = []
    for index, item in enumerate(images):
        where = f"{path}[{index}]"
        if not isinstance(item, str):
            found.append(ImageRef(where, role, error="an image is not a base64 string"))
        elif item.startswith("data:"):  # not Ollama's form, but unambiguous
            found.append(_from_data_url(where, role, item, max_bytes))
        else:
            found.append(_from_base64(where, role, item, max_bytes))
    return found


def _from_url(path: str, role: str, image_url: Any, max_bytes: int) -> ImageRef:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url.strip():
        return ImageRef(path, role, error="an image_url part without a URL")
    url = url.strip()
    if url[:5].lower() == "data:":
        return _from_data_url(path, role, url, max_bytes)
    if url[:8].lower().startswith(_FETCHABLE):
        return ImageRef(path, role, url=url)
    scheme = url.split(":", 1)[0][:16] if ":" in url else "(none)"
    return ImageRef(path, role, error=f"unsupported image URL scheme {scheme!r}")


def _from_data_url(path: str, role: str, url: str, max_bytes: int) -> ImageRef:
    header, comma, payload = url[5:].partition(",")
    if not comma:
        return ImageRef(path, role, error="a data URL without a comma")
    params = [p.strip().lower() for p in header.split(";")]
    media_type = params[0]
    if media_type and not media_type.startswith("image/"):
        return ImageRef(path, role, error=f"a data URL of type {media_type[:64]!r}, not an image")
    if "base64" not in params[1:]:
        return ImageRef(path, role, error="a data URL that is not base64")
    return _from_base64(path, role, payload, max_bytes)


def _from_base64(path: str, role: str, text: str, max_bytes: int) -> ImageRef:
    compact = "".join(text.split())  # base64 wrapped in lines (MIME style) is still base64
    if len(compact) > (max_bytes + 2) // 3 * 4:  # 4 characters per 3 bytes: too large undecoded
        return ImageRef(path, role, error=f"the image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return ImageRef(path, role, error="the image is not valid base64")
    if not data:
        return ImageRef(path, role, error="the image is empty")
    if len(data) > max_bytes:
        return ImageRef(path, role, error=f"the image is larger than {max_bytes} bytes")
    return ImageRef(path, role, data=data)
