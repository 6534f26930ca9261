//! The scanning engine, the public face of the core: a rayon pool for parallelism inside and
//! across distributions, the limits, and the file scanner ([`crate::service`]) the walker
//! ([`crate::walk`]) hands every file to. It owns both; neither knows it.

use std::collections::VecDeque;
use std::io::Read;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::cache::{self, CacheEntryError};
use crate::control::ScanControl;
use crate::issue::{Issue, IssueKind};
use crate::limits::Limits;
use crate::report::{DistributionReport, ReleaseReport};
use crate::rules::RuleSet;
use crate::service::{CacheStats, Digests, FileScanner};
use crate::walk::DistScan;

/// Bytes of one distribution to scan.
pub enum Input<'a> {
    Bytes(&'a [u8]),
    Owned(Vec<u8>),
    Path(PathBuf),
}

impl Input<'_> {
    /// Size in bytes when known without reading (for scheduling only).
    fn size_hint(&self) -> u64 {
        match self {
            Input::Bytes(bytes) => bytes.len() as u64,
            Input::Owned(bytes) => bytes.len() as u64,
            Input::Path(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
        }
    }
}

/// One distribution to scan: a display name (normally the file name), its download URL if any,
/// and its bytes.
pub struct DistInput<'a> {
    pub name: String,
    pub url: Option<String>,
    pub input: Input<'a>,
}

/// How often a caller waiting for its scan is asked whether to stop it (see [`Interrupted`]).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Asked on the calling thread every [`POLL_INTERVAL`] while it waits for its scan: once it answers
/// true, the scan's control is cancelled (the scan stops at its next file, and the call returns
/// [`EngineError::Cancelled`]). The Python binding looks for signals there (Ctrl-C), which only the
/// thread Python runs its signal handlers on can do; [`never`] for callers with nothing to look for.
pub type Interrupted<'a> = &'a mut dyn FnMut() -> bool;

/// An [`Interrupted`] that never interrupts (`&mut never`).
pub fn never() -> bool {
    false
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot start {threads} scanning threads: {message}")]
    ThreadPool { threads: usize, message: String },
    #[error("{0} scanning threads asked for; at most {MAX_THREADS}")]
    TooManyThreads(usize),
    #[error("the scan was cancelled")]
    Cancelled,
}

/// Threads an engine starts when none are asked for: the cores this process may run on (CPU
/// affinity and cgroup quotas respected), at least one.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Most scanning threads an engine starts: each holds its own YARA-X scanners and buffers, and
/// far past the cores they add memory, not speed (100 000 asked for once started hundreds and hung).
pub const MAX_THREADS: usize = 1024;

pub struct Engine {
    files: FileScanner,
    limits: Limits,
    pool: rayon::ThreadPool,
    releases: Arc<ReleaseQueue>,
}

impl Engine {
    /// `threads`: worker threads; `None` or 0 means every available core.
    pub fn new(rules: RuleSet, limits: Limits, threads: Option<usize>) -> Result<Self, EngineError> {
        let threads = threads.filter(|&n| n > 0).unwrap_or_else(default_threads);
        if threads > MAX_THREADS {
            return Err(EngineError::TooManyThreads(threads));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("dragonfly-scan-{i}"))
            .build()
            .map_err(|err| EngineError::ThreadPool { threads, message: err.to_string() })?;
        let releases = Arc::new(ReleaseQueue::default());
        Ok(Self { files: FileScanner::new(rules, limits.timeout), limits, pool, releases })
    }

    /// Stop looking for a pattern after its first match when the rule only asks whether it
    /// occurs. Which rules match is unchanged; reports keep only the first match of such patterns.
    /// For callers that need rule identities only, such as the node.
    pub fn with_fast_scan(mut self, yes: bool) -> Self {
        self.files.fast_scan = yes;
        self
    }

