"""Image URLs for the shieldgemma2 check: fetched only when the policy says so, with the
proxy's own HTTP client, from a real HTTP server started here that counts every request, and
scored by a tiny real ShieldGemma 2. Internal addresses are refused unless allowed (the server
here is on 127.0.0.1, so most tests allow them)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.guard.checks import ShieldGemma2Check
from monitor.guard.images.check import ImageFetchError, check_images
from monitor.guard.images.fetch import fetch_image
from monitor.guard.images.parts import images_in_messages
from monitor.guard.verdict import Action
from tests.support.asgi import serve_lifespan
from tests.support.servers import ThreadedServer
from tests.support.tiny_shieldgemma2 import build_tiny_shieldgemma2

pytest.importorskip("torch")
pytest.importorskip("transformers")
Image = pytest.importorskip("PIL.Image")


async def fetch_local(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """`fetch_image` allowed to reach internal addresses: this test's server is on 127.0.0.1."""
    return await fetch_image(url, max_bytes, timeout_s, allow_internal=True)


def _png() -> bytes:
    image = Image.new("RGB", (32, 24), (200, 120, 40))
    for x in range(32):
        image.putpixel((x, x % 24), (x * 8, 0, 255 - x * 8))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


IMAGE = _png()


class ImageServer:
    """Serves IMAGE at /cat.png (Content-Length) and /chunked.png (no length), 404 elsewhere,
    a redirect at /moved.png, and never answers /slow.png. Records each path asked for."""

    def __init__(self) -> None:
        self.hits: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        path = scope["path"] + (
            f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
        )
        self.hits.append(path)
        headers = [(b"content-type", b"image/png")]
        if scope["path"] == "/cat.png":
            headers.append((b"content-length", str(len(IMAGE)).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": IMAGE})
        elif scope["path"] == "/chunked.png":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for start in range(0, len(IMAGE), 512):
                chunk = IMAGE[start : start + 512]
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif scope["path"] == "/moved.png":
            moved = [(b"location", b"/cat.png"), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 302, "headers": moved})
            await send({"type": "http.response.body", "body": b""})
        elif scope["path"] == "/slow.png":
            await asyncio.Event().wait()  # until the server shuts down
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no such image"})


@pytest.fixture(scope="module")
def image_server() -> Iterator[tuple[ImageServer, str]]:
    app = ImageServer()
    server = ThreadedServer(app, timeout_graceful_shutdown=1).start()
    yield app, server.url
    server.stop(timeout=5)


@pytest.fixture
def images(image_server: tuple[ImageServer, str]) -> tuple[ImageServer, str]:
    app, url = image_server
    app.hits.clear()
    return app, url


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_shieldgemma2(tmp_path_factory.mktemp("tiny-shieldgemma2"))


@pytest.fixture
async def classifier(model_folder: Path) -> AsyncIterator[Any]:
    from monitor.guard.images.shieldgemma2 import ShieldGemma2Classifier

    model = ShieldGemma2Classifier(str(model_folder))
    await model.ready()
    yield model
    await model.aclose()


def chat(url: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]


def make_check(**fields: Any) -> ShieldGemma2Check:
    return ShieldGemma2Check.model_validate({"type": "shieldgemma2", **fields})


async def test_fetch_off_by_default_contacts_nobody(
    images: tuple[ImageServer, str], classifier: Any
) -> None:
    app, url = images
    refs = images_in_messages(chat(f"{url}/cat.png"), 1 << 20)
    findings = await check_images(make_check(), refs, classifier, fetch_local)
    assert [(f.rule, f.action) for f in findings] == [("shieldgemma2.not_fetched", Action.FLAG)]
    assert app.hits == [] and classifier.forward_passes == 0


async def test_fetch_on_checks_the_fetched_bytes(
    images: tuple[ImageServer, str], classifier: Any
) -> None:
    app, url = images
    refs = images_in_messages(chat(f"{url}/cat.png?size=small"), 1 << 20)
    findings = await check_images(
        make_check(fetch_urls=True, threshold=0.0), refs, classifier, fetch_local
    )
    assert app.hits == ["/cat.png?size=small"]
    [direct] = await classifier.classify([IMAGE], ["dangerous", "sexual", "violence"], 60)
    assert classifier.forward_passes == 1  # the same bytes: the fetched image's scores, cached
    assert {f.category: f.score for f in findings} == direct.scores
    assert all(f.action is Action.BLOCK for f in findings)


@pytest.mark.parametrize("path", ["/cat.png", "/chunked.png"])
async def test_size_cap_with_and_without_content_length(
    images: tuple[ImageServer, str], classifier: Any, path: str
) -> None:
    _, url = images
    assert await fetch_local(f"{url}{path}", len(IMAGE), 5) == IMAGE  # exactly at the cap
    with pytest.raises(ImageFetchError, match=f"larger than {len(IMAGE) - 1} bytes"):
        await fetch_local(f"{url}{path}", len(IMAGE) - 1, 5)
    check = make_check(fetch_urls=True, max_image_bytes=len(IMAGE) - 1, on_error="allow")
    refs = images_in_messages(chat(f"{url}{path}"), 1 << 20)
    [finding] = await check_images(check, refs, classifier, fetch_local)
    assert (finding.rule, finding.action) == ("shieldgemma2.fetch_failed", Action.FLAG)
    assert f"larger than {len(IMAGE) - 1} bytes" in (finding.detail or "")
    assert classifier.forward_passes == 0


async def test_not_found_redirect_and_timeout_fail(images: tuple[ImageServer, str]) -> None:
    app, url = images
    host = "127.0.0.1"
    with pytest.raises(ImageFetchError, match=f"{host} answered 404"):
        await fetch_local(f"{url}/missing.png?token=secret", 1 << 20, 5)
    with pytest.raises(ImageFetchError, match="answered 302"):
        await fetch_local(f"{url}/moved.png", 1 << 20, 5)
    with pytest.raises(ImageFetchError, match="did not send the image within") as caught:
        await fetch_local(f"{url}/slow.png", 1 << 20, 0.3)
    assert "token" not in str(caught.value)
    assert app.hits == [
        "/missing.png?token=secret",
        "/moved.png",
        "/slow.png",
    ]  # no redirect followed


async def test_what_is_never_fetched(images: tuple[ImageServer, str]) -> None:
    app, url = images
    port = url.rsplit(":", 1)[1]
    for bad in (
        "ftp://127.0.0.1/cat.png",
        f"http://user:pass@127.0.0.1:{port}/cat.png",
        "http:///x",
    ):
        with pytest.raises(ImageFetchError):
            await fetch_local(bad, 1 << 20, 5)
    assert app.hits == []


async def test_a_refused_connection(images: tuple[ImageServer, str]) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ImageFetchError, match="cannot connect"):
        await fetch_local(f"http://127.0.0.1:{port}/cat.png", 1 << 20, 5)


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata services
        ("10.0.0.7", "private"),
        ("192.168.1.1", "private"),
        ("[fd00::1]", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
    ],
)
async def test_internal_addresses_are_refused_by_default(
    images: tuple[ImageServer, str], host: str, kind: str
) -> None:
    app, url = images
    port = url.rsplit(":", 1)[1]
    with pytest.raises(ImageFetchError, match=f"resolves to a {kind} address: not fetched"):
        await fetch_image(f"http://{host}:{port}/cat.png", 1 << 20, 5)
    assert app.hits == []


async def test_an_internal_image_is_a_failed_fetch_in_the_check(
    images: tuple[ImageServer, str], classifier: Any
) -> None:
    app, url = images
    refs = images_in_messages(chat(f"{url}/cat.png"), 1 << 20)
    [finding] = await check_images(make_check(fetch_urls=True), refs, classifier, fetch_image)
    assert (finding.rule, finding.action) == ("shieldgemma2.fetch_failed", Action.BLOCK)
    assert "loopback address" in (finding.detail or "")
    assert app.hits == [] and classifier.forward_passes == 0


async def test_a_non_ascii_path_is_percent_encoded(images: tuple[ImageServer, str]) -> None:
    app, url = images
    with pytest.raises(ImageFetchError, match="answered 404"):
        await fetch_local(f"{url}/chats/ünï côdé.png?name=chât noir&x=%41", 1 << 20, 5)
    assert app.hits == ["/chats/ünï côdé.png?name=ch%C3%A2t%20noir&x=%41"]
