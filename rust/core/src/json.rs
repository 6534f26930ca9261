//! Distribution reports as JSON, in the schema `dragonfly_hybrid.report` documents (its module
//! docstring): the bulk of a `--format json` or `ndjson` report, serialised here so that a report of
//! tens of thousands of matched files costs no Python object per file or match.

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::mpsc::{self, SyncSender};
use std::thread;

use rayon::prelude::*;

use crate::issue::Issue;
use crate::report::{prefetch, DistributionReport, FileReport, PatternHit, RuleHit};
use crate::rules::Meta;

/// How the JSON is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One line, no spaces (NDJSON).
    Compact,
    /// Two spaces per level, as Python's `json.dump(indent=2)`, except that each item of a
    /// distribution's `files` and `issues` takes one line, as `json.dumps(item)` writes it (a report of
    /// 25,000 matched files is then 16.5 MB, not 37 MB of mostly spaces, and one line per file);
    /// every line after the first is indented `level` levels more, for a value nested that deep in a
    /// larger document.
    Indented { level: usize },
}

/// Write `dists` as a JSON array of distribution objects. A failed write is returned as the writer's
/// own `io::Error` (its kind kept: a closed pipe stays `BrokenPipe`).
pub fn write_distributions<W: Write + Send>(
    mut out: W,
    dists: &[&DistributionReport],
    layout: Layout,
) -> io::Result<()> {
    let style = match layout {
        Layout::Compact => Style::Compact,
        Layout::Indented { level } => Style::Block(2 * level + 2),
    };
    // The text is built in pieces of about a MB, each written by a thread of its own while the next is
    // built: the kernel's copy of tens of MB into a new file's pages costs as much as building them.
    let (pieces, written) = mpsc::sync_channel::<Vec<u8>>(2);
    thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<()> {
            for piece in written {
                out.write_all(&piece)?;
            }
            Ok(())
        });
        let mut text = Text { buf: Vec::with_capacity(PIECE + (1 << 16)), pieces };
        let mut list = Container::array(&mut text.buf, style);
        let mut built = Ok(());
        for dist in dists {
            list.item(&mut text.buf);
            built = write_distribution(&mut text, dist, style.inner()).and_then(|()| text.hand_over_full());
            if built.is_err() {
                break;
            }
        }
        if built.is_ok() {
            list.close(&mut text.buf);
            built = text.hand_over();
        }
        drop(text); // the writer ends when the text is all written
        match writer.join() {
            // A write failed (a closed pipe stays `BrokenPipe`): building stopped at its next piece.
            Ok(Err(err)) => Err(err),
            // (A piece is refused only once the writer stopped on an error: not reached.)
            Ok(Ok(())) => built.map_err(|WriterStopped| io::Error::other("the report's writer stopped")),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The size of the pieces handed to the writer.
const PIECE: usize = 1 << 20;

/// The text being built, and where its finished pieces go.
struct Text {
    buf: Vec<u8>,
    pieces: SyncSender<Vec<u8>>,
}

/// The writer stopped (on a failed write, which it returns).
#[derive(Debug)]
struct WriterStopped;

impl Text {
    fn hand_over(&mut self) -> Result<(), WriterStopped> {
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE + (1 << 16)));
        self.pieces.send(piece).map_err(|_| WriterStopped)
    }

    fn hand_over_full(&mut self) -> Result<(), WriterStopped> {
        if self.buf.len() >= PIECE {
            self.hand_over()
        } else {
            Ok(())
        }
    }
}

fn write_distribution(text: &mut Text, d: &DistributionReport, style: Style) -> Result<(), WriterStopped> {
    let items = style.inner().items(); // each issue and each file on one line (Layout::Indented)
    let mut map = Container::object(&mut text.buf, style);
    write_summary(&mut text.buf, &mut map, d, style);
    map.key(&mut text.buf, "files");
    let mut list = Container::array(&mut text.buf, style.inner());
    if let Some((first, rest)) = d.files.split_first() {
        list.item(&mut text.buf);
        write_file(&mut text.buf, first, items);
        // Writing a file's line is mostly waiting for its report's scattered allocations (patterns,
        // data, snippets): batches of files are written on every thread of the pool at once, in order.
        for batch in rest.chunks(FILES_PER_BATCH) {
            let parts: Vec<Vec<u8>> = batch
                .par_chunks(FILES_PER_TASK)
                .map(|files| {
                    let mut part = Vec::with_capacity(files.len() * 1024);
                    for (at, file) in files.iter().enumerate() {
                        prefetch_ahead(files, at);
                        style.inner().separate(&mut part, false);
                        write_file(&mut part, file, items);
                    }
                    part
                })
                .collect();
            for part in parts {
                text.buf.extend_from_slice(&part);
                text.hand_over_full()?;
            }
        }
    }
    list.close(&mut text.buf);
    map.close(&mut text.buf);
    Ok(())
}