    /// Without the content cache every file is scanned, even one whose content was scanned before,
    /// and only files that match are hashed: for one distribution scanned once (nothing to share
    /// contents with), hashing every file cost more than YARA-X on small files with light rules.
    /// Results are the same either way.
    pub fn with_content_cache(mut self, yes: bool) -> Self {
        self.files.caching = yes;
        self
    }

    pub fn content_cache(&self) -> bool {
        self.files.caching
    }

    /// Which `sha256` fields reports fill (the default: [`Digests::All`]); the others are left empty.
    /// For callers that never read them (the node), hashing every distribution's bytes cost about 5%
    /// of a scan of real releases; a big wheel's own digest, about 7% of its scan. Matches are the same
    /// either way.
    pub fn with_digests(mut self, digests: Digests) -> Self {
        self.files.digests = digests;
        self
    }

    pub fn digests(&self) -> Digests {
        self.files.digests
    }

    /// Record every content scanned from now on, for [`Engine::take_cache_journal`].
    pub fn with_cache_journal(mut self, yes: bool) -> Self {
        self.files.journal = yes.then(|| Mutex::new(Vec::new()));
        self
    }

    pub fn fast_scan(&self) -> bool {
        self.files.fast_scan
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.files.stats()
    }

    /// The contents scanned since the last call, as (cache key, encoded matches) to persist, or
    /// `None` when the engine does not journal. At most [`crate::CACHE_ENTRIES`] are kept between calls.
    pub fn take_cache_journal(&self) -> Option<Vec<([u8; 32], Vec<u8>)>> {
        let taken = self.files.take_journal()?;
        Some(taken.into_iter().map(|(hash, hits)| (hash, cache::encode(&self.files.rules, &hits))).collect())
    }

