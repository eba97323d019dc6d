"""The client's wire (`app.services.whatsapp_http`) against a scripted HTTP server on a
raw socket: framing, keep-alive, stale connections, timeouts and their httpx types."""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
import time
from collections import deque

import httpx
import pytest

from app.services.whatsapp_http import Wire, request_head

TIMEOUT = httpx.Timeout(2.0)
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


class Scripted:
    """Answers each request with the next scripted reply: bytes, then ``close`` (drop
    the connection after it); ``None`` drops the connection without answering; past
    the script, requests get no answer."""

    def __init__(self, *replies: bytes | tuple[bytes | None, bool] | None):
        self.replies = deque(r if isinstance(r, tuple) else (r, r is None) for r in replies)
        self.requests: list[tuple[int, bytes]] = []  # (connection number, request)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def origin(self) -> tuple[str, str, int]:
        return ("http", "127.0.0.1", self.port)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn, self.connections), daemon=True).start()

    def _talk(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        with conn:
            while True:  # once the script is spent, requests are read and left unanswered
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                self.requests.append((number, head + b"\r\n\r\n" + body))
                if not self.replies:
                    continue
                reply, close = self.replies.popleft()
                if reply is not None:
                    conn.sendall(reply)
                if close:
                    return

    def close(self) -> None:
        self.listener.close()


def post(wire: Wire, server: Scripted, body: bytes = b"{}", timeout=TIMEOUT):
    head = request_head("POST", "/v25.0/1/messages", [("Host", f"127.0.0.1:{server.port}")])
    return wire.post(server.origin, head, body, timeout)


def test_a_request_is_one_head_and_body_and_connections_are_kept_alive():
    server = Scripted(OK, OK)
    wire = Wire()
    first, second = post(wire, server, b'{"a":1}'), post(wire, server)
    assert (first.status, first.content, second.content) == (200, b'{"ok":true}', b'{"ok":true}')
    assert [n for n, _ in server.requests] == [1, 1]  # one connection for both
    assert server.requests[0][1] == (
        b"POST /v25.0/1/messages HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b'Content-Length: 7\r\n\r\n{"a":1}' % server.port
    )
    wire.close()
    server.close()


def test_chunked_replies_and_retry_after_are_read():
    chunked = (
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;x=y\r\n{"a":\r\n3\r\n 1}\r\n0\r\nX-Trailer: 1\r\n\r\n'
    )
    server = Scripted(chunked, OK)
    wire = Wire()
    reply = post(wire, server)
    assert (reply.status, reply.retry_after, reply.content) == (429, "7", b'{"a": 1}')
    assert post(wire, server).status == 200 and server.connections == 1
    server.close()


def test_a_reply_without_length_is_read_to_the_end_and_the_connection_dropped():
    server = Scripted((b"HTTP/1.0 200 OK\r\n\r\n{}", True), OK)
    wire = Wire()
    assert post(wire, server).content == b"{}"
    assert post(wire, server).status == 200 and server.connections == 2
    server.close()


def test_connection_close_and_stale_idle_connections_are_not_reused():
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    server = Scripted(close, (OK, True), OK)  # the 2nd is answered, then dropped silently
    wire = Wire()
    assert post(wire, server).status == 200
    assert post(wire, server).status == 200
    time.sleep(0.2)  # the server's close arrives while the connection idles
    assert post(wire, server).status == 200
    assert [n for n, _ in server.requests] == [1, 2, 3]
    server.close()


def test_gzip_bodies_are_decoded():
    data = gzip.compress(b'{"ok":true}')
    reply = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
    server = Scripted(reply % (len(data), data))
    assert post(Wire(), server).content == b'{"ok":true}'
    server.close()


def test_failures_after_the_request_left_are_not_connect_errors():
    server = Scripted(None, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")
    wire = Wire()
    with pytest.raises(httpx.RemoteProtocolError):
        post(wire, server)  # dropped without an answer
    with pytest.raises(httpx.ReadTimeout):
        post(wire, server, timeout=httpx.Timeout(0.2))  # the body never completes
    with pytest.raises(httpx.RemoteProtocolError):
        post(wire, Scripted(b"garbage\r\n\r\n"))
    server.close()


def test_connect_errors_and_the_pool_limit():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    head = request_head("POST", "/", [("Host", "x")])
    with pytest.raises(httpx.ConnectError):
        Wire().post(("http", "127.0.0.1", port), head, b"", TIMEOUT)
    server = Scripted()  # accepts, never answers
    wire, timed_out = Wire(max_connections=1), []

    def hold_the_only_connection() -> None:
        try:
            post(wire, server, timeout=httpx.Timeout(1))
        except httpx.ReadTimeout as exc:
            timed_out.append(exc)

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    time.sleep(0.1)
    with pytest.raises(httpx.PoolTimeout):
        post(wire, server, timeout=httpx.Timeout(5, pool=0.2))
    holder.join()
    assert timed_out
    server.close()


def test_request_heads_refuse_line_breaks():
    assert request_head("GET", "/x?a=1", [("A", "b")]) == b"GET /x?a=1 HTTP/1.1\r\nA: b\r\n"
    for bad in ([("Authorization", "Bearer x\r\nX-Evil: 1")], [("A\n", "b")]):
        with pytest.raises(ValueError):
            request_head("POST", "/", bad)
    with pytest.raises(ValueError):
        request_head("GET", "/a b", [])


def test_it_serves_as_an_httpx_transport():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    server = Scripted(chunked, OK)
    with httpx.Client(transport=Wire(), base_url=f"http://127.0.0.1:{server.port}") as client:
        assert client.get("/t", params={"after": "C1"}).json() == {}
        assert client.post("/m", json={"a": 1}).json() == {"ok": True}
    get, sent = server.requests[0][1], server.requests[1][1]
    assert get.startswith(b"GET /t?after=C1 HTTP/1.1\r\n") and b"Content-Length" not in get
    assert sent.endswith(b'Content-Length: 7\r\n\r\n{"a":1}')
    server.close()


@pytest.mark.parametrize(
    "env, wired",
    [
        ({}, True),
        ({"WHATSAPP_TRANSPORT": "httpx"}, False),  # the operator's way back
        ({"HTTPS_PROXY": "http://proxy.example:3128"}, False),  # a proxy applies
        ({"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "graph.example"}, True),
    ],
)
def test_the_pooled_client_keeps_httpx_transport_when_asked_or_proxied(monkeypatch, env, wired):
    from app.services import whatsapp_http

    for name in ("WHATSAPP_TRANSPORT", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    base = "https://graph.example"
    client = whatsapp_http.http_client(base)
    try:
        assert (client.wire is not None) is wired
        assert isinstance(client._transport, Wire) is wired
    finally:
        whatsapp_http.close_http_clients()


# ------------------------------------------------------------------------------- TLS


def _self_signed(directory) -> tuple[str, str]:
    """A certificate for DNS name ``localhost`` and its key, as PEM files."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


class TLSScripted(Scripted):
    """`Scripted` behind TLS (TLS 1.3 where the library has it: session tickets
    arrive after the handshake, which must not make a kept connection look closed)."""

    def __init__(self, cert_file: str, key_file: str, *replies):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(cert_file, key_file)
        super().__init__(*replies)

    def _talk(self, conn: socket.socket, number: int) -> None:
        try:
            conn = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()  # the client refused our certificate
            return
        super()._talk(conn, number)


def test_tls_checks_the_certificate_and_the_host_name_and_keeps_the_connection(tmp_path):
    cert_file, key_file = _self_signed(tmp_path)
    server = TLSScripted(cert_file, key_file, OK, OK, OK)
    head = request_head("POST", "/v25.0/1/messages", [("Host", "localhost")])

    # The default trust store (httpx's: certifi) does not know this certificate.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        Wire().post(("https", "localhost", server.port), head, b"{}", TIMEOUT)

    trusting = Wire()
    trusting._ssl = ssl.create_default_context(cafile=cert_file)
    # Trusted, but not for this host name: refused too.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        trusting.post(("https", "127.0.0.1", server.port), head, b"{}", TIMEOUT)

    first = trusting.post(("https", "localhost", server.port), head, b'{"a":1}', TIMEOUT)
    time.sleep(0.05)  # let anything the server sends after the reply arrive
    second = trusting.post(("https", "localhost", server.port), head, b'{"a":2}', TIMEOUT)
    assert first.status == second.status == 200 and second.content == b'{"ok":true}'
    answered = [number for number, _request in server.requests]
    assert answered[-2:] == [answered[-1]] * 2, "the TLS connection was not reused"
    assert server.requests[-1][1].endswith(b'{"a":2}')
    server.close()
