"""The wire under the WhatsApp client's pooled httpx client: a lean HTTP/1.1 keep-alive
client on plain sockets, as an httpx transport.

Why not httpx's own transport: httpcore and h11 are pure Python and cost ~0.9 ms of CPU
per request on our 2-core VMs, which caps one worker near 1,000 sends/s with nothing
else done (docs/benchmarks.md, issue 5); even the standard library's `http.client`
spends half its time in the email parser reading the reply's headers. A send here is
one prebuilt request head (`request_head`, checked once per client), one ``sendall``
and, as a rule, one ``recv``: `Wire.post`. Everything else (template paging, tests'
own clients) goes through `httpx.Client` as before, with this class as its transport
(`Wire.handle_request`).

What is kept of httpx's transport: a bounded pool (``max_connections``, waiting at most
the pool timeout, then `httpx.PoolTimeout`), keep-alive with an expiry, connections
dropped when the server closed them (checked before reuse, as httpcore does), the
connect/write/read timeouts of `httpx.Timeout`, TLS with httpx's certificate store
(`httpx.create_ssl_context`), replies framed by Content-Length, chunks or the end of
the connection, and httpx's exception types, so `WhatsAppError.from_transport` tells a
request that never left (connect errors, pool timeout) from one Meta may have received
(everything after the connection exists). Nothing here logs, and no exception carries
a header: the access token stays out of both.
"""

from __future__ import annotations

import gzip
import os
import select
import socket
import ssl
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=15.0, write=10.0, pool=10.0)
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=30)
USER_AGENT = "woffice-backoffice"
Origin = tuple[str, str, int]  # scheme, host, port
Headers = list[tuple[str, str]]
MAX_HEAD = 64 * 1024  # a reply's status line and headers
MAX_BODY = 16 * 1024 * 1024
_RECV = 64 * 1024


@dataclass(frozen=True, slots=True)
class WireReply:
    """A response read in full: status, the ``Retry-After`` header, the body."""

    status: int
    retry_after: str | None
    content: bytes


def origin_of(url: httpx.URL) -> Origin:
    """(scheme, host, port) of ``url``, the port spelt out."""
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def request_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """A request's line and headers, without Content-Length and the blank line (`Wire.
    post` adds them). Raises ValueError for a line break in any part (header injection).
    """
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    if any(c in line for line in lines for c in "\r\n\0") or " " in target:
        raise ValueError("a request line or header holds a line break or NUL")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


class Wire(httpx.BaseTransport):
    """A pool of keep-alive connections shared by the threads of one process (see the
    module docstring)."""

    def __init__(
        self,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.keepalive_expiry = keepalive_expiry
        self._slots = threading.BoundedSemaphore(max_connections)
        self._idle: dict[Origin, list[tuple[socket.socket, float]]] = {}
        self._lock = threading.Lock()
        self._ssl = ssl_context
        self._closed = False

    # --- the send path -------------------------------------------------------------

    def post(self, origin: Origin, head: bytes, body: bytes, timeout: httpx.Timeout) -> WireReply:
        """Send ``head`` (from `request_head`) and ``body``; the reply in full.
        Raises httpx's transport exceptions."""
        request = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        status, _reason, headers, content = self._exchange(origin, request, timeout)
        retry_after, coding = None, None
        for name, value in headers:
            lowered = name.lower()
            if lowered == "retry-after":
                retry_after = value
            elif lowered == "content-encoding":
                coding = value.lower()
        return WireReply(status, retry_after, _decoded(content, coding) if coding else content)

    # --- httpx transport -----------------------------------------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        timeout = httpx.Timeout(**request.extensions.get("timeout", {}))
        framing = ("content-length", "transfer-encoding")  # the body goes whole, counted
        fields = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in framing]
        head = request_head(request.method, url.raw_path.decode("ascii"), fields)
        body = request.read()
        length = b"Content-Length: %d\r\n" % len(body) if body or request.method == "POST" else b""
        status, reason, headers, content = self._exchange(
            origin_of(url), head + length + b"\r\n" + body, timeout
        )
        return httpx.Response(
            status,
            headers=[(k, v) for k, v in headers if k.lower() != "transfer-encoding"],
            content=content,  # httpx decodes any Content-Encoding itself
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason.encode("latin-1")},
            request=request,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for sock, _used in connections:
                sock.close()

    # --- internals -----------------------------------------------------------------

    def _exchange(
        self, origin: Origin, request: bytes, timeout: httpx.Timeout
    ) -> tuple[int, str, Headers, bytes]:
        if not self._slots.acquire(timeout=timeout.pool):
            raise httpx.PoolTimeout("no connection free within the pool timeout")
        try:
            sock = self._checkout(origin, timeout.connect)
            try:
                status, reason, headers, content, reusable = _send(sock, request, timeout)
            except BaseException:
                sock.close()
                raise
            if reusable and not self._closed:
                with self._lock:
                    self._idle.setdefault(origin, []).append((sock, time.monotonic()))
            else:
                sock.close()
        finally:
            self._slots.release()
        return status, reason, headers, content

    def _checkout(self, origin: Origin, connect_timeout: float | None) -> socket.socket:
        """An idle connection to ``origin`` still open, else a new one."""
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                if not idle:
                    break
                sock, used = idle.pop()  # the most recent: the likeliest still open
            if now - used < self.keepalive_expiry and _still_open(sock):
                return sock
            sock.close()
        return self._connect(origin, connect_timeout)

    def _connect(self, origin: Origin, connect_timeout: float | None) -> socket.socket:
        scheme, host, port = origin
        sock = None
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._tls().wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            if sock is not None:
                sock.close()
            raise httpx.ConnectTimeout(str(exc) or "connect timed out") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake
            if sock is not None:
                sock.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        return sock

    def _tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            return self._ssl


