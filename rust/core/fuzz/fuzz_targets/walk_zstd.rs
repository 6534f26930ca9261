//! The walker on arbitrary bytes taken as zstd frames (format detection bypassed).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dragonfly_core_fuzz::walk(dragonfly_core::Container::Zstd, data));
