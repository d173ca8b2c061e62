"""What every PUT that replaces a clinic-wide object under If-Match must do through the app
(backend/lib/preconditions.py): the ETag a GET serves, 412 for a stale copy with nothing written,
422 for a malformed header, unconditional writes without one; and the PUT's tag is the GET's."""

import re
from dataclasses import dataclass
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.identity.conftest import MovableClock

_STRONG_TAG = re.compile(r'"[0-9a-f]{32}"')


@dataclass(frozen=True, kw_only=True)
class ConditionalPut:
    get_url: str
    """The GET of the object (its representation is what the tag hashes)."""
    put_url: str
    reader: dict[str, str]
    """Headers of someone who may only read it."""
    admin: dict[str, str]
    bodies: tuple[Any, Any, Any, Any]
    """Four valid bodies, each changing what the GET shows from the one before: saved with the
    current tag; with a list holding it (and refused first with stale ones); with ``*``;
    without If-Match."""


async def _tag_of_get(api: AsyncTestClient[Litestar], route: ConditionalPut) -> httpx.Response:
    read = await api.get(route.get_url, headers=route.reader)
    assert read.status_code == 200, read.text
    assert _STRONG_TAG.fullmatch(read.headers["etag"]), read.headers["etag"]
    return read


async def _saved(
    api: AsyncTestClient[Litestar], route: ConditionalPut, body: Any, if_match: str | None
) -> str:
    """PUT ``body``; its answer and tag are exactly what a GET shows next."""
    headers = route.admin if if_match is None else {**route.admin, "If-Match": if_match}
    saved = await api.put(route.put_url, headers=headers, json=body)
    assert saved.status_code == 200, saved.text
    tag = saved.headers["etag"]
    assert _STRONG_TAG.fullmatch(tag), tag
    shown = await _tag_of_get(api, route)
    assert shown.headers["etag"] == tag
    assert shown.json() == saved.json()
    return tag


async def check_conditional_put(
    api: AsyncTestClient[Litestar], clock: MovableClock, route: ConditionalPut
) -> None:
    first, second, third, fourth = route.bodies
    read = await _tag_of_get(api, route)
    tag = read.headers["etag"]
    # The same state gives the same tag, to every reader.
    assert (await api.get(route.get_url, headers=route.admin)).headers["etag"] == tag

    new_tag = await _saved(api, route, first, tag)
    assert new_tag != tag
    after = await _tag_of_get(api, route)
    clock.advance(seconds=1)

    for stale in (tag, f"W/{new_tag}", f'{tag}, "other"'):
        refused = await api.put(
            route.put_url, headers={**route.admin, "If-Match": stale}, json=second
        )
        assert refused.status_code == 412, (stale, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("precondition-failed")
    malformed = await api.put(
        route.put_url, headers={**route.admin, "If-Match": "abc"}, json=second
    )
    assert malformed.status_code == 422, malformed.text
    unchanged = await _tag_of_get(api, route)
    assert unchanged.json() == after.json()
    assert unchanged.headers["etag"] == new_tag

    # The current tag among others is accepted; "*" and no If-Match write unconditionally.
    assert await _saved(api, route, second, f'"other", {new_tag}') != new_tag
    clock.advance(seconds=1)
    await _saved(api, route, third, "*")
    clock.advance(seconds=1)
    await _saved(api, route, fourth, None)
