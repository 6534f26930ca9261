"""``tests.fakes.mainframe.FakeMainframe`` in a child process, driven over a pipe.

The live mainframe is remote: its HTTP threads do not share the GIL (nor, here, the interpreter) with the
node being measured. :class:`FakeProcess` starts one child (``multiprocessing`` with the ``spawn`` start
method, so it does not inherit the benchmark's threads or the engine's thread pool) that reads every
distribution file once and then serves rounds on request:

* :meth:`FakeProcess.new_round` builds a fresh ``FakeMainframe`` in the child with the rules and every
  release queued, its distributions hosted at PyPI-shaped URLs, and returns a :class:`RemoteFake` with
  the URL, the default worker's credentials and the distributions' URLs;
* :meth:`RemoteFake.results` returns the bodies of the accepted ``PUT /package`` submissions;
* :meth:`RemoteFake.close` closes that fake (the child stays up for the next round).

Only small messages cross the pipe (commands, URLs, result bodies); the archives never do.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class ReleaseSpec:
    """A release to queue: (file name, path of the archive on disk) per distribution."""

    name: str
    version: str
    files: tuple[tuple[str, str], ...]


def _child(conn: Connection, releases: Sequence[ReleaseSpec], rules_hash: str, rules: dict[str, str]) -> None:
    from tests.fakes.mainframe import FakeMainframe

    data = [
        (r.name, r.version, [(filename, Path(path).read_bytes()) for filename, path in r.files])
        for r in releases
    ]
    fake: FakeMainframe | None = None

    def close() -> None:
        nonlocal fake
        if fake is not None:
            fake.close()
            fake = None

    conn.send(("ok", "ready"))
    while True:
        try:
            command = conn.recv()
        except EOFError:
            break
        try:
            if command == "start":
                close()
                fake = FakeMainframe()
                fake.set_rules(rules_hash, rules)
                hosted = []
                for name, version, dists in data:
                    urls = [fake.host_file(filename, content) for filename, content in dists]
                    fake.add_release(name, version, distributions=urls)
                    hosted += urls
                reply: Any = {
                    "url": fake.url,
                    "files": hosted,
                    "client_id": fake.worker.client_id,
                    "client_secret": fake.worker.client_secret,
                    "settings": fake.node_settings(),
                }
            elif command == "results":
                assert fake is not None, "no round started"
                reply = [s.body for s in fake.results]
            elif command == "close":
                close()
                reply = None
            elif command == "exit":
                close()
                conn.send(("ok", None))
                break
            else:
                raise ValueError(f"unknown command {command!r}")
        except Exception:
            conn.send(("error", traceback.format_exc()))
        else:
            conn.send(("ok", reply))
    close()


class RemoteFake:
    """One round's fake mainframe, living in the child process."""

    def __init__(self, process: FakeProcess, info: dict[str, Any]) -> None:
        self._process = process
        self.url: str = info["url"]
        self.client_id: str = info["client_id"]
        self.client_secret: str = info["client_secret"]
        self._settings: dict[str, Any] = info["settings"]
        self.files: list[str] = info["files"]
        """The URL of every distribution queued, in queue order."""
        self.closed = False

    def node_settings(self, **extra: Any) -> dict[str, Any]:
        """Keyword arguments for ``NodeSettings`` that make a node log in as the default worker."""
        return {**self._settings, **extra}

    def results(self) -> list[dict[str, Any]]:
        """Bodies of the accepted submissions (answered 200), in order."""
        return self._process.call("results")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._process.call("close")


class FakeProcess:
    """The child process hosting the fakes: ``with FakeProcess(releases, hash, rules) as p: ...``."""

    def __init__(self, releases: Sequence[ReleaseSpec], rules_hash: str, rules: dict[str, str]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_child,
            args=(child_conn, list(releases), rules_hash, dict(rules)),
            name="fake-mainframe",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        self._receive("start-up")

    def _receive(self, what: str) -> Any:
        try:
            status, value = self._conn.recv()
        except EOFError as err:
            raise RuntimeError(f"the fake mainframe process died ({what})") from err
        if status != "ok":
            raise RuntimeError(f"the fake mainframe process failed ({what}):\n{value}")
        return value

    def call(self, command: str) -> Any:
        self._conn.send(command)
        return self._receive(command)

    def new_round(self) -> RemoteFake:
        return RemoteFake(self, self.call("start"))

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self.call("exit")
            except (OSError, RuntimeError):
                pass
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    def __enter__(self) -> FakeProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
