"""A synchronous httpx client for the ASGI app: requests go through httpx.ASGITransport on an
event loop in a background thread, with the app's lifespan run around the client's life."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio.from_thread
import httpx


class _AsyncChunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for chunk in self._chunks:
            yield chunk


class _PortalTransport(httpx.BaseTransport):
    def __init__(self, portal: Any, app: Any, raise_app_exceptions: bool = True) -> None:
        self._portal = portal
        self._inner = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            request.stream = _AsyncChunks(list(request.stream))  # type: ignore[arg-type]

        async def send() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(
                response.status_code, headers=response.headers, content=body, request=request
            )

        result: httpx.Response = self._portal.call(send)
        return result


@contextmanager
def asgi_client(
    app: Any, base_url: str = "http://testserver", *, raise_app_exceptions: bool = True
) -> Iterator[httpx.Client]:
    """`raise_app_exceptions=False`: an exception the app lets out (after Starlette has sent
    the 500) is not raised in the test, which gets the 500 response instead."""
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
        httpx.Client(
            transport=_PortalTransport(portal, app, raise_app_exceptions), base_url=base_url
        ) as client,
    ):
        yield client
