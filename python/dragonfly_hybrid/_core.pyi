"""Typed stubs of the Rust extension (``rust/python``). ``tests/test_stubs.py`` checks them with stubtest."""

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, final

__all__ = [
    "CACHE_ENTRIES",
    "COMPILED_RULES_MAGIC",
    "ISSUE_KINDS",
    "MAX_NESTING_DEPTH",
    "MAX_THREADS",
    "DistributionResult",
    "DownloadBuffer",
    "FileResult",
    "Limits",
    "PatternMatch",
    "ReleaseResult",
    "RuleCompileError",
    "RuleMatch",
    "Rules",
    "RulesFormatError",
    "SarifFindings",
    "ScanCancelled",
    "ScanIssue",
    "ScanProgress",
    "Scanner",
    "__version__",
    "default_threads",
    "distributions_json",
    "write_distributions_json",
]

__version__: str
COMPILED_RULES_MAGIC: bytes
"""The first bytes of every blob written by ``Rules.serialize``."""
ISSUE_KINDS: list[str]
"""Every ``ScanIssue.kind`` the engine can report."""
MAX_NESTING_DEPTH: int
"""The deepest ``Limits.max_depth``: archives nested deeper are never opened."""
MAX_THREADS: int
"""The most threads a ``Scanner`` starts."""
CACHE_ENTRIES: int
"""Contents whose results a ``Scanner`` holds in its content cache before emptying it."""

def default_threads() -> int:
    """Threads a ``Scanner`` starts when none are asked for: the cores this process may run on (CPU affinity
    and cgroup quotas respected), at least 1."""

def distributions_json(distributions: Sequence[DistributionResult], level: int | None = None) -> str:
    """The JSON array of ``distributions`` in the schema of ``dragonfly_hybrid.report`` (written in Rust): one
    line when ``level`` is None, else indented two spaces per level as ``json.dump(indent=2)`` indents it,
    each item of a distribution's ``files`` and ``issues`` on one line (as ``json.dumps(item)`` writes it),
    every line after the first ``level`` levels deeper (to nest it in a larger document). ``level`` is an
    integer from 0 to 1000 (else ``ValueError``; a bool is a ``TypeError``)."""

def write_distributions_json(
    distributions: Sequence[DistributionResult], fd: int, level: int | None = None
) -> None:
    """Write ``distributions_json(distributions, level)``, UTF-8 encoded, to the open file descriptor ``fd``
    at its position (it stays open), never holding the whole text in memory. Raises ``OSError`` as a
    write does (``BrokenPipeError`` for a closed pipe). POSIX only."""

Verdict = Literal["clean", "findings", "incomplete"]

class RuleCompileError(ValueError):
    """Rule sources did not compile (see ``dragonfly_hybrid.errors``)."""

    diagnostics: list[tuple[str, int, int, str]]

class RulesFormatError(ValueError):
    """A blob is not a compiled rule set written by this version of dragonfly-hybrid."""

class ScanCancelled(Exception):
    """The scan was cancelled through its ``ScanProgress`` (``progress.cancel()``); it has no result."""

MetaValue = int | float | bool | str | bytes

@final
class Rules:
    """A compiled YARA-X rule set, shared read-only by every scanning thread."""

    @staticmethod
    def compile(sources: dict[str, str], *, route_by_filetype: bool = True) -> Rules:
        """Compile ``origin -> YARA source`` into one namespace (a duplicate rule name is an error).

        With ``route_by_filetype`` (the default), rules whose ``filetype`` metadata limits where
        they count are compiled apart, when the sources allow it, so that each file is scanned
        only with the rules that can count for its path. Results are the same either way.

        Raises ``RuleCompileError`` naming origin, line and column.
        """
    @staticmethod
    def deserialize(data: bytes) -> Rules:
        """Load a blob written by ``serialize``. A blob holds the rules' machine code, which runs in this
        process: load only blobs you trust as you would a program.

        Raises ``RulesFormatError`` if it is not one.
        """
    def serialize(self) -> bytes:
        """A blob that ``deserialize`` loads without compiling again (keeps ``hash``): the compiled rules
        with their machine code for this platform (elsewhere they are compiled from the blob's WASM)."""
    @property
    def hash(self) -> str:
        """Stable SHA-256 over the sorted (origin, source) pairs the set was compiled from."""
    @property
    def count(self) -> int: ...
    @property
    def filetype_classes(self) -> int | None:
        """How many filetype classes the set is routed into, or ``None`` when compiled whole."""
    @property
    def identifiers(self) -> list[str]: ...
    def __len__(self) -> int: ...
    def __repr__(self) -> str: ...

