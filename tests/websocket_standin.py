"""Stand-ins for Slack's Socket Mode: a tiny RFC 6455 websocket server on 127.0.0.1 and a
Web API stand-in whose `apps.connections.open` points at it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any

from bot.slack.standin import Call, SlackStandIn

# RFC 6455 section 1.3: the key's digest is taken with this GUID appended.
HANDSHAKE_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
HELLO = {"type": "hello", "num_connections": 1}


class WebSocketStandIn:
    """Accepts websocket connections, greets each with Slack's hello and answers its pings;
    `stop_answering_pings()` and `drop_connections()` play Slack going away."""

    def __init__(self) -> None:
        self.answering_pings = threading.Event()
        self.answering_pings.set()
        self.handshakes = 0
        self.pings = 0
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        # accept() is not woken by close() from another thread everywhere: poll instead.
        self._listener.settimeout(0.05)
        self._port = int(self._listener.getsockname()[1])
        self._acceptor = threading.Thread(target=self._accept, name="websocket-accept", daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/"

    def start(self) -> WebSocketStandIn:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stops listening, closes every connection and waits for every thread."""
        self.drop_connections()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def __enter__(self) -> WebSocketStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop_answering_pings(self) -> None:
        self.answering_pings.clear()

    def answer_pings(self) -> None:
        self.answering_pings.set()

    def drop_connections(self) -> None:
        """Closes every open connection and stops listening, so new ones are refused."""
        # Refused, not reset mid-handshake: slack_sdk leaks the socket of a failed handshake,
        # and the tests turn the ResourceWarning into an error.
        self._stopped.set()
        if self._acceptor.is_alive():
            self._acceptor.join()
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # Wakes the thread blocked reading it, which then closes it.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(None)
            with self._lock:
                self._connections.append(connection)
                thread = threading.Thread(
                    target=self._serve, args=(connection,), name="websocket-connection", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            if not handshake(connection):
                return
            with self._lock:
                self.handshakes += 1
            connection.sendall(frame(TEXT, json.dumps(HELLO).encode()))
            while (received := read_frame(connection)) is not None:
                opcode, payload = received
                if opcode == PING:
                    with self._lock:
                        self.pings += 1
                    if self.answering_pings.is_set():
                        connection.sendall(frame(PONG, payload))
                elif opcode == CLOSE:
                    connection.sendall(frame(CLOSE, payload[:2]))
                    return
        except OSError:
            pass  # the client went away, or drop_connections() shut the socket
        finally:
            with self._lock:
                self._connections.remove(connection)
            connection.close()


def handshake(connection: socket.socket) -> bool:
    """Reads the client's upgrade request and answers 101 with its Sec-WebSocket-Accept."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = connection.recv(1024)
        if not chunk:
            return False
        request += chunk
    headers = {}
    for line in request.split(b"\r\n\r\n")[0].decode().split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    key = headers.get("sec-websocket-key", "").encode()
    accept = base64.b64encode(
        hashlib.sha1(key + HANDSHAKE_GUID, usedforsecurity=False).digest()
    ).decode()
    connection.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    return True


def receive_exactly(connection: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_frame(connection: socket.socket) -> tuple[int, bytes] | None:
    """One frame's opcode and unmasked payload; None once the connection has closed. The
    client never fragments its frames, so continuation frames are not joined."""
    head = receive_exactly(connection, 2)
    if head is None:
        return None
    length = head[1] & 0x7F
    if length in (126, 127):
        extended = receive_exactly(connection, 2 if length == 126 else 8)
        if extended is None:
            return None
        length = struct.unpack("!H" if length == 126 else "!Q", extended)[0]
    mask = receive_exactly(connection, 4) if head[1] & 0x80 else b"\0\0\0\0"
    payload = receive_exactly(connection, length)
    if mask is None or payload is None:
        return None
    return head[0] & 0x0F, bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


def frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked frame, as a server sends them."""
    size = len(payload)
    if size < 126:
        length = bytes([size])
    elif size < 1 << 16:
        length = struct.pack("!BH", 126, size)
    else:
        length = struct.pack("!BQ", 127, size)
    return bytes([0x80 | opcode]) + length + payload


@dataclass
class SocketModeSlack(SlackStandIn):
    """The Slack stand-in, also opening Socket Mode connections: to `websocket_url`."""

    websocket_url: str = ""

    def answer(self, call: Call) -> dict[str, Any]:
        answer = super().answer(call)
        if call.method == "apps.connections.open" and answer.get("ok"):
            return {"ok": True, "url": self.websocket_url}
        return answer
