//! A loose Python file on arbitrary bytes, named as a module and as a `.pth` file: its reading as CPython
//! reads it (the codec of its cookie, NFKC identifiers, line breaks, `site`'s reading of a `.pth` file).
#![no_main]

use dragonfly_core::{DistInput, Input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let engine = dragonfly_core_fuzz::engine(1);
    for name in ["m.py", "m.pth"] {
        let report = engine.scan(DistInput { name: name.into(), url: None, input: Input::Bytes(data) });
        dragonfly_core_fuzz::check(&report);
    }
});
