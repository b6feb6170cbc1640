"""The live status page: one static file, no build step, polling ``/status`` once a second."""

from __future__ import annotations

from importlib.resources import files

from aiohttp import web


def page() -> bytes:
    return files(__package__).joinpath("status.html").read_bytes()


def routes() -> list[web.RouteDef]:
    """``GET /``: the page (it reads ``status`` relative to itself, so it works behind a
    prefix too)."""
    body = page()

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html", charset="utf-8")

    return [web.get("/", index)]