@final
class Limits:
    """Hostile-input limits; every one, when hit, produces a ``ScanIssue`` naming the member and the limit."""

    def __new__(
        cls,
        *,
        max_member_size: int | None = None,
        max_total_size: int | None = None,
        max_members: int | None = None,
        max_ratio: int | None = None,
        max_depth: int | None = None,
        timeout: float | None = None,
    ) -> Limits:
        """Each limit left out (or None) takes the core's default: 256 MB per member, 2 GB in all, 100 000
        members, 1000:1, depth 3, 10 s per file (``Limits()`` shows them; ``tests/test_api.py`` pins them)."""
    @property
    def max_member_size(self) -> int: ...
    @property
    def max_total_size(self) -> int: ...
    @property
    def max_members(self) -> int: ...
    @property
    def max_ratio(self) -> int: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def timeout(self) -> float: ...
    def __repr__(self) -> str: ...
    def __eq__(self, other: object, /) -> bool: ...

@final
class PatternMatch:
    """One match of one pattern: where it starts in the file and how long it is."""

    @property
    def identifier(self) -> str: ...
    @property
    def offset(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def data(self) -> bytes:
        """The first bytes of the match (at most 64)."""
    @property
    def line(self) -> int:
        """1-based line of the match's first byte (lines end at ``\\n``)."""
    @property
    def column(self) -> int:
        """1-based column of the match's first byte, counted in bytes from the start of its line."""
    @property
    def snippet(self) -> bytes:
        """The match's line around the match, without its line ending (at most 120 bytes)."""
    @property
    def snippet_offset(self) -> int:
        """Where the match starts within :attr:`snippet`."""
    def snippet_parts(self) -> tuple[str, str, str]:
        """:attr:`snippet` split as (before the match, the match, after it), each decoded as
        ``bytes.decode("utf-8", "backslashreplace")`` decodes it."""

@final
class RuleMatch:
    """A rule that matched a file (after the rule's ``filetype`` filter)."""

    @property
    def identifier(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def metadata(self) -> dict[str, MetaValue]: ...
    @property
    def weight(self) -> int: ...
    @property
    def patterns(self) -> list[PatternMatch]:
        """Matched patterns, at most 16 matches per pattern identifier."""

@final
class FileResult:
    """A scanned file that matched at least one rule."""

    @property
    def path(self) -> str:
        """Archive-relative path; members of nested archives are ``outer!/inner``."""
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the file's bytes; ``""`` from a ``Scanner`` made with ``digests=False``."""
    @property
    def is_text(self) -> bool:
        """Whether the file looks like text: its first 8 KiB hold no NUL byte and are UTF-8."""
    @property
    def score(self) -> int:
        """Sum of the weights of the rules that matched this file."""
    @property
    def matches(self) -> list[RuleMatch]: ...

@final
class ScanIssue:
    """A problem met while scanning. ``unscanned`` is True when content was left unscanned."""

    @property
    def path(self) -> str:
        """The member it concerns, or ``""`` for the distribution as a whole."""
    @property
    def kind(self) -> str:
        """A stable, kebab-case identifier, one of ``ISSUE_KINDS`` (see docs/security.md for each)."""
    @property
    def message(self) -> str: ...
    @property
    def unscanned(self) -> bool: ...

@final
class DistributionResult:
    """The outcome of one distribution (an archive, or a plain file)."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str | None: ...
    @property
    def format(self) -> str:
        """``tar.gz``, ``tar.bz2``, ``tar.xz``, ``tar.lzma``, ``tar.lz``, ``tar.zst``, ``tar``, ``zip``,
        ``gzip``, ``bzip2``, ``xz``, ``lzma``, ``lzip``, ``zstd`` or ``file``."""
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the distribution's bytes; ``""`` when they could not be read, or from a
        ``Scanner`` made with ``digests=False`` or ``digests="files"``."""
    @property
    def files_scanned(self) -> int: ...
    @property
    def bytes_scanned(self) -> int: ...
    @property
    def score(self) -> int:
        """Sum of the weights of the distinct rules that matched anywhere in the distribution."""
    @property
    def rules_matched(self) -> list[str]: ...
    @property
    def top_file(self) -> str | None: ...
    @property
    def files(self) -> list[FileResult]: ...
    @property
    def file_count(self) -> int:
        """``len(files)``, without building them."""
    @property
    def match_count(self) -> int:
        """The sum of ``len(f.matches)`` over ``files``, without building them."""
    def rule_file_counts(self) -> dict[str, tuple[int, int]]:
        """Every rule that matched: ``{identifier: (weight, files it matched)}``, without building
        ``files``."""
    def top_findings(self, n: int) -> list[tuple[FileResult, RuleMatch]]:
        """At most ``n`` (file, match) pairs: the heaviest rule first, then by path, then by rule
        identifier, then in scan order; only these are built. ``ValueError`` for a negative ``n``."""
    @property
    def issues(self) -> list[ScanIssue]: ...
    @property
    def complete(self) -> bool:
        """True when every byte of the distribution was scanned."""
    @property
    def verdict(self) -> Verdict: ...

@final
class SarifFindings:
    """The findings of a SARIF log, ranked, with their results written as JSON (``report.sarif_findings``
    builds it)."""

    def __new__(
        cls,
        targets: Sequence[
            tuple[str | None, bool, str | None, Sequence[tuple[DistributionResult, str, str | None]]]
        ],
        limit: int,
    ) -> SarifFindings:
        """``targets``: per target, its ``target`` as a JSON string (``None``: the report module renders
        its results), whether it scores below ``--min-score``, its ``relatedLocations`` as JSON (or
        ``None``), and its distributions, each with the project and version of its file name. At most
        ``limit`` findings are kept: the heaviest rule first, then target order, distribution name,
        member path and rule identifier."""
    def __len__(self) -> int: ...
    def rules(self) -> list[RuleMatch]:
        """The first match of each rule (identifier and namespace) among the findings, in their order."""
    def finding(self, index: int) -> tuple[int, int, FileResult, RuleMatch]:
        """Finding ``index``: its target's index, its distribution's index (over every target's
        distributions in order), the file and the match."""
    def results(
        self, descriptions: Mapping[tuple[str, str], str | None], indices: Mapping[str, int]
    ) -> list[str | None]:
        """Each finding's SARIF result as one line of JSON, given each rule's description (by identifier
        and namespace) and index; ``None`` where the report module must render it (a label or version
        that is not printable ASCII, a text snippet that is not UTF-8)."""

@final
class ReleaseResult:
    """One release: every distribution, scored as the Dragonfly mainframe expects."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def distributions(self) -> list[DistributionResult]: ...
    @property
    def score(self) -> int:
        """The maximum distribution score."""
    @property
    def rules_matched(self) -> list[str]: ...
    @property
    def inspector_url(self) -> str | None: ...
    @property
    def complete(self) -> bool: ...
    @property
    def verdict(self) -> Verdict: ...
    @property
    def failure_reason(self) -> str | None:
        """Why the release cannot be reported clean (``None`` unless the verdict is ``incomplete``)."""

@final
class ScanProgress:
    """Live counters of the scans it is passed to (``progress=``), and their cancel switch.

    Safe to read and cancel from any thread while a scan runs (the scan holds no GIL). One object may be
    passed to several scans: the counters add up and ``cancel()`` stops them all. After a scan that was
    not cancelled, ``files`` and ``bytes`` equal the sums of its ``files_scanned`` and ``bytes_scanned``.
    A cancelled scan stops within milliseconds, except that a YARA-X scan already running on one file
    finishes first (bounded by ``Limits.timeout``)."""

    def __new__(cls) -> ScanProgress: ...
    @property
    def files(self) -> int:
        """Files scanned so far."""
    @property
    def bytes(self) -> int:
        """Bytes of the files scanned so far."""
    @property
    def distributions(self) -> int:
        """Distributions whose scan has finished."""
    @property
    def cancelled(self) -> bool: ...
    def cancel(self) -> None:
        """Stop the scans using this object: they raise ``ScanCancelled`` promptly."""

@final
class DownloadBuffer:
    """One download's bytes: ``data`` is a ``bytearray`` of exactly ``size`` bytes, to be filled (e.g. by
    ``response.readinto(memoryview(buffer.data))``), then scanned (the Scanner takes the buffer as a
    distribution's data). Until it is filled it holds whatever its memory held, such as an earlier
    download's bytes: its memory is reused. When the buffer is dropped and nothing else holds its array,
    the array is kept for the next download of about its size (64 MiB at most over all kept arrays):
    new memory costs the kernel a page fault and a clearing per 4 KiB."""

    def __new__(cls, size: int) -> DownloadBuffer: ...
    @property
    def data(self) -> bytearray:
        """The buffer's bytes, ``size`` of them."""
    def __len__(self) -> int: ...
    @staticmethod
    def pooled() -> tuple[int, int]:
        """How many arrays, and how many bytes, are kept for the next downloads."""
    @staticmethod
    def free_pooled() -> int:
        """Free every kept array (when no download is expected for a while); returns the bytes freed."""

@final
class Scanner:
    """Scans distributions in parallel on its own thread pool, with the GIL released."""

    def __new__(
        cls,
        rules: Rules,
        limits: Limits | None = None,
        threads: int | None = None,
        *,
        fast_scan: bool = False,
        record_cache: bool = False,
        content_cache: bool = True,
        digests: bool | Literal["files"] = True,
    ) -> Scanner:
        """``fast_scan``: stop looking for a pattern after its first match when its rule only asks whether
        it occurs (same rules match; reports keep one match of such patterns). ``record_cache``: journal
        every newly scanned content for ``cache_export`` (not with ``fast_scan``). ``content_cache=False``:
        no content cache (same results; every file is scanned, only matching files are hashed), for a
        distribution scanned once; not with ``record_cache``, and ``cache_import`` raises ``ValueError``.
        ``digests=False``: reports leave ``sha256`` empty (``""``) for distributions and matched files,
        which saves hashing every distribution's bytes; for callers that never read the digests (the node).
        ``digests="files"``: only the matched files' (the distributions' left empty), as SARIF shows."""
    @property
    def rules(self) -> Rules: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def threads(self) -> int: ...
    @property
    def fast_scan(self) -> bool: ...
    @property
    def content_cache(self) -> bool: ...
    @property
    def digests(self) -> bool | Literal["files"]: ...
    @property
    def cache_stats(self) -> dict[str, int]:
        """``entries`` held in the content cache, ``hits`` (files answered from it), ``misses`` (files
        scanned by YARA-X)."""
    def cache_export(self) -> list[tuple[bytes, bytes]]:
        """The contents scanned since the last call, as (cache key, encoded matches) pairs: the key is a
        BLAKE3 key derived from the content's BLAKE3 hash, ``Rules.hash`` and, when the rules are routed
        by filetype, the rules its path was scanned with (never the SHA-256 that reports give). Raises
        ``ValueError`` unless the Scanner was created with ``record_cache=True``."""
    def cache_import(self, entries: Iterable[tuple[bytes, bytes]]) -> tuple[int, str | None]:
        """Load entries exported by a Scanner with the same rules (same ``Rules.hash``): those contents
        are not scanned again. Returns how many were loaded and why the first refused entry (one that
        does not fit this rule set) was refused, if any. Keys mix in ``Rules.hash``: the entries of
        another rule set (rules of the same names too) load but never answer for a content here. An
        entry that is not a (bytes, bytes) pair raises ``TypeError``, a key not 32 bytes long
        ``ValueError``."""
    # Every scan method takes ``progress=``: a ``ScanProgress`` to count into and to cancel the scan
    # with (it then raises ``ScanCancelled``). In the main thread, a signal handler that raises while a
    # scan runs (Ctrl-C's ``KeyboardInterrupt``) cancels it too, and its exception is raised.
    def scan_bytes(
        self,
        data: bytes | bytearray | DownloadBuffer,
        name: str,
        url: str | None = None,
        *,
        progress: ScanProgress | None = None,
    ) -> DistributionResult:
        """Scan one distribution held in memory: an archive (sdist, wheel, zip, egg, tarball; the format
        is detected from the bytes, never from ``name``) or a loose file. ``name`` is the file name shown
        in the result, ``url`` where it came from (kept in the result). Members are inflated in memory
        and scanned in parallel under the Scanner's limits; whatever a limit or a corrupt member left
        unscanned is an issue of the result (``complete`` False), never silently clean. Never raises for
        hostile input. A ``bytearray`` (or a :class:`DownloadBuffer`'s) is read in place, without a copy: it
        must not be written to until the call returns (as for hashlib and zlib, which also read it
        without the GIL)."""
    def scan_path(
        self, path: str | os.PathLike[str], name: str | None = None, *, progress: ScanProgress | None = None
    ) -> DistributionResult:
        """Scan the distribution in the file ``path``, like :meth:`scan_bytes` (``name`` defaults to the
        file's name). Raises ``FileNotFoundError`` when it does not exist, ``OSError`` when it is not
        a regular file or cannot be read, ``ValueError`` for a path with a NUL byte."""
    def scan_many(
        self,
        items: Iterable[tuple[str, bytes | bytearray | DownloadBuffer | str | os.PathLike[str], str | None]],
        *,
        progress: ScanProgress | None = None,
    ) -> list[DistributionResult]:
        """Scan ``(name, bytes, bytearray, DownloadBuffer or file path, url)`` items in parallel; results
        keep the input order. A path (a str or path-like) that cannot be read, or is not a regular
        file, gives an incomplete result with an ``unreadable`` issue."""
    def scan_release(
        self,
        name: str,
        version: str,
        distributions: Iterable[
            tuple[str, bytes | bytearray | DownloadBuffer | str | os.PathLike[str], str | None]
        ],
        *,
        progress: ScanProgress | None = None,
    ) -> ReleaseResult:
        """Scan the distributions of one release (items as for :meth:`scan_many`) and combine them:
        the release's score is the highest of its distributions', its rules the union, and it is
        complete only if every distribution is. Releases scanned from several threads at once share
        the scanner's threads: their distributions are queued, and at most ``threads`` of them are
        scanned at a time. To fetch a release from an index and scan it the way
        ``dragonfly-hybrid scan`` does, use :func:`dragonfly_hybrid.fetch_and_scan`."""
