"""The node pipeline's job contract: what a source hands out (:class:`Job`), what a sink is given
(:class:`SuccessBody`/:class:`FailureBody`) and answers (:class:`SubmitOutcome`), and the two protocols
(:class:`JobSource`, :class:`ResultSink`). The mainframe client speaks this contract over HTTP; nothing
needs the client just for these types."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Job:
    """One claimed job: scan every distribution of ``name==version`` with the rules of ``hash``."""

    name: str
    version: str
    distributions: list[str]
    hash: str
    attempt: int
    assignment_id: str
    sha256: dict[str, str] = field(default_factory=dict)
    """URL -> the sha256 (hex) the index lists for that distribution; the download must match it.
    Filled by ``watch`` from the Simple API; empty for the mainframe's jobs, which carry no digests."""


@dataclass(frozen=True)
class RulesPayload:
    """The mainframe's rule set: the rules repository commit and ``rule name -> YARA source``."""

    hash: str
    rules: dict[str, str]


@dataclass(frozen=True)
class SuccessBody:
    """A scan result (``PUT /package`` success body)."""

    name: str
    version: str
    score: int
    inspector_url: str | None
    rules_matched: list[str]
    commit: str
    attempt: int
    assignment_id: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class FailureBody:
    """A terminal failure (``PUT /package`` failure body): the server never retries the job."""

    name: str
    version: str
    reason: str
    attempt: int
    assignment_id: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


ResultBody = SuccessBody | FailureBody


class SubmitOutcome(enum.Enum):
    """How the receiving end took a submitted result."""

    ACCEPTED = "accepted"
    """2xx: recorded."""
    LEASE_LOST = "lease_lost"
    """409: already finished, dead-lettered, or the lease is no longer this node's. Never retried."""
    NOT_FOUND = "not_found"
    """404: the server does not know the release."""
    REJECTED = "rejected"
    """422 or another 4xx: the body was refused (the server's detail is logged)."""


class MainframeError(Exception):
    """A call to the job server failed (after retries). Messages never contain secrets."""


class JobSource(Protocol):
    async def claim(self, batch: int) -> list[Job]:
        """Up to ``batch`` jobs; an empty list when there is no work right now."""
        ...

    async def rules(self) -> RulesPayload | None:
        """The rule set jobs expect, or None when the node keeps the rules it was started with."""
        ...


class ResultSink(Protocol):
    async def submit(self, body: ResultBody, *, deadline: float) -> SubmitOutcome:
        """Deliver one result; retry transient errors until ``deadline`` (``time.monotonic()``)."""
        ...
