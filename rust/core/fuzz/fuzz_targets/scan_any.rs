//! The public entry point on arbitrary bytes: format detection, nesting, two scanning threads.
#![no_main]

use dragonfly_core::{DistInput, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let engine = dragonfly_core_fuzz::engine(2);
    let report = engine.scan(DistInput { name: "fuzz.tar.gz".into(), url: None, input: Input::Bytes(data) });
    dragonfly_core_fuzz::check(&report);
});
