//! Distribution reports as JSON, in the schema `dragonfly_hybrid.report` documents (its module
//! docstring): the bulk of a `--format json` or `ndjson` report, serialised here so that a report of
//! tens of thousands of matched files costs no Python object per file or match.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::{self, Write};

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::ser::CompactFormatter;

use crate::issue::Issue;
use crate::report::{DistributionReport, FileReport, PatternHit, RuleHit};
use crate::rules::Meta;

/// How the JSON is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One line, no spaces (NDJSON).
    Compact,
    /// Two spaces per level, as Python's `json.dump(indent=2)`; every line after the first is
    /// indented `level` levels more, for a value nested that deep in a larger document.
    Indented { level: usize },
}

/// Write `dists` as a JSON array of distribution objects. A failed write is returned as the writer's
/// own `io::Error` (its kind kept: a closed pipe stays `BrokenPipe`).
pub fn write_distributions<W: Write>(
    out: W,
    dists: &[&DistributionReport],
    layout: Layout,
) -> io::Result<()> {
    let list = Distributions(dists);
    match layout {
        Layout::Compact => {
            let mut ser = serde_json::Serializer::with_formatter(out, CompactFormatter);
            list.serialize(&mut ser).map_err(io::Error::from)
        }
        Layout::Indented { level } => {
            let layout = NestedPretty { base: level, depth: 0, has_value: false };
            let mut ser = serde_json::Serializer::with_formatter(out, layout);
            list.serialize(&mut ser).map_err(io::Error::from)
        }
    }
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

/// `json.dump(indent=2)`'s layout, starting `base` levels deep: like serde_json's pretty formatter,
/// but nested (a wrapper re-indenting its output after every newline cost three times the writing).
struct NestedPretty {
    base: usize,
    depth: usize,
    has_value: bool,
}

impl NestedPretty {
    fn newline<W: ?Sized + Write>(&self, out: &mut W) -> io::Result<()> {
        const SPACES: &[u8] = &[b' '; 128];
        out.write_all(b"\n")?;
        let mut left = (self.base + self.depth) * 2;
        while left > 0 {
            let n = left.min(SPACES.len());
            out.write_all(&SPACES[..n])?;
            left -= n;
        }
        Ok(())
    }

    fn open<W: ?Sized + Write>(&mut self, out: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        out.write_all(bracket)
    }

    fn close<W: ?Sized + Write>(&mut self, out: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            self.newline(out)?;
        }
        out.write_all(bracket)
    }

    fn item<W: ?Sized + Write>(&mut self, out: &mut W, first: bool) -> io::Result<()> {
        if !first {
            out.write_all(b",")?;
        }
        self.newline(out)
    }
}

impl serde_json::ser::Formatter for NestedPretty {
    fn begin_array<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.open(out, b"[")
    }
    fn end_array<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.close(out, b"]")
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, out: &mut W, first: bool) -> io::Result<()> {
        self.item(out, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, _out: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.open(out, b"{")
    }
    fn end_object<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        self.close(out, b"}")
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, out: &mut W, first: bool) -> io::Result<()> {
        self.item(out, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, out: &mut W) -> io::Result<()> {
        out.write_all(b": ")
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, _out: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

struct Distributions<'a>(&'a [&'a DistributionReport]);

impl Serialize for Distributions<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_seq(self.0.iter().map(|d| Distribution(d)))
    }
}

struct Distribution<'a>(&'a DistributionReport);

impl Serialize for Distribution<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let d = self.0;
        let mut map = ser.serialize_map(Some(14))?;
        map.serialize_entry("name", &d.name)?;
        map.serialize_entry("url", &d.url)?;
        map.serialize_entry("format", d.format.as_str())?;
        map.serialize_entry("size", &d.size)?;
        map.serialize_entry("sha256", &d.sha256)?;
        map.serialize_entry("files_scanned", &d.files_scanned)?;
        map.serialize_entry("bytes_scanned", &d.bytes_scanned)?;
        map.serialize_entry("score", &d.score())?;
        map.serialize_entry("rules_matched", &d.rules_matched())?;
        map.serialize_entry("top_file", &d.top_file().map(|f| f.path.as_str()))?;
        map.serialize_entry("verdict", d.verdict().as_str())?;
        map.serialize_entry("complete", &d.complete())?;
        map.serialize_entry("issues", &Seq(&d.issues, IssueRef))?;
        map.serialize_entry("files", &Seq(&d.files, FileRef))?;
        map.end()
    }
}

/// A slice serialised item by item through a wrapper.
struct Seq<'a, T, F>(&'a [T], F);