    /// Load persisted entries (as returned by [`Engine::take_cache_journal`] of an engine with
    /// the same rule set) so that those contents are not scanned again. Stops when the cache is
    /// full. Returns how many entries were loaded; an entry that cannot be decoded for this rule
    /// set is not loaded, and the first such error is returned with the count.
    pub fn import_cache<'a, I>(&self, entries: I) -> (usize, Option<CacheEntryError>)
    where
        I: IntoIterator<Item = ([u8; 32], &'a [u8])>,
    {
        let (mut loaded, mut first_error) = (0, None);
        for (hash, data) in entries {
            match cache::decode(&self.files.rules, data) {
                Ok(hits) => {
                    if !self.files.insert(hash, hits.into()) {
                        break;
                    }
                    loaded += 1;
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        (loaded, first_error)
    }

    pub fn rules(&self) -> &RuleSet {
        &self.files.rules
    }
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Scan one distribution, in parallel inside it.
    pub fn scan(&self, dist: DistInput<'_>) -> DistributionReport {
        self.scan_with(dist, &ScanControl::new(), &mut never).expect("nothing cancels a private control")
    }

    /// [`Engine::scan`], counting into `control` and stopping early when it is cancelled (or when
    /// `interrupted` says so).
    pub fn scan_with(
        &self,
        dist: DistInput<'_>,
        control: &ScanControl,
        interrupted: Interrupted<'_>,
    ) -> Result<DistributionReport, EngineError> {
        self.run_polling(control, interrupted, || self.scan_in_pool(dist, control))
            .ok_or(EngineError::Cancelled)
    }

    /// `job()` run on the pool while the calling thread waits, asking `interrupted` every
    /// [`POLL_INTERVAL`]; once it answers true, `control` is cancelled and the wait goes on until the
    /// job has returned (it borrows from the caller). A panic in the job goes on unwinding here.
    fn run_polling<T: Send>(
        &self,
        control: &ScanControl,
        interrupted: Interrupted<'_>,
        job: impl FnOnce() -> T + Send,
    ) -> T {
        if self.pool.current_thread_index().is_some() {
            // Called on the pool itself (a Rust caller): waiting here would hold a thread the job needs.
            return job();
        }
        let mut result = None;
        self.pool.in_place_scope(|scope| {
            let (done, finished) = mpsc::channel();
            scope.spawn(move |_| {
                let _ = done.send(job());
            });
            loop {
                match finished.recv_timeout(POLL_INTERVAL) {
                    Ok(returned) => {
                        result = Some(returned);
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if !control.is_cancelled() && interrupted() {
                            control.cancel();
                        }
                    }
                    // The job panicked: the scope's end takes its panic up.
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        });
        result.expect("a job that returned sent its result")
    }

    /// Scan several distributions, in parallel across and inside them; results keep input order.
    pub fn scan_many(&self, dists: Vec<DistInput<'_>>) -> Vec<DistributionReport> {
        self.scan_many_with(dists, &ScanControl::new(), &mut never)
            .expect("nothing cancels a private control")
    }

    /// [`Engine::scan_many`], counting into `control` and stopping early when it is cancelled.
    ///
    /// One driver per thread takes the next distribution, largest first, and scans it with the
    /// whole pool helping inside it. So at most `threads` distributions are held in memory at once
    /// (a parallel iterator would let a thread waiting inside one distribution start another, and
    /// another), and the largest ones do not start last and leave one thread working alone.
    pub fn scan_many_with(
        &self,
        dists: Vec<DistInput<'_>>,
        control: &ScanControl,
        interrupted: Interrupted<'_>,
    ) -> Result<Vec<DistributionReport>, EngineError> {
        let count = dists.len();
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(dists[i].input.size_hint()));
        let slots: Vec<Mutex<Option<DistInput<'_>>>> =
            dists.into_iter().map(|d| Mutex::new(Some(d))).collect();
        let reports: Vec<Mutex<Option<DistributionReport>>> = (0..count).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        self.run_polling(control, interrupted, || {
            rayon::scope(|scope| {
                for _ in 0..self.threads().min(count) {
                    scope.spawn(|_| {
                        while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                            let dist = slots[i].lock().expect("slot lock").take().expect("taken once");
                            let Some(report) = self.scan_in_pool(dist, control) else { return };
                            *reports[i].lock().expect("report lock") = Some(report);
                        }
                    });
                }
            });
        });
        // A distribution is left without a report only when the scan was cancelled.
        reports
            .into_iter()
            .map(|r| r.into_inner().expect("report lock").ok_or(EngineError::Cancelled))
            .collect()
    }

    /// Scan every distribution of a release and score it as the Dragonfly mainframe expects.
    pub fn scan_release(&self, name: &str, version: &str, dists: Vec<DistInput<'_>>) -> ReleaseReport {
        self.scan_release_with(name, version, dists, &ScanControl::new(), &mut never)
            .expect("nothing cancels a private control")
    }

    /// [`Engine::scan_release`], counting into `control` and stopping early when it is cancelled.
    ///
    /// Releases scanned at once from several threads (the node scans a few while others download)
    /// share one queue of distributions and at most `threads` drivers, as one [`Engine::scan_many`]
    /// would. When each call ran a `scan_many` of its own, 4 callers on 2 threads scanned the
    /// benchmark corpus at 0.960-0.990x the speed of one `scan_many` over it (mean 0.978, seven
    /// processes; up to 8 distributions in flight instead of 2); sharing the drivers, at
    /// 0.983-0.997x (mean 0.991, ten).
    /// Within a release the largest distribution is queued first; releases are taken in the order
    /// they come. The caller blocks until its release is done; it must not be a thread of this
    /// engine's pool (none of the package's callers is).
    pub fn scan_release_with(
        &self,
        name: &str,
        version: &str,
        dists: Vec<DistInput<'_>>,
        control: &ScanControl,
        interrupted: Interrupted<'_>,
    ) -> Result<ReleaseReport, EngineError> {
        let waiter = Arc::new(ReleaseWaiter::new(dists.len()));
        let mut order: Vec<(u64, usize, DistInput<'_>)> =
            dists.into_iter().enumerate().map(|(i, d)| (d.input.size_hint(), i, d)).collect();
        order.sort_by_key(|&(size, i, _)| (std::cmp::Reverse(size), i));
        // Waits (also when unwinding) until no driver holds a task that borrows from this call.
        let pending = PendingRelease { queue: &self.releases, waiter: &waiter };
        {
            let mut state = self.releases.lock();
            for (_, index, dist) in order {
                let task = Task::new(dist, control, &waiter, index);
                waiter.lock().1 += 1;
                state.tasks.push_back(task);
            }
            // A driver for each queued task while threads are free; counted and spawned under the
            // lock, so that the count is always the drivers running.
            let mut spawned = 0;
            while state.drivers < self.threads() && spawned < state.tasks.len() {
                state.drivers += 1;
                spawned += 1;
                let queue = Arc::clone(&self.releases);
                let engine = EnginePtr(self);
                self.pool.spawn(move || drive(engine, queue));
            }
        }
        let distributions = pending.wait(control, interrupted)?;
        Ok(ReleaseReport { name: name.to_owned(), version: version.to_owned(), distributions })
    }

    /// One distribution's report; `None` when `control` was cancelled before it was complete.
    fn scan_in_pool(&self, dist: DistInput<'_>, control: &ScanControl) -> Option<DistributionReport> {
        if control.is_cancelled() {
            return None;
        }
        let DistInput { name, url, input } = dist;
        let owned;
        let from_file;
        let data: &[u8] = match input {
            Input::Bytes(bytes) => bytes,
            Input::Owned(bytes) => {
                owned = bytes;
                &owned
            }
            // With the content cache on, a file is read, never mapped: a mapping shows another writer's
            // changes, so the bytes a content's key was hashed from could differ from those YARA-X then
            // scans, and the answer for the second kept under the first's key would answer for the
            // first wherever it appears (another archive, a later run through the store).
            Input::Path(path) => {
                match read_limited(&path, self.limits.max_total_size, control, !self.files.caching) {
                    Ok(bytes) => {
                        from_file = bytes;
                        &from_file
                    }
                    Err(issue) => {
                        control.add_distribution();
                        return Some(DistributionReport::unreadable(name, url, issue));
                    }
                }
            }
        };
        let report = DistScan::new(&self.files, &self.limits, self.threads(), &name, control).run_as(
            data,
            name.clone(),
            url,
            None,
        )?;
        control.add_distribution();
        Some(report)
    }

    /// Walk `data` as `container` whatever its magic bytes say (for the fuzz targets).
    pub(crate) fn walk_as(&self, container: crate::Container, data: &[u8]) -> DistributionReport {
        self.pool.install(|| {
            DistScan::new(&self.files, &self.limits, self.threads(), "fuzz", &ScanControl::new())
                .run_as(data, "fuzz".into(), None, Some(container))
                .expect("nothing cancels a private control")
        })
    }
}

/// Distributions of the releases being scanned, and how many drivers take from them.
#[derive(Default)]
struct ReleaseQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    tasks: VecDeque<Task>,
    drivers: usize,
}

impl ReleaseQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent queue.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One distribution of a release, borrowed from the `scan_release_with` call that queued it.
struct Task {
    name: String,
    url: Option<String>,
    input: TaskInput,
    control: *const ScanControl,
    waiter: Arc<ReleaseWaiter>,
    index: usize,
}

enum TaskInput {
    Bytes { ptr: *const u8, len: usize },
    Owned(Vec<u8>),
    Path(PathBuf),
}

// SAFETY: the pointers borrow from a `scan_release_with` call that does not return (nor unwind
// past `PendingRelease`) before the task is finished or taken back from the queue, and what they
// point to (bytes, a `ScanControl`) is read-only or thread-safe.
unsafe impl Send for Task {}

impl Task {
    fn new(dist: DistInput<'_>, control: &ScanControl, waiter: &Arc<ReleaseWaiter>, index: usize) -> Self {
        let input = match dist.input {
            Input::Bytes(bytes) => TaskInput::Bytes { ptr: bytes.as_ptr(), len: bytes.len() },
            Input::Owned(bytes) => TaskInput::Owned(bytes),
            Input::Path(path) => TaskInput::Path(path),
        };
        Self { name: dist.name, url: dist.url, input, control, waiter: Arc::clone(waiter), index }
    }
}

type TaskOutcome = std::thread::Result<Option<DistributionReport>>;

/// The reports of one release's distributions, filled in by the drivers, and how many of its tasks
/// are queued or being scanned.
struct ReleaseWaiter {
    slots: Mutex<(Vec<Option<TaskOutcome>>, usize)>,
    finished: Condvar,
}

impl ReleaseWaiter {
    fn new(count: usize) -> Self {
        Self { slots: Mutex::new(((0..count).map(|_| None).collect(), 0)), finished: Condvar::new() }
    }

    fn lock(&self) -> MutexGuard<'_, (Vec<Option<TaskOutcome>>, usize)> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn finish(&self, index: usize, outcome: TaskOutcome) {
        let mut slots = self.lock();
        slots.0[index] = Some(outcome);
        slots.1 -= 1;
        if slots.1 == 0 {
            self.finished.notify_all();
        }
    }
}

/// A release queued by `scan_release_with`: waiting for it (or dropping it, when the call unwinds)
/// returns only once no driver holds one of its tasks.
struct PendingRelease<'a> {
    queue: &'a ReleaseQueue,
    waiter: &'a Arc<ReleaseWaiter>,
}

impl PendingRelease<'_> {
    /// The release's reports once every task is finished, asking `interrupted` every
    /// [`POLL_INTERVAL`] meanwhile (once it answers true, `control` is cancelled).
    fn wait(
        self,
        control: &ScanControl,
        interrupted: Interrupted<'_>,
    ) -> Result<Vec<DistributionReport>, EngineError> {
        let outcomes = std::mem::take(&mut self.block_polling(control, interrupted).0);
        drop(self);
        let mut reports = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            match outcome.expect("every task finished") {
                Ok(Some(report)) => reports.push(report),
                Ok(None) => return Err(EngineError::Cancelled),
                Err(panic) => resume_unwind(panic),
            }
        }
        Ok(reports)
    }

