"""A 25 MB upload against the default 20 MB cap, sent chunk by chunk to a real `florence-tagger serve`:
refused with 413 while it streams, without the gateway's memory growing by more than the cap."""

from __future__ import annotations

import os
import select
import socket
from pathlib import Path

from tests.support.processes import Procs, free_port, gateway_command

MB = 1 << 20
UPLOAD_BYTES = 25 * MB
CAP = 20_971_520  # MAX_IMAGE_BYTES's default
MARGIN = 10 * MB  # the running gateway's own allocations while it reads; a buffered 25 MB body is 2-3x that
BOUNDARY = b"florence-test-boundary"


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux; we run as root)


def stream_upload(port: int, total: int) -> tuple[bytes, int]:
    """Sends a chunked multipart upload of ``total`` image bytes, watching for an answer between chunks;
    returns the answer and how many file bytes had been sent when it came."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sock.sendall(
            b"POST /caption HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=" + BOUNDARY + b"\r\n\r\n"
        )

        def chunk(data: bytes) -> None:
            sock.sendall(b"%x\r\n%b\r\n" % (len(data), data))

        chunk(b'--%b\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n\r\n' % BOUNDARY)
        chunk(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64 * 1024 - 11))  # a JPEG's start, then zeros
        sent, zeros = 64 * 1024, bytes(64 * 1024)
        while sent < total and not select.select([sock], [], [], 0)[0]:
            chunk(zeros)
            sent += len(zeros)
        if sent >= total:  # all sent and no answer yet: end the body, so a buffering server answers too
            chunk(b"\r\n--%b--\r\n" % BOUNDARY)
            sock.sendall(b"0\r\n\r\n")
        sock.settimeout(10)
        return read_answer(sock), sent


def read_answer(sock: socket.socket) -> bytes:
    """The whole answer, by its Content-Length (the connection stays open: the rest of the upload could
    still follow, and the server would drop it unread)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_25_mb_upload_is_refused_while_it_streams_within_the_caps_memory(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "VLM_BASE_URL": "http://127.0.0.1:9/v1"}
    procs = Procs(tmp_path)
    try:
        gateway = procs.spawn("gateway", gateway_command(port), port, env=env)
        gateway.wait_ready("/livez")
        pid = gateway.process.pid
        before = proc_status(pid, "VmRSS")
        reset_peak_rss(pid)
        answer, sent = stream_upload(port, UPLOAD_BYTES)
        peak = proc_status(pid, "VmHWM")
    finally:
        procs.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b'"code":"image_too_large"' in body
    assert CAP <= sent < UPLOAD_BYTES  # answered as soon as the cap was passed, before the rest was sent
    assert peak - before < CAP + MARGIN, f"peak RSS grew by {(peak - before) / MB:.1f} MB"
