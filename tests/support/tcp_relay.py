"""A TCP relay a test can cut and restore, to make a real server unreachable on demand.

    relay = TcpRelay("127.0.0.1", 5432).start()   # listens on 127.0.0.1:<relay.port>
    relay.cut()       # listener closed (new connections refused), live connections killed
    relay.restore()   # listening again on the same port

Threads, not asyncio: the relay keeps forwarding whatever the test's event loop is doing.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

_CHUNK = 64 * 1024


class TcpRelay:
    """Forwards 127.0.0.1:<port> to target_host:target_port, byte for byte."""

    def __init__(self, target_host: str, target_port: int, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._live: set[socket.socket] = set()
        self._cut = threading.Event()
        self.connections_total = 0

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def start(self) -> TcpRelay:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        listener.settimeout(0.05)  # so the accept loop notices `cut` promptly
        self.port = listener.getsockname()[1]
        self._cut.clear()
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"relay-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def cut(self) -> None:
        """Refuse new connections and kill the live ones, as a crashed server would."""
        self._cut.set()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            _kill(sock)

    def restore(self) -> None:
        """Listen again, on the same port."""
        if self._listener is None:
            self.start()

    def stop(self) -> None:
        self.cut()

    def __enter__(self) -> TcpRelay:
        return self.start() if self._listener is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._cut.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=3)
            except OSError:
                _kill(client)
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._cut.is_set():
                    _kill(client)
                    _kill(upstream)
                    return
                self._live.update((client, upstream))
                self.connections_total += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One side finished or failed: end the pair, so neither end waits forever.
            with self._lock:
                self._live.discard(source)
                self._live.discard(sink)
            _kill(source)
            _kill(sink)


def _kill(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
