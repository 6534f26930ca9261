"""``scan``'s progress display on stderr (rich), in a module of its own: imported only when the display
shows (stderr is a terminal, no ``--quiet``), so a scan without it does not pay for rich's import."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from dragonfly_hybrid._core import ScanProgress
from dragonfly_hybrid.pypi.index import ProgressCallback
from dragonfly_hybrid.report import human_size


class RichHooks:
    """Progress display for ``scan``, on stderr: one line per stage, one bar for all the bytes of a
    release's downloads and one per file, and while scanning the engine's live counters (distributions
    done of all, files and bytes scanned), read from its ``ScanProgress`` at every refresh."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.overall: TaskID = progress.add_task("starting", total=total)
        self.downloads: dict[str, TaskID] = {}
        # The current release's downloads together; downloads start on several threads at once.
        self.all_downloads: TaskID | None = None
        self.received: dict[str, int] = {}
        self.download_total: int | None = 0
        self.downloads_lock = threading.Lock()
        self.scan_task: TaskID | None = None

    def stage(self, text: str) -> None:
        if self.all_downloads is not None:  # a new stage: the downloads are over
            self.progress.remove_task(self.all_downloads)
            self.all_downloads = None
        self.progress.update(self.overall, description=text)

    def target_done(self) -> None:
        self.progress.advance(self.overall)

    def download(self, filename: str, size: int | None) -> ProgressCallback:
        with self.downloads_lock:
            if self.all_downloads is None:
                self.all_downloads = self.progress.add_task("  all downloads", total=0, download=True)
                self.received.clear()
                self.download_total = 0
            # One file of unknown size leaves the total unknown.
            known = self.download_total is not None and size is not None
            self.download_total = self.download_total + size if known else None  # type: ignore[operator]
            self.progress.update(self.all_downloads, total=self.download_total)
            task = self.progress.add_task(f"  {filename}", total=size, download=True)
            self.downloads[filename] = task
            self.received[filename] = 0
            overall = self.all_downloads

        def update(received: int, total: int | None) -> None:
            self.progress.update(task, completed=received, total=total or size)
            with self.downloads_lock:
                self.received[filename] = received
                self.progress.update(overall, completed=sum(self.received.values()))

        return update

    def downloaded(self, filename: str) -> None:
        with self.downloads_lock:
            task = self.downloads.pop(filename, None)
        if task is not None:
            self.progress.remove_task(task)

    def scanning(self, progress: ScanProgress, distributions: int) -> None:
        self.scan_task = self.progress.add_task(
            "  scanned",
            total=None,
            scan=progress,
            distributions=distributions,
            base=(progress.distributions, progress.files, progress.bytes),
        )

    def scanned(self) -> None:
        if self.scan_task is not None:
            self.progress.remove_task(self.scan_task)
            self.scan_task = None


class _AmountColumn(ProgressColumn):
    """Bytes for a download, the engine's counters while scanning, ``done/total targets`` for the overall
    task."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("download"):
            return self._bytes.render(task)
        live: ScanProgress | None = task.fields.get("scan")
        if live is not None:
            distributions, files, size = task.fields["base"]
            return Text(
                f"{live.distributions - distributions}/{task.fields['distributions']} distributions, "
                f"{live.files - files} files, {human_size(live.bytes - size)}",
                style="progress.download",
            )
        return Text(f"{int(task.completed)}/{int(task.total or 0)} targets", style="progress.download")


@contextmanager
def progress_display(total: int) -> Iterator[RichHooks]:
    """The display for ``total`` targets, shown while the context lasts (then cleared)."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _AmountColumn(),
        TimeElapsedColumn(),
    )
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, redirect_stdout=False) as progress:
        yield RichHooks(progress, total)
