//! The tar header parser alone (the reading of CPython's tarfile): whatever the bytes, it stops,
//! every entry's data lies after its header, and every next header lies after the one before it
//! (a parser that can seek back could loop forever, as tarfile itself does on negative sizes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (entries, _stop) = dragonfly_core::fuzzing::tar_entries(data);
    let mut previous = 0u64;
    for (name, _size, data_offset, next_header) in &entries {
        assert!(*data_offset >= previous + 512, "{name:?}: data at {data_offset}, header at {previous} or later");
        assert!(*next_header > previous, "{name:?}: next header {next_header} is not after {previous}");
        previous = *next_header;
    }
    // Each entry takes at least one header block of the input (or of what a size points past).
    assert!(entries.len() <= data.len() / 512 + 1, "{} entries from {} bytes", entries.len(), data.len());
});
