"""Run an app with uvicorn: in the foreground (`pathattr.apps.serve`) or in a background
thread on a free loopback port (tests, benchmarks, embedding in another program)."""
from __future__ import annotations

import socket
import threading
import time
from typing import Optional

import uvicorn


def _config(app, host: str, port: int, log_level: str, graceful_s: float) -> uvicorn.Config:
    # One event loop and the batcher's one worker thread; graceful shutdown lets the
    # in-flight requests finish (up to graceful_s) before the batcher is drained.
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          timeout_graceful_shutdown=graceful_s, lifespan="on")


def run(app, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info", graceful_s: float = 30.0) -> None:
    """Serve until SIGINT/SIGTERM, then finish in-flight requests and stop."""
    uvicorn.Server(_config(app, host, port, log_level, graceful_s)).run()


class ServerThread:
    """uvicorn in a daemon thread on `host`:`port` (0: a free port, read `.port`).

        with ServerThread(app) as srv:
            httpx.get(srv.url + "/healthz")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 graceful_s: float = 30.0):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = host, self._sock.getsockname()[1]
        self.server = uvicorn.Server(_config(app, host, self.port, log_level, graceful_s))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name="pathattr-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self._thread.start()
        end = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > end:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: Optional[float] = 30.0) -> None:
        """Graceful: stop accepting, finish in-flight requests, run the app's shutdown."""
        self.server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_until_ready(url: str, process, timeout_s: float = 60.0, poll_s: float = 0.1) -> None:
    """Poll `url`/readyz until it answers 200. Raises RuntimeError with the server's output
    if `process` (a subprocess.Popen with stdout piped) exits or `timeout_s` passes first."""
    import httpx

    end = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > end:
            out = process.stdout.read().decode() if process.poll() is not None else "(still running)"
            raise RuntimeError(f"server at {url} did not become ready:\n{out}")
        time.sleep(poll_s)