/// A distribution's keys before its `files`.
fn write_summary(buf: &mut Vec<u8>, map: &mut Container, d: &DistributionReport, style: Style) {
    let tally = d.tally();
    map.string(buf, "name", &d.name);
    map.optional_string(buf, "url", d.url.as_deref());
    map.string(buf, "format", d.format.as_str());
    map.integer(buf, "size", d.size);
    map.string(buf, "sha256", &d.sha256);
    map.integer(buf, "files_scanned", d.files_scanned);
    map.integer(buf, "bytes_scanned", d.bytes_scanned);
    map.integer(buf, "score", tally.score);
    map.key(buf, "rules_matched");
    array(buf, style.inner(), &tally.rules_matched(), |buf, rule| string(buf, rule));
    map.optional_string(buf, "top_file", tally.top_file.map(|f| f.path.as_str()));
    map.string(buf, "verdict", d.verdict().as_str());
    map.boolean(buf, "complete", d.complete());
    map.key(buf, "issues");
    array(buf, style.inner(), &d.issues, |buf, issue| write_issue(buf, issue, style.inner().items()));
}

/// Ask for the memory of the files a few places after `files[at]`, one link of their reports' chains
/// per step (the file's strings and hits, then its hits' patterns, then the patterns' bytes), so that
/// the cache misses of several files overlap instead of each stalling in turn.
fn prefetch_ahead(files: &[FileReport], at: usize) {
    if let Some(file) = files.get(at + 6) {
        prefetch(file.path.as_ptr());
        prefetch(file.sha256.as_ptr());
        prefetch(file.hits.as_ptr());
    }
    if let Some(file) = files.get(at + 4) {
        for hit in &file.hits {
            prefetch(hit.patterns.as_ptr());
        }
    }
    if let Some(file) = files.get(at + 2) {
        for pattern in file.hits.iter().flat_map(|hit| &hit.patterns) {
            prefetch(pattern.identifier.as_ptr());
            prefetch(pattern.data.as_ptr());
            prefetch(pattern.snippet.as_ptr());
        }
    }
}

/// Files written per task, and per batch of tasks (the text of a batch is held in memory).
const FILES_PER_TASK: usize = 256;
const FILES_PER_BATCH: usize = 16 * FILES_PER_TASK;

fn write_issue(buf: &mut Vec<u8>, issue: &Issue, style: Style) {
    let mut map = Container::object(buf, style);
    map.string(buf, "path", &issue.path);
    map.string(buf, "kind", issue.kind.as_str());
    map.string(buf, "message", &issue.message);
    map.boolean(buf, "unscanned", issue.unscanned);
    map.close(buf);
}

fn write_file(buf: &mut Vec<u8>, file: &FileReport, style: Style) {
    let mut map = Container::object(buf, style);
    map.string(buf, "path", &file.path);
    map.integer(buf, "size", file.size);
    map.string(buf, "sha256", &file.sha256);
    map.integer(buf, "score", file.score());
    map.key(buf, "matches");
    array(buf, style, &file.hits, |buf, hit| write_hit(buf, hit, style));
    map.close(buf);
}

fn write_hit(buf: &mut Vec<u8>, hit: &RuleHit, style: Style) {
    let rule = &hit.rule;
    let mut map = Container::object(buf, style);
    map.string(buf, "rule", &rule.identifier);
    map.string(buf, "namespace", &rule.namespace);
    map.key(buf, "tags");
    array(buf, style, &rule.tags, |buf, tag| string(buf, tag));
    map.integer(buf, "weight", rule.weight);
    map.key(buf, "metadata");
    write_metadata(buf, &rule.metadata, style);
    map.key(buf, "patterns");
    array(buf, style, &hit.patterns, |buf, pattern| write_pattern(buf, pattern, style));
    map.close(buf);
}

