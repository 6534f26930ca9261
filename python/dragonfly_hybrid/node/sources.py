"""Where the node's jobs and rules come from (:class:`~dragonfly_hybrid.node.jobs.JobSource`): the Dragonfly
mainframe, or a local list of releases."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Iterable

from dragonfly_hybrid.node.jobs import Job, RulesPayload
from dragonfly_hybrid.node.mainframe import MainframeClient


class MainframeSource:
    """Jobs and rules from the mainframe: ``POST /jobs?batch=N`` and ``GET /rules``.

    ``stop``: set when the node stops (the node's ``stop`` event); a claim not yet sent then is not sent
    (see :meth:`MainframeClient.claim_jobs`)."""

    def __init__(self, client: MainframeClient, stop: asyncio.Event | None = None) -> None:
        self._client = client
        self._stop = stop

    async def claim(self, batch: int) -> list[Job]:
        return await self._client.claim_jobs(batch, stop=self._stop)

    async def rules(self) -> RulesPayload | None:
        return await self._client.get_rules()

    def delivered(self, job: Job) -> None:
        pass  # the mainframe knows


class LocalSource:
    """Releases given on the command line or in a file, already resolved to their download URLs."""

    def __init__(self, releases: Iterable[tuple[str, str, list[str]]], rules_hash: str) -> None:
        self._pending = deque(
            Job(
                name=name,
                version=version,
                distributions=urls,
                hash=rules_hash,
                attempt=1,
                assignment_id=str(uuid.uuid4()),
            )
            for name, version, urls in releases
        )

    async def claim(self, batch: int) -> list[Job]:
        taken: list[Job] = []
        while self._pending and len(taken) < batch:
            taken.append(self._pending.popleft())
        return taken

    async def rules(self) -> RulesPayload | None:
        return None

    def delivered(self, job: Job) -> None:
        pass
