"""The web UI: the built single-page app, served at ``/`` next to the API."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

import hodei

# Where `npm run build` in web/ puts the app; HODEI_WEB_DIR serves another build.
DEFAULT_WEB_DIR = Path(hodei.__file__).parent / "webui"

_NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Hodei Jobs</title></head><body style="font-family: sans-serif; margin: 2rem">
<h1>Hodei Jobs</h1><p role="alert">The web UI is not built on this server. Build it with
<code>make web</code> (it needs Node.js), then reload. The API is at
<a href="/api/docs">/api/docs</a>.</p></body></html>"""


def web_dir() -> Path:
    return Path(os.environ.get("HODEI_WEB_DIR") or DEFAULT_WEB_DIR)


def mount_web(app: FastAPI, root: Path | None = None) -> None:
    """Serve the app's files, and its index.html for every other page it routes itself
    (/jobs/…, /providers, …). Must come after the API routes."""
    root = root or web_dir()
    assets = root / "assets"
    if assets.is_dir():
        app.mount("/assets", StaticFiles(directory=assets), name="assets")

    @app.get("/{path:path}", include_in_schema=False, response_model=None)
    async def page(path: str) -> FileResponse | HTMLResponse:
        if path.startswith(("api/", "assets/")):
            raise HTTPException(status_code=404, detail=f"no such resource: /{path}")
        index = root / "index.html"
        if not index.is_file():
            return HTMLResponse(_NOT_BUILT, status_code=503)
        if path and (file := _inside(root, path)) is not None:
            return FileResponse(file)
        return FileResponse(index, headers={"Cache-Control": "no-cache"})


def _inside(root: Path, path: str) -> Path | None:
    """The file ``path`` names under ``root``, if there is one (never one outside it)."""
    try:
        file = (root / path).resolve()
        return file if file.is_file() and file.is_relative_to(root.resolve()) else None
    except (OSError, ValueError):  # a NUL byte, a name too long for the file system
        return None