    fn block(&self) -> MutexGuard<'_, (Vec<Option<TaskOutcome>>, usize)> {
        self.block_polling(&ScanControl::new(), &mut never)
    }

    fn block_polling(
        &self,
        control: &ScanControl,
        interrupted: Interrupted<'_>,
    ) -> MutexGuard<'_, (Vec<Option<TaskOutcome>>, usize)> {
        let mut slots = self.waiter.lock();
        while slots.1 > 0 {
            let (next, waited) = self
                .waiter
                .finished
                .wait_timeout(slots, POLL_INTERVAL)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            slots = next;
            if waited.timed_out() && slots.1 > 0 && !control.is_cancelled() {
                // Asked without the lock: a driver finishing a task takes it, and the question may take
                // long (the binding waits for the GIL, then runs Python's signal handlers, which may scan).
                drop(slots);
                if interrupted() {
                    control.cancel();
                }
                slots = self.waiter.lock();
            }
        }
        slots
    }
}

impl Drop for PendingRelease<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return; // `wait` has already waited
        }
        // Unwinding: take back the tasks no driver has started, then wait for the others.
        let taken: VecDeque<Task> = {
            let mut state = self.queue.lock();
            let (mine, others): (VecDeque<Task>, VecDeque<Task>) = std::mem::take(&mut state.tasks)
                .into_iter()
                .partition(|task| Arc::ptr_eq(&task.waiter, self.waiter));
            state.tasks = others;
            mine
        };
        for task in taken {
            self.waiter.finish(task.index, Ok(None));
        }
        drop(self.block());
    }
}

