"""Where the node's results go (:class:`~dragonfly_hybrid.node.jobs.ResultSink`): the mainframe
(``PUT /package``), or JSON lines for standalone runs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import IO

from dragonfly_hybrid.node.jobs import (
    FailureBody,
    Job,
    ResultBody,
    SinkBroken,
    SubmitOutcome,
    SuccessBody,
    Work,
)
from dragonfly_hybrid.node.mainframe import MainframeClient
from dragonfly_hybrid.redaction import redact_url

SCORE_RANGE = (-(2**31), 2**31 - 1)
"""The scores the mainframe can store (its ``score`` column is a PostgreSQL ``integer``): a larger one (a
rule weighted past it, as YARA-X allows up to 2**63 - 1) was refused with a 500 at every try, so the
release was never recorded; it is sent as the nearest bound, which still flags it."""


def result_body(work: Work[Job]) -> ResultBody:
    """The mainframe's body for a finished job: its failure, else its score and matched rules."""
    job, release = work.job, work.release
    if work.failure is not None:
        return FailureBody(job.name, job.version, work.failure, job.attempt, job.assignment_id)
    found = release if work.findings else None
    low, high = SCORE_RANGE
    return SuccessBody(
        name=job.name,
        version=job.version,
        score=min(max(found.score, low), high) if found is not None else 0,
        inspector_url=found.inspector_url if found is not None else None,
        rules_matched=found.rules_matched if found is not None else [],
        commit=work.commit,
        attempt=job.attempt,
        assignment_id=job.assignment_id,
    )


class MainframeSink:
    def __init__(self, client: MainframeClient) -> None:
        self._client = client

    async def deliver(self, work: Work[Job], *, deadline: float) -> SubmitOutcome:
        return await self._client.submit(result_body(work), deadline=deadline)


class ResultsNotWritten(SinkBroken):
    """A standalone run's result could not be written (its output was closed or is full). The pipeline
    logs it as a result not delivered; the run then exits 141 (a closed pipe) or 3, never 0."""


class JsonLinesSink:
    """One JSON object per result: the body the mainframe would get (its ``inspector_url`` redacted), plus
    ``"status"``.

    A write that fails is kept in :attr:`error`: no result is written after it, each one raises
    :class:`ResultsNotWritten` (the node stops claiming)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = asyncio.Lock()
        self.error: OSError | None = None
        self.written = 0
        """Results written whole."""

    async def deliver(self, work: Work[Job], *, deadline: float) -> SubmitOutcome:
        del deadline  # a local write cannot outlive a lease
        body = result_body(work)
        status = "success" if isinstance(body, SuccessBody) else "failure"
        if (
            isinstance(body, SuccessBody)
            and body.inspector_url is not None
            and any(redact_url(url) != url for url in work.job.distributions)
        ):
            # Made from the file's URL as the index lists it: a path parameter (;token=...) carries over.
            # Only then: a member named `run;x=1.py` hides no secret, and its link stays the server's.
            body = dataclasses.replace(body, inspector_url=redact_url(body.inspector_url))
        line = json.dumps({"status": status, **dataclasses.asdict(body)})
        async with self._lock:
            if self.error is None:
                try:
                    self._stream.write(line + "\n")
                    self._stream.flush()
                    self.written += 1
                except OSError as err:
                    self.error = err
            if self.error is not None:
                raise ResultsNotWritten(f"cannot write the result: {self.error.strerror or self.error}")
        return SubmitOutcome.ACCEPTED