fn write_metadata(buf: &mut Vec<u8>, metadata: &[(String, Meta)], style: Style) {
    // Each key once (`RuleInfo::metadata`: a repeated key keeps its first value).
    let mut map = Container::object(buf, style);
    for (key, value) in metadata {
        map.escaped_key(buf, key);
        match value {
            Meta::Int(v) => integer(buf, *v),
            Meta::Float(v) if v.is_finite() => {
                // serde_json's shortest round-trip form, as the reports always had.
                serde_json::to_writer(&mut *buf, v).expect("writing to memory cannot fail");
            }
            Meta::Float(v) => string(buf, non_finite_repr(*v)),
            Meta::Bool(v) => boolean(buf, *v),
            Meta::Str(v) => string(buf, v),
            Meta::Bytes(v) => string(buf, &ascii_backslashed(v)),
        }
    }
    map.close(buf);
}

fn write_pattern(buf: &mut Vec<u8>, p: &PatternHit, style: Style) {
    let mut map = Container::object(buf, style);
    map.string(buf, "identifier", &p.identifier);
    map.integer(buf, "offset", p.offset);
    map.integer(buf, "length", p.length);
    map.integer(buf, "line", p.line);
    map.integer(buf, "column", p.column);
    map.key(buf, "data");
    bytes_string(buf, &p.data);
    map.key(buf, "snippet");
    bytes_string(buf, &p.snippet);
    map.close(buf);
}

/// How the items of an array or object are separated: Python's `json.dumps` with
/// `separators=(",", ":")`, without an indent, or with `indent=2`.
#[derive(Debug, Clone, Copy)]
enum Style {
    /// `,` and `:`.
    Compact,
    /// `, ` and `: `, on one line.
    Line,
    /// An item per line, indented by this many spaces; `: `.
    Block(usize),
}

impl Style {
    /// The style of a container nested in one of this style.
    fn inner(self) -> Style {
        match self {
            Style::Block(indent) => Style::Block(indent + 2),
            other => other,
        }
    }

    /// The style of a container that must take one line, nested in one of this style.
    fn items(self) -> Style {
        match self {
            Style::Block(_) => Style::Line,
            other => other,
        }
    }

    fn separate(self, buf: &mut Vec<u8>, first: bool) {
        match self {
            Style::Compact if !first => buf.push(b','),
            Style::Line if !first => buf.extend_from_slice(b", "),
            Style::Block(indent) => {
                if !first {
                    buf.push(b',');
                }
                newline(buf, indent);
            }
            _ => {}
        }
    }

    fn close(self, buf: &mut Vec<u8>, empty: bool, bracket: u8) {
        if let (Style::Block(indent), false) = (self, empty) {
            newline(buf, indent - 2);
        }
        buf.push(bracket);
    }
}

fn newline(buf: &mut Vec<u8>, indent: usize) {
    buf.push(b'\n');
    buf.resize(buf.len() + indent, b' ');
}

/// An array or object being written: how its items are separated, and whether it has one yet.
struct Container {
    style: Style,
    empty: bool,
    closing: u8,
}

impl Container {
    fn array(buf: &mut Vec<u8>, style: Style) -> Container {
        buf.push(b'[');
        Container { style, empty: true, closing: b']' }
    }

    fn object(buf: &mut Vec<u8>, style: Style) -> Container {
        buf.push(b'{');
        Container { style, empty: true, closing: b'}' }
    }

    /// Before each item of an array (an object's: `key`).
    fn item(&mut self, buf: &mut Vec<u8>) {
        self.style.separate(buf, self.empty);
        self.empty = false;
    }

    fn close(self, buf: &mut Vec<u8>) {
        self.style.close(buf, self.empty, self.closing);
    }

    /// One of the schema's keys and its colon; its value follows. The schema's keys need no escaping:
    /// they are copied as they are (a report writes some 25 of them per matched file).
    fn key(&mut self, buf: &mut Vec<u8>, key: &'static str) {
        debug_assert!(!key.bytes().any(needs_escape), "{key:?}");
        self.item(buf);
        buf.push(b'"');
        buf.extend_from_slice(key.as_bytes());
        buf.push(b'"');
        self.colon(buf);
    }

    /// A key from the input (a rule's metadata) and its colon.
    fn escaped_key(&mut self, buf: &mut Vec<u8>, key: &str) {
        self.item(buf);
        string(buf, key);
        self.colon(buf);
    }