impl<'a, T, F, J> Serialize for Seq<'a, T, F>
where
    F: Fn(&'a T) -> J,
    J: Serialize,
{
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut seq = ser.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            seq.serialize_element(&(self.1)(item))?;
        }
        seq.end()
    }
}

struct IssueRef<'a>(&'a Issue);

impl Serialize for IssueRef<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let mut map = ser.serialize_map(Some(4))?;
        map.serialize_entry("path", &self.0.path)?;
        map.serialize_entry("kind", self.0.kind.as_str())?;
        map.serialize_entry("message", &self.0.message)?;
        map.serialize_entry("unscanned", &self.0.unscanned)?;
        map.end()
    }
}

struct FileRef<'a>(&'a FileReport);

impl Serialize for FileRef<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut map = ser.serialize_map(Some(5))?;
        map.serialize_entry("path", &f.path)?;
        map.serialize_entry("size", &f.size)?;
        map.serialize_entry("sha256", &f.sha256)?;
        map.serialize_entry("score", &f.score())?;
        map.serialize_entry("matches", &Seq(&f.hits, HitRef))?;
        map.end()
    }
}

struct HitRef<'a>(&'a RuleHit);

impl Serialize for HitRef<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let rule = &self.0.rule;
        let mut map = ser.serialize_map(Some(6))?;
        map.serialize_entry("rule", &rule.identifier)?;
        map.serialize_entry("namespace", &rule.namespace)?;
        map.serialize_entry("tags", &rule.tags)?;
        map.serialize_entry("weight", &rule.weight)?;
        map.serialize_entry("metadata", &MetadataRef(&rule.metadata))?;
        map.serialize_entry("patterns", &Seq(&self.0.patterns, PatternRef))?;
        map.end()
    }
}

struct MetadataRef<'a>(&'a [(String, Meta)]);

impl Serialize for MetadataRef<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        // The first value of a repeated key wins, as in `RuleMatch.metadata` and in scoring.
        let mut seen = HashSet::new();
        let mut map = ser.serialize_map(None)?;
        for (key, value) in self.0 {
            if !seen.insert(key.as_str()) {
                continue;
            }
            match value {
                Meta::Int(v) => map.serialize_entry(key, v)?,
                Meta::Float(v) if v.is_finite() => map.serialize_entry(key, v)?,
                Meta::Float(v) => map.serialize_entry(key, non_finite_repr(*v))?,
                Meta::Bool(v) => map.serialize_entry(key, v)?,
                Meta::Str(v) => map.serialize_entry(key, v)?,
                Meta::Bytes(v) => map.serialize_entry(key, &ascii_backslashed(v))?,
            }
        }
        map.end()
    }
}

struct PatternRef<'a>(&'a PatternHit);

impl Serialize for PatternRef<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = ser.serialize_map(Some(7))?;
        map.serialize_entry("identifier", &p.identifier)?;
        map.serialize_entry("offset", &p.offset)?;
        map.serialize_entry("length", &p.length)?;
        map.serialize_entry("line", &p.line)?;
        map.serialize_entry("column", &p.column)?;
        map.serialize_entry("data", &utf8_backslashed(&p.data))?;
        map.serialize_entry("snippet", &utf8_backslashed(&p.snippet))?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn metadata_keeps_json_types_first_key_wins_and_non_finite_floats_as_repr() {
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
                ("weight".into(), Meta::Int(9)),
            ],
            weight: 2,
            filetypes: vec![],
        });
        let hit = RuleHit { rule, patterns: vec![] };
        let text = serde_json::to_string(&HitRef(&hit)).unwrap();
        assert_eq!(
            text,
            r#"{"rule":"r","namespace":"default","tags":["t"],"weight":2,"metadata":{"weight":2,"nan":"nan","inf":"-inf","half":0.5,"raw":"a\\xff"},"patterns":[]}"#
        );
    }

    #[test]
    fn nested_layout_is_pythons_indent_2_shifted() {
        let value = serde_json::json!({"a": [1, {"b": []}, {}], "c": "x\ny"});
        let write = |base| {
            let mut out = Vec::new();
            let layout = NestedPretty { base, depth: 0, has_value: false };
            value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, layout)).unwrap();
            String::from_utf8(out).unwrap()
        };
        let python =
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": []\n    },\n    {}\n  ],\n  \"c\": \"x\\ny\"\n}";
        assert_eq!(write(0), python);
        assert_eq!(write(2), python.replace('\n', "\n    "));
    }
}
