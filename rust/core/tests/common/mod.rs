//! Builders of real archives for the tests, in memory.
#![allow(dead_code)]

pub mod hostile;

use std::io::{Cursor, Write};

use dragonfly_core::{DistInput, DistributionReport, Engine, Input, Limits, RuleSet};

/// A rule set with a few marker rules: `evil_marker` (weight 5, any file), `py_only`
/// (weight 3, `.py` files), `zero_weight` (weight 0).
pub fn marker_rules() -> RuleSet {
    let source = r#"
rule evil_marker {
    meta: weight = 5 description = "test marker"
    strings: $a = "EVIL_MARKER"
    condition: $a
}
rule py_only {
    meta: weight = 3 filetype = ".py .pyi"
    strings: $a = "PY_ONLY_MARKER"
    condition: $a
}
rule zero_weight {
    meta: weight = "not an int"
    strings: $a = "ZERO_WEIGHT_MARKER"
    condition: $a
}
"#;
    RuleSet::compile([("markers.yar", source)]).expect("test rules compile")
}

pub fn engine(limits: Limits, threads: usize) -> Engine {
    Engine::new(marker_rules(), limits, Some(threads)).expect("engine starts")
}

pub fn scan(engine: &Engine, name: &str, data: &[u8]) -> DistributionReport {
    engine.scan(DistInput { name: name.into(), url: None, input: Input::Bytes(data) })
}

pub fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

pub fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

pub fn xz(data: &[u8]) -> Vec<u8> {
    let mut writer = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(6)).unwrap();
    writer.write_all(data).unwrap();
    writer.finish().unwrap()
}

/// One zstd frame with its content checksum, as `zstd` and Python 3.14's `tarfile` write it.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// The legacy `.lzma` format (LZMA-alone), as `xz --format=lzma` writes it (unknown size, end marker).
pub fn lzma_alone(data: &[u8]) -> Vec<u8> {
    let options = lzma_rust2::LzmaOptions::with_preset(6);
    let mut writer = lzma_rust2::LzmaWriter::new_use_header(Vec::new(), &options, None).unwrap();
    writer.write_all(data).unwrap();
    writer.finish().unwrap()
}

pub fn lzip(data: &[u8]) -> Vec<u8> {
    let mut writer = lzma_rust2::LzipWriter::new(Vec::new(), lzma_rust2::LzipOptions::with_preset(6));
    writer.write_all(data).unwrap();
    writer.finish().unwrap()
}

pub fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    gzip(&tar(entries))
}

pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (i, (path, data)) in entries.iter().enumerate() {
        let method =
            if i % 2 == 0 { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        writer.start_file(*path, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

pub fn paths(report: &DistributionReport) -> Vec<&str> {
    report.files.iter().map(|f| f.path.as_str()).collect()
}

pub fn issue_kinds(report: &DistributionReport) -> Vec<&'static str> {
    report.issues.iter().map(|i| i.kind.as_str()).collect()
}