    fn colon(&self, buf: &mut Vec<u8>) {
        match self.style {
            Style::Compact => buf.push(b':'),
            _ => buf.extend_from_slice(b": "),
        }
    }

    fn string(&mut self, buf: &mut Vec<u8>, key: &'static str, value: &str) {
        self.key(buf, key);
        string(buf, value);
    }

    fn optional_string(&mut self, buf: &mut Vec<u8>, key: &'static str, value: Option<&str>) {
        self.key(buf, key);
        match value {
            Some(text) => string(buf, text),
            None => buf.extend_from_slice(b"null"),
        }
    }

    fn integer(&mut self, buf: &mut Vec<u8>, key: &'static str, value: impl itoa::Integer) {
        self.key(buf, key);
        integer(buf, value);
    }

    fn boolean(&mut self, buf: &mut Vec<u8>, key: &'static str, value: bool) {
        self.key(buf, key);
        boolean(buf, value);
    }
}

/// `items` as an array, each written by `write`.
fn array<T>(buf: &mut Vec<u8>, style: Style, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
    let mut list = Container::array(buf, style);
    for item in items {
        list.item(buf);
        write(buf, item);
    }
    list.close(buf);
}

pub(crate) fn integer(buf: &mut Vec<u8>, value: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

fn boolean(buf: &mut Vec<u8>, value: bool) {
    buf.extend_from_slice(if value { b"true" } else { b"false" });
}

/// `text` as a JSON string, escaped as Python's `json.dumps(ensure_ascii=False)` escapes it: `"`, `\`,
/// and the control characters below U+0020 (`\n`, `\t`... or `\u00XX`); everything else as it is.
pub(crate) fn string(buf: &mut Vec<u8>, text: &str) {
    quoted(buf, text.as_bytes());
}

/// A pattern's bytes as a JSON string: as UTF-8 text, each byte that is not valid UTF-8 written `\xNN`
/// (`utf8_backslashed`). ASCII, nearly every match and snippet, needs no decoding.
fn bytes_string(buf: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_ascii() {
        quoted(buf, bytes);
    } else {
        string(buf, &utf8_backslashed(bytes));
    }
}

/// `bytes` (UTF-8) escaped, between quotes.
fn quoted(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.reserve(bytes.len() + 2);
    buf.push(b'"');
    escaped(buf, bytes);
    buf.push(b'"');
}

/// `bytes` (UTF-8) escaped, without quotes.
fn escaped(buf: &mut Vec<u8>, bytes: &[u8]) {
    const LANES: usize = 16;
    fn clean(lane: &[u8; LANES]) -> bool {
        lane.iter().fold(true, |clean, &byte| clean & !needs_escape(byte))
    }
    // Whole lanes with nothing to escape are copied at once (almost every string in a report).
    let mut done = 0;
    let mut lane_start = 0;
    for lane in bytes.chunks_exact(LANES) {
        if !clean(lane.try_into().expect("chunks_exact")) {
            buf.extend_from_slice(&bytes[done..lane_start]);
            escape_run(buf, lane);
            done = lane_start + LANES;
        }
        lane_start += LANES;
    }
    // The last bytes are checked as one more lane, padded with a character that needs no escape (most
    // strings of a report are shorter than a lane).
    let tail = &bytes[lane_start..];
    let mut padded = [b' '; LANES];
    padded[..tail.len()].copy_from_slice(tail);
    if clean(&padded) {
        buf.extend_from_slice(&bytes[done..]);
    } else {
        buf.extend_from_slice(&bytes[done..lane_start]);
        escape_run(buf, tail);
    }
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Write `bytes` escaped.
fn escape_run(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut plain = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if !needs_escape(byte) {
            continue;
        }
        buf.extend_from_slice(&bytes[plain..at]);
        plain = at + 1;
        match byte {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0x08 => buf.extend_from_slice(b"\\b"),
            0x0c => buf.extend_from_slice(b"\\f"),
            _ => buf.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
    }
    buf.extend_from_slice(&bytes[plain..]);
}

/// `bytes` as text: valid UTF-8 as is, every byte of an invalid sequence written `\xNN` (Python's
/// `bytes.decode("utf-8", "backslashreplace")`, as the results store keeps matched data).
pub fn utf8_backslashed(bytes: &[u8]) -> Cow<'_, str> {
    let mut rest = match std::str::from_utf8(bytes) {
        Ok(text) => return Cow::Borrowed(text),
        Err(_) => bytes,
    };
    let mut text = String::with_capacity(bytes.len() + 8);
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                return Cow::Owned(text);
            }
            Err(err) => {
                let (valid, after) = rest.split_at(err.valid_up_to());
                text.push_str(std::str::from_utf8(valid).expect("checked valid"));
                let bad = err.error_len().unwrap_or(after.len());
                for byte in &after[..bad] {
                    push_escaped(&mut text, *byte);
                }
                rest = &after[bad..];
            }
        }
    }
}