/// The engine, for drivers on its pool: it is only used while a task is held, whose caller borrows
/// the engine until the task is finished.
struct EnginePtr(*const Engine);

// SAFETY: `Engine` is `Sync`; see the type's comment for the lifetime.
unsafe impl Send for EnginePtr {}

/// A driver: scan the next queued distribution (the pool helping inside it), then hand its place
/// to a new driver job, or give it up when the queue is empty.
///
/// One distribution a job, not a loop over the queue: a worker waiting inside a distribution runs
/// other jobs of the pool meanwhile, and a looping driver it picked up there would hold that
/// distribution's report back until the whole queue had drained.
fn drive(engine: EnginePtr, queue: Arc<ReleaseQueue>) {
    let task = {
        let mut state = queue.lock();
        match state.tasks.pop_front() {
            Some(task) => task,
            None => {
                state.drivers -= 1;
                return;
            }
        }
    };
    let Task { name, url, input, control, waiter, index } = task;
    // SAFETY: the caller that queued the task waits for it (see `Task`), and with it the engine.
    let (engine, control) = unsafe { (&*engine.0, &*control) };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let input = match input {
            // SAFETY: as above: the bytes outlive the task.
            TaskInput::Bytes { ptr, len } => Input::Bytes(unsafe { std::slice::from_raw_parts(ptr, len) }),
            TaskInput::Owned(bytes) => Input::Owned(bytes),
            TaskInput::Path(path) => Input::Path(path),
        };
        engine.scan_in_pool(DistInput { name, url, input }, control)
    }));
    // Spawned before the task is finished: once it is, its caller may return and drop the engine.
    let next = EnginePtr(engine);
    engine.pool.spawn(move || drive(next, queue));
    waiter.finish(index, outcome);
}

