//! How CPython reads a Python file: in the codec its coding cookie names (PEP 263), its identifiers in
//! NFKC form (PEP 3131). `ｅｘｅｃ(...)`, `𝐞𝐯𝐚𝐥(...)` and `oſ.ſyſtem(...)` call `exec`, `eval` and
//! `os.system`, in UTF-8 or, under `# coding: shift_jis`, in Shift_JIS bytes, where a rule reading the
//! bytes sees none of those names; such a file is scanned a second time as CPython reads it.

use unicode_normalization::UnicodeNormalization;

use super::python_codecs::{Codec, CODECS};

/// Appended to a file's path for its reading.
pub(crate) const READING: &str = "<as Python reads it>";

/// Files whose code CPython runs: modules and scripts, and `.pth` files (their `import` lines are
/// executed).
const PYTHON_CODE: [&str; 3] = [".py", ".pyw", ".pth"];

/// Every character whose NFKC form is ASCII letters, digits or '_' lies in one of these ranges (the
/// tests check every code point): the normalisation runs for those characters only, so text in other
/// scripts (CJK, Cyrillic, ...) costs a range lookup per character.
const FOLDING: [(u32, u32); 23] = [
    (0xAA, 0xBA),
    (0x132, 0x133),
    (0x17F, 0x17F),
    (0x1C7, 0x1F3),
    (0x2B0, 0x2E3),
    (0x1D2C, 0x1DBB),
    (0x2070, 0x20A8),
    (0x2102, 0x217F),
    (0x2460, 0x24EA),
    (0x2C7C, 0x2C7D),
    (0x3250, 0x33FF),
    (0xA69C, 0xA69D),
    (0xA7F1, 0xA7F9),
    (0xAB5C, 0xAB69),
    (0xFB00, 0xFB06),
    (0xFE33, 0xFE4F),
    (0xFF10, 0xFF5A),
    (0x10780, 0x107BA),
    (0x1CCD6, 0x1CCF9),
    (0x1D400, 0x1D7FF),
    (0x1E030, 0x1E08F),
    (0x1F100, 0x1F1FF),
    (0x1FBF0, 0x1FBF9),
];

/// Whether CPython runs the code of a file installed under `fit`.
pub(super) fn is_python_code(fit: &str) -> bool {
    PYTHON_CODE.iter().any(|suffix| fit.ends_with(suffix))
}

fn may_fold(c: char) -> bool {
    let code = u32::from(c);
    let at = FOLDING.partition_point(|&(_, last)| last < code);
    FOLDING.get(at).is_some_and(|&(first, _)| first <= code)
}

/// The NFKC form of `c` when it is only ASCII letters, digits and '_' (at most 18 characters, the
/// longest NFKC expansion), written into `out`; its length.
fn folded_char(c: char, out: &mut [u8; 18]) -> Option<usize> {
    let mut len = 0;
    for d in std::iter::once(c).nfkc() {
        if !(d.is_ascii_alphanumeric() || d == '_') || len == out.len() {
            return None;
        }
        out[len] = d as u8;
        len += 1;
    }
    (len > 0).then_some(len)
}

/// `data` as CPython reads it, when that differs from the bytes: in the codec its coding cookie names
/// (UTF-8 without one), each character whose NFKC form is ASCII letters, digits and '_' written in that
/// form. A file read as UTF-8 whose bytes are not UTF-8 gets none (CPython runs none of it), nor does
/// one whose cookie names a codec the reading does not follow.
pub(super) fn reading(data: &[u8]) -> Option<Vec<u8>> {
    match source_codec(data)? {
        Codec::Utf8 if data.is_ascii() => None,
        Codec::Utf8 => folded(std::str::from_utf8(data).ok()?),
        Codec::Folds(folds) => folded_bytes(data, folds),
        Codec::Decoded(encoding) => {
            let decoded = encoding.decode_without_bom_handling(data).0;
            let text = folded(&decoded).unwrap_or_else(|| decoded.into_owned().into_bytes());
            (text != data).then_some(text)
        }
    }
}

/// The codec CPython reads `data` in: the one a coding cookie names (on line 1, or on line 2 when line 1
/// is blank or a comment; lines end at \n, \r\n or \r), else UTF-8 (after a UTF-8 BOM CPython takes a
/// UTF-8 cookie only). `None` for a codec the reading does not follow.
fn source_codec(data: &[u8]) -> Option<&'static Codec> {
    const UTF8: &Codec = &Codec::Utf8;
    if data.starts_with(b"\xef\xbb\xbf") {
        return Some(UTF8);
    }
    let (first, rest) = split_line(data);
    let name = match coding_spec(first) {
        Some(name) => name,
        None if blank_or_comment(first) => match rest.and_then(|rest| coding_spec(split_line(rest).0)) {
            Some(name) => name,
            None => return Some(UTF8),
        },
        None => return Some(UTF8),
    };
    python_codec(name)
}

fn split_line(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr2(b'\n', b'\r', data) {
        Some(end) => {
            let next = if data[end..].starts_with(b"\r\n") { end + 2 } else { end + 1 };
            (&data[..end], Some(&data[next..]))
        }
        None => (data, None),
    }
}

