"""A TCP proxy on 127.0.0.1 that a test can cut, stall or black-hole (storage-fault tests).

It forwards bytes between a client (methray's S3 client) and an upstream server (moto), one
pair of threads per connection, and can be switched at any time:

- ``up()``: forward everything (the default);
- ``down()``: close every connection and stop listening, so new connections are refused (the
  store has gone away); ``up()`` listens again on the same port;
- ``blackhole()``: accept connections and never answer (read nothing, send nothing);
- ``stall_after_put(n)``: forward normally, but once ``n`` HTTP ``PUT`` requests have been
  seen, stop reading from every connection and answer nothing (a store that stops reading
  mid-upload), until ``up()``;
- ``down_after_put(n, seconds, match=None)``: forward normally; at the ``n``-th ``PUT``
  request (counting only those whose request line contains ``match``, when given) go
  ``down()`` for ``seconds`` (a store restart mid-run), then ``up()`` by itself.

Receive buffers are kept small so that a stalled peer blocks the sender quickly, as it does
across a real network.
"""

from __future__ import annotations

import socket
import threading
import time

_BUF = 16 * 1024


class FaultProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1"):
        self.host, self.upstream = host, (host, upstream_port)
        self.port = 0
        self.mode = "up"
        self.puts = 0
        self.fault_at: float | None = None  # time.monotonic() of the last fault switched on
        self._trigger: tuple[str, int, float, bytes | None] | None = None
        self._matched = 0  # PUT requests whose request line holds the trigger's match
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stop = False
        self._listen()

    # ------------------------------------------------------------ control

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def up(self) -> None:
        with self._lock:
            self.mode, self._trigger, self.fault_at = "up", None, None
        if self._listener is None:
            self._listen()

    def down(self) -> None:
        with self._lock:
            self.mode, self.fault_at = "down", time.monotonic()
        self._close_listener()
        self._drop_all()

    def blackhole(self) -> None:
        with self._lock:
            self.mode, self.fault_at = "blackhole", time.monotonic()
        self._drop_all()

    def stall_after_put(self, n: int) -> None:
        with self._lock:
            self.puts, self._trigger = 0, ("stall", n, 0.0, None)

    def down_after_put(self, n: int, seconds: float, match: str | None = None) -> None:
        with self._lock:
            self.puts, self._matched = 0, 0
            self._trigger = ("down", n, seconds, match.encode() if match else None)

    @property
    def armed(self) -> bool:
        """Whether a ``*_after_put`` fault is still waiting for its ``PUT``."""
        return self._trigger is not None

    def count_puts(self) -> None:
        """Start counting ``PUT`` requests (``self.puts``) from zero."""
        with self._lock:
            self.puts = 0

    def close(self) -> None:
        self._stop = True
        self._close_listener()
        self._drop_all()

    # ------------------------------------------------------------ machinery

    def _listen(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUF)
        srv.bind((self.host, self.port))
        srv.listen(64)
        self.port = srv.getsockname()[1]
        self._listener = srv
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _close_listener(self) -> None:
        srv, self._listener = self._listener, None
        if srv is not None:
            try:
                srv.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            srv.close()

    def _drop_all(self) -> None:
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
                c.close()
            except OSError:
                pass

    def _accept(self, srv: socket.socket) -> None:
        while not self._stop:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            if self.mode == "blackhole":
                with self._lock:
                    self._conns.add(client)  # held open, never read, never answered
                continue
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _on_request_bytes(self, data: bytes) -> None:
        n = data.count(b"PUT /")
        if not n:
            return
        with self._lock:
            self.puts += n
            trigger = self._trigger
            if trigger is None:
                return
            kind, limit, seconds, match = trigger
            if match is not None:
                self._matched += sum(1 for line in data.split(b"\r\n") if line.startswith(b"PUT /") and match in line)
            if (self._matched if match is not None else self.puts) < limit:
                return
            self._trigger = None
        if kind == "stall":
            self.mode, self.fault_at = "stalled", time.monotonic()
        else:
            self.down()
            threading.Timer(seconds, self.up).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while not self._stop:
                if self.mode == "stalled":
                    time.sleep(0.05)  # read nothing, forward nothing
                    continue
                data = src.recv(_BUF)
                if not data:
                    break
                if from_client:
                    self._on_request_bytes(data)
                    if self.mode == "down":
                        break
                if self.mode == "stalled":
                    continue  # swallowed: neither side hears of it
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