/// Bytes read from a file at a time, checking for a cancel in between.
const FILE_CHUNK: usize = 8 << 20;

/// A distribution's bytes from a file: mapped when it is large, else read into memory.
enum FileBytes {
    Read(Vec<u8>),
    #[cfg(unix)]
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Read(bytes) => bytes,
            #[cfg(unix)]
            FileBytes::Mapped(map) => map,
        }
    }
}

/// The file at `path`, when it is within `limit` bytes: mapped ([`map_whole`]) when `map` allows, or
/// read in chunks so that a cancel is seen (it then reads no further, and the walk that follows stops at
/// once).
fn read_limited(path: &PathBuf, limit: u64, control: &ScanControl, map: bool) -> Result<FileBytes, Issue> {
    let unreadable = |err: std::io::Error| {
        Issue::new("", IssueKind::Unreadable, format!("cannot read {}: {err}", path.display()))
    };
    let (mut file, size) = open_regular(path).map_err(unreadable)?;
    if size > limit {
        return Err(Issue::new(
            "",
            IssueKind::TotalSizeExceeded,
            format!("{} is {size} bytes, over the total-size limit of {limit} bytes", path.display()),
        ));
    }
    if let Some(map) = map.then(|| map_whole(&file, size)).flatten() {
        return Ok(map);
    }
    let mut data = Vec::with_capacity(size as usize);
    while !control.is_cancelled() {
        // The size was the file's when it was opened: one still growing (or a `/proc` file, which says 0
        // or less than it holds) is read no further than a chunk past the limit (whole chunks: some
        // `/proc` files refuse reads of other sizes).
        let read = (&mut file).take(FILE_CHUNK as u64).read_to_end(&mut data).map_err(unreadable)?;
        if data.len() as u64 > limit {
            return Err(Issue::new(
                "",
                IssueKind::TotalSizeExceeded,
                format!("{} holds more than the total-size limit of {limit} bytes", path.display()),
            ));
        }
        if read == 0 {
            break;
        }
    }
    Ok(FileBytes::Read(data))
}

/// `path` opened for reading, and its size, if it is a regular file once open: a FIFO put in a file's
/// place after it was listed (a directory scan) would block the read forever, and a device would read
/// without end. Opened without blocking (which regular files ignore), and checked on the open file itself.
fn open_regular(path: &PathBuf) -> std::io::Result<(std::fs::File, u64)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok((file, meta.len()))
}