const BLANKS: &[u8] = b" \t\x0c";

fn blank_or_comment(line: &[u8]) -> bool {
    line.iter().find(|b| !BLANKS.contains(b)).is_none_or(|&b| b == b'#')
}

/// The codec name of a line that is a comment: after the first `coding:` or `coding=` followed (past
/// spaces and tabs) by letters, digits, '-', '_' or '.' (CPython's `get_coding_spec`).
fn coding_spec(line: &[u8]) -> Option<&[u8]> {
    let start = line.iter().position(|b| !BLANKS.contains(b))?;
    if line[start] != b'#' {
        return None;
    }
    let mut from = start;
    while let Some(found) = memchr::memmem::find(&line[from..], b"coding") {
        let mut at = from + found + b"coding".len();
        from += found + 1;
        if !matches!(line.get(at), Some(b':' | b'=')) {
            continue;
        }
        at += 1;
        while matches!(line.get(at), Some(b' ' | b'\t')) {
            at += 1;
        }
        let len = line[at..].iter().take_while(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b)).count();
        if len > 0 {
            return Some(&line[at..at + len]);
        }
    }
    None
}

/// A codec as CPython finds it by the name a cookie gives: the tokenizer reads `utf-8`, `latin-1`,
/// `iso-8859-1`, `iso-latin-1` and names beginning so (with `-`) as those (`get_normal_name`, on the first
/// 12 characters, `_` as `-`); the codec lookup reads the rest in lower case, each run of characters other
/// than letters, digits and '.' as one '_', none at the ends, and an alias also with '.' as '_'.
fn python_codec(name: &[u8]) -> Option<&'static Codec> {
    let head: String = name
        .iter()
        .take(12)
        .map(|&b| char::from(if b == b'_' { b'-' } else { b.to_ascii_lowercase() }))
        .collect();
    let normal = if head == "utf-8" || head.starts_with("utf-8-") {
        Some("utf_8")
    } else if ["latin-1", "iso-8859-1", "iso-latin-1"]
        .iter()
        .any(|n| head == *n || head.starts_with(&format!("{n}-")))
    {
        Some("latin_1")
    } else {
        None
    };
    let mut key = String::with_capacity(name.len());
    match normal {
        Some(normal) => key.push_str(normal),
        None => {
            let mut gap = false;
            for &b in name {
                if b.is_ascii_alphanumeric() || b == b'.' {
                    if gap && !key.is_empty() {
                        key.push('_');
                    }
                    key.push(char::from(b.to_ascii_lowercase()));
                    gap = false;
                } else {
                    gap = true;
                }
            }
        }
    }
    let find = |key: &str| CODECS.binary_search_by(|(k, _)| (*k).cmp(key)).ok().map(|at| &CODECS[at].1);
    find(&key).or_else(|| find(&key.replace('.', "_")))
}

/// `data` with each byte `folds` names written as its form; `None` when there is none.
fn folded_bytes(data: &[u8], folds: &[(u8, &str)]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for (at, byte) in data.iter().enumerate().filter(|(_, b)| !b.is_ascii()) {
        let Some((_, form)) = folds.iter().find(|(b, _)| b == byte) else { continue };
        let buf = out.get_or_insert_with(|| Vec::with_capacity(data.len()));
        buf.extend_from_slice(&data[copied..at]);
        buf.extend_from_slice(form.as_bytes());
        copied = at + 1;
    }
    let mut buf = out?;
    buf.extend_from_slice(&data[copied..]);
    Some(buf)
}

