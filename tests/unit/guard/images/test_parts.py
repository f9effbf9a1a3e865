"""The images of a request: OpenAI image_url parts, Ollama images, decoding errors."""

from __future__ import annotations

import base64

import pytest

from monitor.guard.images.parts import ImageRef, images_in_messages, images_in_prompt

BYTES = b"\x89PNG\r\n\x1a\n not checked here: only decoded"
B64 = base64.b64encode(BYTES).decode()
CAP = 1024


def openai_part(url: object) -> dict[str, object]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "auto"}}


def test_openai_data_urls_and_http_urls_with_their_paths() -> None:
    messages = [
        {"role": "system", "content": "be nice"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                openai_part(f"data:image/png;base64,{B64}"),
                openai_part("https://example.org/cat.jpg?sig=secret"),
            ],
        },
    ]
    assert images_in_messages(messages, CAP) == [
        ImageRef("messages[1].content[1].image_url", "user", data=BYTES),
        ImageRef(
            "messages[1].content[2].image_url", "user", url="https://example.org/cat.jpg?sig=secret"
        ),
    ]


def test_an_image_url_given_as_a_plain_string_and_wrapped_base64() -> None:
    wrapped = "\n".join(B64[i : i + 8] for i in range(0, len(B64), 8))
    messages = [
        {"role": "user", "content": [{"type": "image_url", "image_url": f"data:;base64,{wrapped}"}]}
    ]
    [image] = images_in_messages(messages, CAP)
    assert image.data == BYTES and image.error is None


def test_ollama_chat_images_and_generate_images() -> None:
    messages = [
        {"role": "user", "content": "look", "images": [B64, f"data:image/jpeg;base64,{B64}"]},
        {"role": "assistant", "content": "a cat"},
    ]
    assert images_in_messages(messages, CAP) == [
        ImageRef("messages[0].images[0]", "user", data=BYTES),
        ImageRef("messages[0].images[1]", "user", data=BYTES),
    ]
    payload = {"model": "m", "prompt": "describe", "images": [B64]}
    assert images_in_prompt(payload, CAP) == [ImageRef("images[0]", "user", data=BYTES)]
    assert images_in_prompt({"prompt": "no images"}, CAP) == []
    assert images_in_prompt({"prompt": "x", "images": None}, CAP) == []


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("data:image/png;base64,not base64!!", "not valid base64"),
        ("data:image/png;base64,", "empty"),
        ("data:text/html;base64," + B64, "of type 'text/html', not an image"),
        ("data:image/png," + B64, "not base64"),
        ("data:image/png;base64" + B64, "without a comma"),
        ("file:///etc/passwd", "unsupported image URL scheme 'file'"),
        ("ftp://example.org/x.png", "unsupported image URL scheme 'ftp'"),
        ("cat.png", "unsupported image URL scheme '(none)'"),
        ("", "without a URL"),
        (None, "without a URL"),
    ],
)
def test_openai_parts_that_cannot_be_read(url: object, error: str) -> None:
    messages = [{"role": "user", "content": [openai_part(url)]}]
    [image] = images_in_messages(messages, CAP)
    assert image.data is None and image.url is None
    assert image.error is not None and error in image.error
    assert image.path == "messages[0].content[0].image_url"


@pytest.mark.parametrize(
    ("images", "error"),
    [
        ("abc", "not a list"),
        ([42], "not a base64 string"),
        (["%%%"], "not valid base64"),
        (["QUJ"], "not valid base64"),  # a length that is not a multiple of 4
    ],
)
def test_ollama_images_that_cannot_be_read(images: object, error: str) -> None:
    [image] = images_in_messages([{"role": "user", "content": "x", "images": images}], CAP)
    assert image.error is not None and error in image.error


def test_too_large_is_refused_before_decoding() -> None:
    big = base64.b64encode(b"x" * 5000).decode()
    [image] = images_in_prompt({"images": [big]}, max_bytes=4096)
    assert image.error == "the image is larger than 4096 bytes"
    [exact] = images_in_prompt({"images": [base64.b64encode(b"x" * 4096).decode()]}, 4096)
    assert exact.data == b"x" * 4096


def test_odd_shapes_are_skipped_not_raised() -> None:
    assert images_in_messages("not a list", CAP) == []
    assert images_in_messages(
        [None, 3, {"role": 5, "content": [None, "text", {"type": "image_url"}]}], CAP
    ) == [ImageRef("messages[2].content[2].image_url", "", error="an image_url part without a URL")]