/// Files this large are mapped rather than read: a mapping shares the page cache's pages, where reading
/// copies them into as many new ones, and on a virtual machine a new page can cost a trip to the host.
/// Reading a cached 73 MB wheel took 45-180 ms on a 2-core VM; mapping it and touching every page,
/// 12 ms. Smaller files are read into memory the allocator has mostly faulted in already.
const MAP_MIN: u64 = 1 << 20;

/// `file` mapped whole, when it is a regular file of at least [`MAP_MIN`] bytes that is still `size`
/// bytes long once mapped; `None` (it is then read) otherwise, or when it cannot be mapped.
#[cfg(unix)]
fn map_whole(file: &std::fs::File, size: u64) -> Option<FileBytes> {
    let unchanged = |file: &std::fs::File| file.metadata().is_ok_and(|m| m.is_file() && m.len() == size);
    if size < MAP_MIN || !unchanged(file) {
        return None;
    }
    // SAFETY: the mapping is read-only and private. Its bytes are read as an attacker's bytes always are
    // (every length and offset checked), so a file changed while it is scanned gives wrong bytes, not
    // undefined reads; one truncated while it is scanned ends the process with SIGBUS, as it does
    // YARA's and yara-x's own file scans: never a clean report (docs/security.md).
    let map = unsafe { memmap2::MmapOptions::new().len(usize::try_from(size).ok()?).map(file) }.ok()?;
    // The walk reads the end first (a zip's directory), then the members on every thread: a file not
    // in the page cache is read ahead whole (for a cached one this costs 0.1 ms).
    let _ = map.advise(memmap2::Advice::WillNeed);
    unchanged(file).then_some(FileBytes::Mapped(map))
}

#[cfg(not(unix))]
fn map_whole(_file: &std::fs::File, _size: u64) -> Option<FileBytes> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(name: &str, content: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("dfh-engine-{}-{name}", std::process::id()));
        std::fs::write(&path, content).expect("write a temporary file");
        path
    }

    #[test]
    fn a_large_file_is_mapped_when_allowed_and_a_small_one_read_with_the_same_bytes() {
        let content: Vec<u8> = (0..MAP_MIN as usize + 3).map(|i| (i * 7 % 251) as u8).collect();
        let control = ScanControl::new();
        for (name, size, mapped) in [("large", content.len(), cfg!(unix)), ("small", 1000, false)] {
            let path = file_with(name, &content[..size]);
            let bytes = read_limited(&path, u64::MAX, &control, true);
            let read = read_limited(&path, u64::MAX, &control, false);
            std::fs::remove_file(&path).expect("remove the temporary file");
            let (bytes, read) = (bytes.expect("the file is read"), read.expect("the file is read"));
            assert_eq!(&*bytes, &content[..size], "{name}");
            assert_eq!(!matches!(bytes, FileBytes::Read(_)), mapped, "{name}");
            // Not allowed to map (the content cache is on): read, the same bytes.
            assert!(matches!(read, FileBytes::Read(_)) && *read == *bytes, "{name}");
        }
    }

    #[test]
    fn a_file_holding_more_than_its_size_is_read_no_further_than_the_limit() {
        // `/proc` files say 0 bytes and hold more (this one: a line per mapping of this process).
        let path = PathBuf::from("/proc/self/maps");
        if !path.exists() {
            return; // not Linux
        }
        let refused = read_limited(&path, 16, &ScanControl::new(), true);
        let Err(issue) = refused else { panic!("read past the limit") };
        assert_eq!(issue.kind, IssueKind::TotalSizeExceeded);
        let read = read_limited(&path, 1 << 30, &ScanControl::new(), true).expect("the file is read");
        assert!(read.len() > 16);
    }

    #[test]
    fn a_file_over_the_limit_is_neither_mapped_nor_read() {
        let path = file_with("over", &[b'x'; 4096]);
        let refused = read_limited(&path, 4095, &ScanControl::new(), true);
        std::fs::remove_file(&path).expect("remove the temporary file");
        let Err(issue) = refused else { panic!("a file over the limit was read") };
        assert_eq!(issue.kind, IssueKind::TotalSizeExceeded);
    }
}