/// `text` with each character whose NFKC form is ASCII letters, digits and '_' written in that form (in
/// comments and strings too: a reading for rules, not a tokenizer). `None` when no character changes.
fn folded(text: &str) -> Option<Vec<u8>> {
    if text.is_ascii() {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut ascii = [0u8; 18];
    for (at, c) in text.char_indices() {
        if c.is_ascii() || !may_fold(c) {
            continue;
        }
        let Some(len) = folded_char(c, &mut ascii) else { continue };
        let buf = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
        buf.extend_from_slice(&bytes[copied..at]);
        buf.extend_from_slice(&ascii[..len]);
        copied = at + c.len_utf8();
    }
    let mut buf = out?;
    buf.extend_from_slice(&bytes[copied..]);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_hold_every_character_that_folds() {
        let mut ascii = [0u8; 18];
        let outside: Vec<String> = (0x80..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .filter(|&c| !may_fold(c) && folded_char(c, &mut ascii).is_some())
            .map(|c| format!("U+{:04X}", u32::from(c)))
            .collect();
        assert!(outside.is_empty(), "characters that fold outside FOLDING: {outside:?}");
        assert!(FOLDING.windows(2).all(|w| w[0].1 < w[1].0), "sorted, disjoint");
    }

    #[test]
    fn folds_compatibility_letters_and_keeps_everything_else() {
        let source = "import os\noſ.ſyſtem('ｅｘｅｃ')\n𝐞𝐯𝐚𝐥(x)  # 設定 ﬁle µ\n".as_bytes();
        let folded = reading(source).unwrap();
        assert_eq!(folded, "import os\nos.system('exec')\neval(x)  # 設定 file µ\n".as_bytes());
        assert_eq!(folded_char('\u{FF3F}', &mut [0; 18]), Some(1), "fullwidth low line is '_'");
    }

    #[test]
    fn nothing_to_fold_is_no_reading() {
        assert_eq!(reading(b"exec('x')\n"), None);
        assert_eq!(reading("# 設定: µ, é, ŉ\nx = 1\n".as_bytes()), None);
        // Not UTF-8 and no cookie: CPython runs none of it.
        assert_eq!(reading(b"\xef\xbd\x85xec('x') # \xff\n"), None);
        assert_eq!(reading("\u{feff}ｅｘｅｃ('x')\n".as_bytes()).unwrap(), "\u{feff}exec('x')\n".as_bytes());
    }

    #[test]
    fn read_in_the_codec_of_its_cookie() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("ｅｘｅｃ('x')  # 設定\n");
        let source = [b"# -*- coding: cp932 -*-\n".as_slice(), &sjis].concat();
        assert_eq!(reading(&source).unwrap(), "# -*- coding: cp932 -*-\nexec('x')  # 設定\n".as_bytes());
        // ISO-2022-JP: escapes back to ASCII vanish from the text CPython reads.
        let source = b"#!python\r\n# coding=ISO_2022-JP\r\nim\x1b(Bport os\r\n";
        assert!(reading(source).unwrap().ends_with(b"import os\r\n"));
        // Latin-1: the ordinal indicators are `a` and `o` in NFKC.
        assert_eq!(
            reading(b"# coding: latin-1\n\xbas.system('x')\n").unwrap(),
            b"# coding: latin-1\nos.system('x')\n"
        );
    }

    /// The encoding a codec is decoded with; `None` for another kind of codec.
    fn decoded(codec: Option<&Codec>) -> Option<&'static encoding_rs::Encoding> {
        match codec {
            Some(Codec::Decoded(encoding)) => Some(encoding),
            _ => None,
        }
    }

    #[test]
    fn the_cookie_is_where_cpython_reads_it() {
        let cases: [(&[u8], bool); 10] = [
            (b"# coding: euc-jp\n", true),
            (b"\x0c \t# vim: set fileencoding=EUC_JP :\n", true),
            (b"\n# coding: euc_jp\n", true),
            (b"#!/usr/bin/env python\r# coding: eucjp\r", true),
            (b"# coding coding=euc-jp\n", true),
            (b"x = 1  # coding: euc-jp\n", false),
            (b"x = 1\n# coding: euc-jp\n", false),
            (b"#\n#\n# coding: euc-jp\n", false),
            (b"\xef\xbb\xbf# coding: euc-jp\n", false),
            (b"# coding: utf-8\n# coding: euc-jp\n", false),
        ];
        for (head, euc) in cases {
            let codec = source_codec(head);
            assert_eq!(
                decoded(codec),
                euc.then_some(encoding_rs::EUC_JP),
                "{}",
                String::from_utf8_lossy(head)
            );
            assert!(euc || matches!(codec, Some(Codec::Utf8)), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn codec_names_are_looked_up_as_cpython_looks_them_up() {
        for name in ["UTF-8", "utf8", "cp65001", "utf-8-unix", "UTF_8_SIG"] {
            assert!(matches!(python_codec(name.as_bytes()), Some(Codec::Utf8)), "{name}");
        }
        for name in
            ["latin-1-unix", "ISO_8859_1_x", "iso-latin-1", "iso8859.1", "1254", "latin9", "437", "charmap"]
        {
            assert!(
                matches!(python_codec(name.as_bytes()), Some(Codec::Folds(f)) if !f.is_empty()),
                "{name}"
            );
        }
        for name in ["--Shift--JIS-", "s.jis", "x_mac_japanese", "cp932"] {
            assert_eq!(decoded(python_codec(name.as_bytes())), Some(encoding_rs::SHIFT_JIS), "{name}");
        }
        // Not followed: the bundled rule flags the escaping ones and those read only in part.
        for name in [
            "utf-16",
            "unicode_escape",
            "cp500",
            "hz",
            "iso2022_kr",
            "shift_jis_2004",
            "johab",
            "idna",
            "nope",
        ] {
            assert!(python_codec(name.as_bytes()).is_none(), "{name}");
        }
        assert!(CODECS.windows(2).all(|w| w[0].0 < w[1].0), "sorted for the binary search");
    }

    #[test]
    fn python_code_is_named_by_its_suffix() {
        for fit in ["pkg/m.py", "setup.py", "tool.pyw", "evil.pth"] {
            assert!(is_python_code(fit), "{fit}");
        }
        for fit in ["m.pyc", "m.pyi", "README.md", "bin/tool", "m.py.txt"] {
            assert!(!is_python_code(fit), "{fit}");
        }
    }
}
