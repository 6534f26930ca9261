"""Where the node's results go (:class:`~dragonfly_hybrid.node.jobs.ResultSink`): the mainframe
(``PUT /package``), or JSON lines for standalone runs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import IO

from dragonfly_hybrid.node.jobs import ResultBody, SubmitOutcome, SuccessBody
from dragonfly_hybrid.node.mainframe import MainframeClient


class MainframeSink:
    def __init__(self, client: MainframeClient) -> None:
        self._client = client

    async def submit(self, body: ResultBody, *, deadline: float) -> SubmitOutcome:
        return await self._client.submit(body, deadline=deadline)


class JsonLinesSink:
    """One JSON object per result: the body the mainframe would get, plus ``"status"``."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = asyncio.Lock()

    async def submit(self, body: ResultBody, *, deadline: float) -> SubmitOutcome:
        del deadline  # a local write cannot outlive a lease
        status = "success" if isinstance(body, SuccessBody) else "failure"
        line = json.dumps({"status": status, **dataclasses.asdict(body)})
        async with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
        return SubmitOutcome.ACCEPTED
