//! Download buffers reused.
//!
//! The node downloads every distribution into memory. A fresh buffer of megabytes is fresh memory:
//! the C allocator maps it anew and returns it when it is freed, so the kernel faulted in and cleared
//! every page of every download again while copying the socket's bytes into it. Here each buffer is a
//! `bytearray` (Python's reads fill it in C, with the GIL released, and the scanner reads it without a
//! copy) that goes back to a pool when its [`DownloadBuffer`] is dropped, if nothing else holds it; the
//! next download of a similar size takes it. In the node benchmark's rounds (one process, as a node that
//! keeps running): a fifth to a third fewer page faults, 0.95-1.0x the CPU, and a lower peak RSS
//! (fewer new allocations for glibc's per-thread arenas to grow by).
//!
//! What the pool keeps is bounded by `POOL_BYTES`; the buffers given back longest ago go first.
//! A pooled array's bytes are left over from an earlier download: a download that does not fill its
//! buffer exactly is an error, and its buffer is never scanned.

use std::collections::VecDeque;
use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

/// Smaller downloads come from the allocator's small-object pages, which it reuses as they are.
const MIN_POOLED: usize = 64 * 1024;
/// What the pool keeps for the next downloads, at most.
const POOL_BYTES: usize = 64 * 1024 * 1024;

/// Arrays of at least `MIN_POOLED` bytes given back, oldest first, with the size each can hold.
struct Pool {
    arrays: VecDeque<(usize, Py<PyByteArray>)>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool { arrays: VecDeque::new(), bytes: 0 });

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Pool {
    /// The pooled array that fits `size` most closely, if one can be resized to it in place. CPython
    /// resizes a `bytearray` within its allocation without copying while the new size is at least half
    /// of it; an array that can hold `capacity` bytes has `capacity + 1` allocated.
    fn take(&mut self, size: usize) -> Option<(usize, Py<PyByteArray>)> {
        let fits = |capacity: usize| capacity >= size && size >= capacity.div_ceil(2);
        let (index, _) = self
            .arrays
            .iter()
            .enumerate()
            .filter(|(_, (capacity, _))| fits(*capacity))
            .min_by_key(|(_, (capacity, _))| *capacity)?;
        let taken = self.arrays.remove(index)?;
        self.bytes -= taken.0;
        Some(taken)
    }

    /// Keep `array`; what no longer fits is handed back to be freed (outside the lock).
    fn give(&mut self, capacity: usize, array: Py<PyByteArray>) -> Vec<Py<PyByteArray>> {
        if !(MIN_POOLED..=POOL_BYTES).contains(&capacity) {
            return vec![array];
        }
        self.arrays.push_back((capacity, array));
        self.bytes += capacity;
        let mut evicted = Vec::new();
        while self.bytes > POOL_BYTES {
            let (capacity, array) = self.arrays.pop_front().expect("bytes are counted");
            self.bytes -= capacity;
            evicted.push(array);
        }
        evicted
    }
}

/// A `size`-byte array whose contents are whatever its memory held: nothing reads it before it is
/// filled. (`bytearray(size)` would clear every byte first, with the GIL held.)
fn uninitialised_array(py: Python<'_>, size: usize) -> PyResult<Py<PyByteArray>> {
    let length = ffi::Py_ssize_t::try_from(size)
        .map_err(|_| PyValueError::new_err(format!("a download buffer of {size} bytes is too large")))?;
    // SAFETY: a NULL source makes CPython allocate `size` bytes without copying from anywhere; the
    // returned reference is new (owned), or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyByteArray_FromStringAndSize(std::ptr::null(), length))
            .map(|array| array.cast_into_unchecked::<PyByteArray>().unbind())
    }
}

/// One download's bytes: `data` is a `bytearray` of exactly the requested size, to be filled (for
/// instance by `response.readinto(memoryview(buffer.data))`) and then scanned. Its memory may come
/// from an earlier download: until it is filled it holds that download's bytes, or any others.
///
/// When the buffer is dropped and nothing else holds its array, the array is kept for the next
/// download of about its size (up to 64 MiB over all kept arrays).
#[pyclass(frozen, module = "dragonfly_hybrid._core")]
pub struct DownloadBuffer {
    /// `None` only while it is dropped.
    array: Option<Py<PyByteArray>>,
    /// What the array can hold without CPython reallocating it (the size it was made with).
    capacity: usize,
}

impl DownloadBuffer {
    pub(crate) fn array<'py>(&self, py: Python<'py>) -> Bound<'py, PyByteArray> {
        self.array.as_ref().expect("only taken when dropped").bind(py).clone()
    }
}

#[pymethods]
impl DownloadBuffer {
    #[new]
    fn new(py: Python<'_>, size: usize) -> PyResult<Self> {
        let pooled = if size >= MIN_POOLED { pool().take(size) } else { None };
        let Some((capacity, array)) = pooled else {
            return Ok(Self { array: Some(uninitialised_array(py, size)?), capacity: size });
        };
        let length = ffi::Py_ssize_t::try_from(size).expect("no larger than a pooled array");
        // SAFETY: `array` is a bytearray that only the pool held (so nothing exports its buffer and the
        // resize cannot fail for that reason); the GIL is held.
        if unsafe { ffi::PyByteArray_Resize(array.as_ptr(), length) } != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(Self { array: Some(array), capacity })
    }

    /// The buffer's bytes: a `bytearray` of the size the buffer was made with.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyByteArray> {
        self.array(py)
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.array(py).len()
    }

    /// How many arrays, and how many bytes, are kept for the next downloads.
    #[staticmethod]
    fn pooled() -> (usize, usize) {
        let pool = pool();
        (pool.arrays.len(), pool.bytes)
    }

    /// Free every kept array (when no download is expected for a while); returns the bytes freed.
    #[staticmethod]
    fn free_pooled() -> usize {
        let (arrays, bytes) = {
            let mut pool = pool();
            (std::mem::take(&mut pool.arrays), std::mem::take(&mut pool.bytes))
        };
        drop(arrays); // with the GIL held (a static method's caller holds it), outside the lock
        bytes
    }
}

impl Drop for DownloadBuffer {
    fn drop(&mut self) {
        let Some(array) = self.array.take() else { return };
        // Not while the interpreter shuts down: the array is then only released. No Python code runs
        // here: a buffer may be dropped while an exception propagates.
        Python::try_attach(|_| {
            // SAFETY: C reads of a live bytearray, with the GIL held; neither can fail.
            let (references, size) =
                unsafe { (ffi::Py_REFCNT(array.as_ptr()), ffi::PyByteArray_Size(array.as_ptr())) };
            // Held elsewhere (a report, a test): its holder frees it; reusing it would change bytes
            // someone may still read. Resized by its user out of what it was made for: CPython may
            // have reallocated it, to a size not known here.
            let size = usize::try_from(size).unwrap_or(usize::MAX);
            if references != 1 || size > self.capacity || size < self.capacity.div_ceil(2) {
                return;
            }
            let evicted = pool().give(self.capacity, array);
            drop(evicted); // freed with the GIL held, outside the pool's lock
        });
    }
}