/// `bytes` as ASCII text, every byte from 0x80 written `\xNN` (Python's
/// `bytes.decode("ascii", "backslashreplace")`, for metadata strings that are not UTF-8).
pub fn ascii_backslashed(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii() {
            text.push(char::from(byte));
        } else {
            push_escaped(&mut text, byte);
        }
    }
    text
}

fn push_escaped(text: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    text.push_str("\\x");
    text.push(char::from(HEX[usize::from(byte >> 4)]));
    text.push(char::from(HEX[usize::from(byte & 0xf)]));
}

/// Python's `repr` of a float that JSON cannot carry.
fn non_finite_repr(value: f64) -> &'static str {
    if value.is_nan() {
        "nan"
    } else if value > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report of `files` matched files, each with one hit on `rule`.
    fn report_of(files: usize) -> DistributionReport {
        let rule = std::sync::Arc::new(crate::rules::RuleInfo {
            identifier: "r".into(),
            namespace: "default".into(),
            tags: vec![],
            metadata: vec![("weight".into(), Meta::Int(1))],
            weight: 1,
            filetypes: vec![],
        });
        let pattern = PatternHit {
            identifier: "$a".into(),
            offset: 3,
            length: 4,
            data: b"a\"b\xff".to_vec(),
            line: 1,
            column: 4,
            snippet: b"x\ta\"b\xff".to_vec(),
            snippet_offset: 2,
        };
        DistributionReport {
            name: "big.whl".into(),
            url: None,
            format: crate::format::Format::Zip,
            size: 1,
            sha256: "0".repeat(64),
            files_scanned: files as u64,
            bytes_scanned: 0,
            files: (0..files)
                .map(|i| FileReport {
                    path: format!("pkg/m{i}.py"),
                    size: i as u64,
                    sha256: format!("{i:064x}"),
                    is_text: true,
                    hits: vec![RuleHit { rule: rule.clone(), patterns: vec![pattern.clone()] }],
                })
                .collect(),
            issues: vec![],
        }
    }

    #[test]
    fn files_written_in_parallel_pieces_keep_their_order_and_layout() {
        // Past several batches of tasks and several pieces handed to the writer.
        let files = 2 * FILES_PER_BATCH + FILES_PER_TASK + 7;
        let report = report_of(files);
        let mut compact = Vec::new();
        write_distributions(&mut compact, &[&report, &report_of(1)], Layout::Compact).unwrap();
        assert!(compact.len() > 2 * PIECE);
        let mut indented = Vec::new();
        write_distributions(&mut indented, &[&report, &report_of(1)], Layout::Indented { level: 1 }).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&compact).unwrap();
        assert_eq!(value, serde_json::from_slice::<serde_json::Value>(&indented).unwrap());
        let paths: Vec<&str> =
            value[0]["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
        assert_eq!(paths, (0..files).map(|i| format!("pkg/m{i}.py")).collect::<Vec<_>>());
        assert_eq!(value[0]["files"][5]["matches"][0]["patterns"][0]["snippet"], "x\ta\"b\\xff");
        // One line per file, two levels below the distribution's keys.
        let text = String::from_utf8(indented).unwrap();
        let lines: Vec<&str> = text.lines().filter(|line| line.contains("\"path\": \"pkg/")).collect();
        assert_eq!(lines.len(), files + 1);
        assert!(lines
            .iter()
            .all(|line| line.starts_with("        {\"path\": ") && !line[8..].contains("  ")));
    }

    #[test]
    fn a_failed_write_is_returned_with_its_kind() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        for files in [0, 3 * FILES_PER_BATCH] {
            let err = write_distributions(Closed, &[&report_of(files)], Layout::Compact).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        }
    }

    #[test]
    fn utf8_backslashed_escapes_each_invalid_byte() {
        assert_eq!(utf8_backslashed(b"plain"), "plain");
        assert!(matches!(utf8_backslashed(b"plain"), Cow::Borrowed(_)));
        assert_eq!(utf8_backslashed("é\u{1F600}".as_bytes()), "é\u{1F600}");
        assert_eq!(utf8_backslashed(b"a\xffb\xe2\x82"), "a\\xffb\\xe2\\x82");
        assert_eq!(utf8_backslashed(b"\xed\xa0\x80x"), "\\xed\\xa0\\x80x");
    }

    #[test]
    fn ascii_backslashed_escapes_every_high_byte() {
        assert_eq!(ascii_backslashed(b"ab\xff\x80c"), "ab\\xff\\x80c");
        assert_eq!(ascii_backslashed("é".as_bytes()), "\\xc3\\xa9");
    }

    #[test]
    fn metadata_keeps_json_types_and_non_finite_floats_as_repr() {
        use std::sync::Arc;
        let rule = Arc::new(crate::rules::RuleInfo {
            identifier: "r".into(),
            namespace: "default".into(),
            tags: vec!["t".into()],
            metadata: vec![
                ("weight".into(), Meta::Int(2)),
                ("nan".into(), Meta::Float(f64::NAN)),
                ("inf".into(), Meta::Float(f64::NEG_INFINITY)),
                ("half".into(), Meta::Float(0.5)),
                ("raw".into(), Meta::Bytes(b"a\xff".to_vec())),
            ],
            weight: 2,
            filetypes: vec![],
        });
        let hit = RuleHit { rule, patterns: vec![] };
        let mut compact = Vec::new();
        write_hit(&mut compact, &hit, Style::Compact);
        assert_eq!(
            String::from_utf8(compact).unwrap(),
            r#"{"rule":"r","namespace":"default","tags":["t"],"weight":2,"metadata":{"weight":2,"nan":"nan","inf":"-inf","half":0.5,"raw":"a\\xff"},"patterns":[]}"#
        );
        let mut line = Vec::new();
        write_hit(&mut line, &hit, Style::Line);
        assert!(String::from_utf8(line)
            .unwrap()
            .starts_with(r#"{"rule": "r", "namespace": "default", "tags": ["t"], "#));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_and_python_escape_them() {
        let mut cases: Vec<String> = vec![String::new(), "plain".into(), "é\u{2028}\u{1F600}\u{7f}".into()];
        // Every ASCII character, at every position across a lane boundary, in a run of plain text.
        for byte in 0u8..0x80 {
            for at in [0, 1, 15, 16, 17, 31, 40] {
                let mut text = "x".repeat(41);
                text.replace_range(at..=at, &char::from(byte).to_string());
                cases.push(text);
            }
        }
        // Shorter than a lane, and ending in a partial one: each length, each position.
        for len in 1..=LANE_TEST_LEN {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1}', '\u{1f}', ' ', 'é'] {
                    let mut text: Vec<char> = vec!['y'; len];
                    text[at] = special;
                    cases.push(text.into_iter().collect());
                }
            }
        }
        cases.push("\"\\\u{0}\u{1f}\n".repeat(9));
        for text in &cases {
            let mut out = Vec::new();
            string(&mut out, text);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(text).unwrap(), "{text:?}");
        }
    }

    const LANE_TEST_LEN: usize = 35;

    #[test]
    fn pattern_bytes_are_written_as_their_backslashed_text() {
        // Every byte value at every position of every length up to past two lanes, in ASCII text:
        // the ASCII fast path and the decoding path must write what `utf8_backslashed` then `string` do.
        let mut cases: Vec<Vec<u8>> = vec![vec![], "é\u{1F600}".into(), b"\xe2\x82".to_vec()];
        for len in 1..=LANE_TEST_LEN {
            for at in 0..len {
                for byte in 0..=u8::MAX {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = byte;
                    cases.push(bytes);
                }
            }
        }
        for bytes in &cases {
            let mut out = Vec::new();
            bytes_string(&mut out, bytes);
            let mut expected = Vec::new();
            string(&mut expected, &utf8_backslashed(bytes));
            assert_eq!(out, expected, "{bytes:?}");
            let text = String::from_utf8(out).unwrap();
            assert_eq!(serde_json::from_str::<String>(&text).unwrap(), utf8_backslashed(bytes), "{bytes:?}");
        }
    }
}
