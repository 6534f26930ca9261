"""The node pipeline's job contract: what a source hands out (any :class:`ScanJob`; the mainframe's is
:class:`Job`), what a sink is given (:class:`Work`, the finished job) and answers (:class:`SubmitOutcome`),
the two protocols (:class:`JobSource`, :class:`ResultSink`), and the mainframe's wire bodies
(:class:`SuccessBody`, :class:`FailureBody`). Nothing needs the HTTP client just for these types."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from dragonfly_hybrid._core import ReleaseResult, Scanner

if TYPE_CHECKING:
    from dragonfly_hybrid.pypi.direct import Downloaded


@dataclass(frozen=True)
class Job:
    """One job of the mainframe (or of ``node --job``): scan every distribution of ``name==version`` with
    the rules of commit ``hash``; the result goes back with its ``attempt`` and ``assignment_id``."""

    name: str
    version: str
    distributions: list[str]
    hash: str
    attempt: int
    assignment_id: str

    @property
    def rules_hash(self) -> str | None:
        return self.hash

    @property
    def sha256(self) -> Mapping[str, str]:
        return {}  # the mainframe lists no digests


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


class SinkBroken(MainframeError):
    """The sink can take no more results (a standalone run's output closed or full, the watcher's store
    failed): the node logs the result as not delivered and stops claiming."""


class ScanJob(Protocol):
    """What the pipeline reads of a job, whichever source handed it out (a mainframe :class:`Job`, a
    ``watch`` job)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def distributions(self) -> Sequence[str]:
        """The URLs of the files to download and scan."""
        ...

    @property
    def sha256(self) -> Mapping[str, str]:
        """URL -> the sha256 (hex) the index lists for that file; a download must match it."""
        ...

    @property
    def rules_hash(self) -> str | None:
        """The rule set the job must be scanned with; None: the one the node has."""
        ...


J = TypeVar("J", bound=ScanJob)


@dataclass
class Work(Generic[J]):
    """One claimed job on its way through the pipeline, and what became of it: what a sink delivers."""

    job: J
    claimed_at: float
    distributions: list[tuple[str, Downloaded, str | None]] = field(default_factory=list)
    # Downloads that cannot succeed (404, over the cap): reported in a failure.
    permanent_errors: list[str] = field(default_factory=list)
    # Downloads that may succeed later: without findings, the job is left to be claimed again.
    transient_errors: list[str] = field(default_factory=list)
    release: ReleaseResult | None = None
    """The scan result (None when nothing could be downloaded)."""
    failure: str | None = None
    """Set when the job ends as a failure: why (what could not be downloaded or scanned)."""
    commit: str = ""
    """The rule set the job was scanned with."""
    scanner: Scanner | None = None
    """The Scanner the job was scanned with (its content cache holds what the job scanned)."""
    fetch_seconds: float = 0.0
    scan_seconds: float = 0.0
    queued_at: float = 0.0
    """When the job entered the queue it is in now (``time.perf_counter``): the queue-wait metrics."""

    @property
    def findings(self) -> bool:
        return self.release is not None and self.release.verdict == "findings"


class RulesSource(Protocol):
    async def rules(self) -> RulesPayload | None:
        """The rule set jobs expect, or None when the node keeps the rules it was started with."""
        ...


class JobSource(RulesSource, Protocol[J]):
    async def claim(self, batch: int) -> list[J]:
        """Up to ``batch`` jobs; an empty list when there is no work right now."""
        ...

    def delivered(self, job: J) -> None:
        """The sink has taken the job's result (whatever it answered)."""
        ...


class ResultSink(Protocol[J]):
    async def deliver(self, work: Work[J], *, deadline: float) -> SubmitOutcome:
        """Deliver one finished job; retry transient errors until ``deadline`` (``time.monotonic()``)."""
        ...