def _send(
    sock: socket.socket, request: bytes, timeout: httpx.Timeout
) -> tuple[int, str, Headers, bytes, bool]:
    """One exchange on ``sock``: (status, reason, headers, body, reusable). Once the
    connection exists every failure may have reached the server: none is a connect
    error."""
    try:
        sock.settimeout(timeout.write)
        sock.sendall(request)
    except TimeoutError as exc:
        raise httpx.WriteTimeout(str(exc) or "write timed out") from None
    except OSError as exc:
        raise httpx.WriteError(str(exc) or type(exc).__name__) from None
    try:
        sock.settimeout(timeout.read)
        return _Reader(sock).response(head_only=request.startswith(b"HEAD "))
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out") from None
    except (ValueError, IndexError) as exc:  # a malformed reply
        raise httpx.RemoteProtocolError(f"malformed reply: {exc}") from None
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__) from None


class _Reader:
    """Reads one HTTP/1.1 reply off a socket."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buffer = sock, b""

    def _more(self) -> bytes:
        data = self.sock.recv(_RECV)
        if not data:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return data

    def _until(self, marker: bytes, limit: int) -> bytes:
        """The buffered bytes up to ``marker`` (consumed with it)."""
        while (end := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise httpx.RemoteProtocolError("reply headers too long")
            self.buffer += self._more()
        line, self.buffer = self.buffer[:end], self.buffer[end + len(marker) :]
        return line

    def _exactly(self, count: int) -> bytes:
        if count > MAX_BODY:
            raise httpx.RemoteProtocolError("reply body too large")
        while len(self.buffer) < count:
            self.buffer += self._more()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def response(self, head_only: bool = False) -> tuple[int, str, Headers, bytes, bool]:
        while True:  # 1xx interim replies are skipped
            lines = self._until(b"\r\n\r\n", MAX_HEAD).decode("latin-1").split("\r\n")
            version, status_text, *rest = lines[0].split(" ", 2)
            status = int(status_text)
            if not version.startswith("HTTP/1.") or not 100 <= status <= 999:
                raise ValueError(lines[0][:40])
            if status >= 200 or status == 101:
                break
        headers: Headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError("header line without a colon")
            headers.append((name.strip(), value.strip()))
        fields = {name.lower(): value for name, value in headers}
        keep = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
        if head_only or status in (204, 304) or status < 200:
            body = b""
        elif "chunked" in fields.get("transfer-encoding", "").lower():
            body = self._chunks()
        elif "content-length" in fields:
            body = self._exactly(int(fields["content-length"]))
        else:  # delimited by the end of the connection
            body, keep = self._rest(), False
        return status, (rest[0] if rest else ""), headers, body, keep and not self.buffer

    def _chunks(self) -> bytes:
        parts = []
        while size := int(self._until(b"\r\n", 1024).split(b";", 1)[0].strip(), 16):
            parts.append(self._exactly(size))
            self._exactly(2)
        while self._until(b"\r\n", MAX_HEAD):  # trailers, up to the blank line
            pass
        return b"".join(parts)

    def _rest(self) -> bytes:
        parts = [self.buffer]
        while data := self.sock.recv(_RECV):
            parts.append(data)
            if sum(map(len, parts)) > MAX_BODY:
                raise httpx.RemoteProtocolError("reply body too large")
        self.buffer = b""
        return b"".join(parts)


def _still_open(sock: socket.socket) -> bool:
    """Whether an idle connection can take a request: readable while idle means the
    server closed it (or sent something unasked): either way it is dropped."""
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _decoded(content: bytes, coding: str) -> bytes:
    """The body without its Content-Encoding (sends ask for none; a server may still)."""
    try:
        if coding == "gzip":
            return gzip.decompress(content)
        if coding == "deflate":
            return zlib.decompress(content)
    except (OSError, EOFError, zlib.error):
        pass  # not JSON then: the caller's "bad reply"
    return content


# ------------------------------------------------------------------------- the pool


_POOL: dict[tuple[int, str], httpx.Client] = {}
_POOL_LOCK = threading.Lock()


class PooledClient(httpx.Client):
    """The process's httpx client for one base URL; ``wire`` is its transport (None
    when an environment proxy applies: httpx's own transport then honours it)."""

    wire: Wire | None = None


def http_client(base_url: str) -> httpx.Client:
    """The pooled httpx client of this process for ``base_url`` (created once)."""
    key = (os.getpid(), base_url.rstrip("/"))
    with _POOL_LOCK:
        client = _POOL.get(key)
        if client is None or client.is_closed:
            limits = POOL_LIMITS.max_connections or 100, POOL_LIMITS.keepalive_expiry or 30.0
            wire = None if _httpx_transport(key[1]) else Wire(*limits)
            client = PooledClient(
                base_url=key[1],
                limits=POOL_LIMITS,
                timeout=DEFAULT_TIMEOUT,
                headers={"User-Agent": USER_AGENT},
                transport=wire,
            )
            client.wire = wire
            _POOL[key] = client
        return client


def _httpx_transport(base_url: str) -> bool:
    """Whether ``base_url`` keeps httpx's own transport: when the operator asks for it
    (``WHATSAPP_TRANSPORT=httpx``, the way back should the wire misbehave somewhere) or
    an environment proxy (``HTTPS_PROXY``...) applies to it."""
    if os.environ.get("WHATSAPP_TRANSPORT", "wire").strip().lower() == "httpx":
        return True
    url = httpx.URL(base_url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(url.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(url.host)


def close_http_clients() -> None:
    """Close this process's pooled clients (worker shutdown, tests)."""
    with _POOL_LOCK:
        for key in [k for k in _POOL if k[0] == os.getpid()]:
            _POOL.pop(key).close()
