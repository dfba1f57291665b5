"""A small HTTP(S) server on loopback for the image-URL tests: it serves images, redirects, slow and endless
bodies and lies, and records every connection it accepts (so a test can assert that a refused URL never
reached it), every request's path and Host header, and the TLS server name each client asked for.

Plain asyncio streams rather than a framework: the hostile routes need control of every byte and of when
(or whether) the answer comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support import images

HOST = "127.0.0.1"
Route = Callable[[asyncio.StreamWriter, dict[str, str]], Awaitable[None]]


@dataclass
class Seen:
    path: str
    host: str


@dataclass
class WebServer:
    host: str = HOST
    ssl_context: ssl.SSLContext | None = None
    image: bytes = field(default_factory=lambda: images.photo(448, 336))
    connections: list[tuple[str, int]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # body bytes written, by path
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, path: str, host: str | None = None) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def start(self) -> WebServer:
        if self.ssl_context is not None:
            self.ssl_context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        self._server = await asyncio.start_server(self._accept, self.host, 0, ssl=self.ssl_context)
        return self

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def __aenter__(self) -> WebServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self.connections.append((str(peer[0]), int(peer[1])))
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            line, *lines = head.decode("latin-1").split("\r\n")
            target = line.split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
            parts = urlsplit(target)
            self.requests.append(Seen(parts.path, headers.get("host", "")))
            query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"_path": parts.path}
            await self._route(parts.path)(writer, query)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    def _route(self, path: str) -> Route:
        routes: dict[str, Route] = {
            "/photo.jpg": self._photo,
            "/redirect": self._redirect,
            "/forever": self._forever,
            "/slow": self._slow,
            "/stall": self._stall,
            "/page": self._page,
            "/huge": self._huge,
        }
        if path.startswith("/hop/"):
            return self._hop
        return routes.get(path, self._missing)

    async def _answer(
        self, writer: asyncio.StreamWriter, status: str, headers: dict[str, str], body: bytes = b""
    ) -> None:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"HTTP/1.1 {status}\r\n{head}Connection: close\r\n\r\n".encode() + body)
        await writer.drain()

    async def _photo(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        await self._answer(
            writer,
            "200 OK",
            {"Content-Type": "image/jpeg", "Content-Length": str(len(self.image))},
            self.image,
        )

    async def _redirect(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        await self._answer(writer, "302 Found", {"Location": unquote(query["to"]), "Content-Length": "0"})

    async def _hop(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        """``/hop/N`` redirects to ``/hop/N-1``; ``/hop/0`` is the photo."""
        left = int(query["_path"].rsplit("/", 1)[1])
        if left == 0:
            await self._photo(writer, query)
            return
        await self._answer(writer, "301 Moved", {"Location": f"/hop/{left - 1}", "Content-Length": "0"})

    async def _forever(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        """An image that never ends: a JPEG's first bytes, then zeros for as long as anyone reads."""
        await self._answer(writer, "200 OK", {"Content-Type": "image/jpeg"}, self.image[:1024])
        chunk = bytes(256 * 1024)
        while True:
            writer.write(chunk)
            await writer.drain()
            self.sent["/forever"] = self.sent.get("/forever", 0) + len(chunk)

    async def _slow(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        """Headers and a byte a second: no single read waits long, the whole never arrives in time."""
        await self._answer(writer, "200 OK", {"Content-Type": "image/jpeg"}, self.image[:16])
        for byte in self.image[16:]:
            await asyncio.sleep(1)
            writer.write(bytes([byte]))
            await writer.drain()

    async def _stall(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        await asyncio.sleep(3600)  # reads the request, never answers

    async def _page(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        """5 MB of HTML that says it is a JPEG."""
        body = b"<html><body>" + b"x" * (5 * 1024 * 1024) + b"</body></html>"
        headers = {"Content-Type": "image/jpeg", "Content-Length": str(len(body))}
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(f"HTTP/1.1 200 OK\r\n{head}Connection: close\r\n\r\n".encode())
        for start in range(0, len(body), 64 * 1024):
            writer.write(body[start : start + 64 * 1024])
            await writer.drain()
            self.sent["/page"] = self.sent.get("/page", 0) + 64 * 1024

    async def _huge(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        await self._answer(writer, "200 OK", {"Content-Type": "image/jpeg", "Content-Length": str(10**9)})
        writer.write(self.image[:1024])
        await writer.drain()
        await asyncio.sleep(3600)

    async def _missing(self, writer: asyncio.StreamWriter, query: dict[str, str]) -> None:
        await self._answer(writer, "404 Not Found", {"Content-Length": "0"})


async def listener(host: str = HOST) -> WebServer:
    """A server that only records who connects (every path is a 404): the address a refused URL names."""
    return await WebServer(host=host).start()
