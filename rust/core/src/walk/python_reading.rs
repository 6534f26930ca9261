//! How CPython reads a Python file: a module in the codec its coding cookie names (PEP 263), a `.pth` file
//! as `site` reads it, identifiers in NFKC form (PEP 3131), lines ending where CPython ends them.
//! `ｅｘｅｃ(...)`, `𝐞𝐯𝐚𝐥(...)` and `oſ.ſyſtem(...)` call `exec`, `eval` and `os.system`, in UTF-8 or, under
//! `# coding: shift_jis`, in Shift_JIS bytes, where a rule reading the bytes sees none of those names; such
//! a file is scanned a second time as CPython reads it.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

use super::python_codecs::{Codec, CODECS};

/// Appended to a file's path for its reading.
pub(crate) const READING: &str = "<as Python reads it>";

/// How CPython takes the code of a file, by the name it is installed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PythonCode {
    /// A module or script (`.py`, `.pyw`): the tokenizer reads it whole, in its coding cookie's codec.
    Source,
    /// A `.pth` file: `site` reads it as text (no cookie counts) and executes each line that starts with
    /// `import`.
    Pth,
}

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

/// How CPython runs the code of a file installed under `fit`, if it does.
pub(super) fn python_code(fit: &str) -> Option<PythonCode> {
    if fit.ends_with(".py") || fit.ends_with(".pyw") {
        Some(PythonCode::Source)
    } else if fit.ends_with(".pth") {
        Some(PythonCode::Pth)
    } else {
        None
    }
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

/// `data` as CPython reads it, when that differs from the bytes: each character whose NFKC form is ASCII
/// letters, digits and '_' written in that form, without a UTF-8 BOM, each line break other than \n and
/// \r\n written as \n. A module is read in the codec its coding cookie names (UTF-8 without one); one read
/// as UTF-8 whose bytes are not UTF-8 gets none (CPython runs none of it), nor does one whose cookie names
/// a codec the reading does not follow. A `.pth` file is read as UTF-8 whatever it says (bytes that are not
/// UTF-8 as U+FFFD: Pythons before 3.13 run the lines before them), its lines split as `site` splits them
/// (at \r too, and since Python 3.13 at `str.splitlines`' other breaks before an `import` line).
pub(super) fn reading(code: PythonCode, data: &[u8]) -> Option<Vec<u8>> {
    let text = match code {
        PythonCode::Source => source_text(data)?,
        PythonCode::Pth => pth_text(data),
    };
    let text = with_lf_line_breaks(code, text);
    if let Cow::Borrowed(unchanged) = text {
        if std::ptr::eq(unchanged, data) {
            return None;
        }
    }
    (*text != *data).then(|| text.into_owned())
}

/// Whether `site` may execute lines of the `.pth` file `data` read in a codec the scan cannot know: it is
/// not UTF-8 (Python 3.13 and later then read it in the locale's codec, as every Python does on a locale
/// that is not UTF-8, like Windows'), and it holds `import`, which every line `site` executes starts with.
pub(super) fn pth_read_in_locale_codec(data: &[u8]) -> bool {
    memchr::memmem::find(data, b"import").is_some() && std::str::from_utf8(data).is_err()
}

/// A module's text as the tokenizer reads it (before line breaks); `None` when the reading does not
/// follow it.
fn source_text(data: &[u8]) -> Option<Cow<'_, [u8]>> {
    Some(match source_codec(data)? {
        Codec::Utf8 if data.is_ascii() => Cow::Borrowed(data),
        Codec::Utf8 => {
            let text = std::str::from_utf8(data).ok()?;
            folded(text.strip_prefix('\u{feff}').unwrap_or(text))
        }
        Codec::Folds(folds) => folded_bytes(data, folds),
        Codec::Decoded(encoding) => {
            Cow::Owned(folded(&encoding.decode_without_bom_handling(data).0).into_owned())
        }
    })
}

/// A `.pth` file's text as `site` reads it (before line breaks): UTF-8, a BOM dropped (as Python 3.13 and
/// later drop it).
fn pth_text(data: &[u8]) -> Cow<'_, [u8]> {
    match String::from_utf8_lossy(data) {
        Cow::Borrowed(text) => folded(text.strip_prefix('\u{feff}').unwrap_or(text)),
        Cow::Owned(text) => Cow::Owned(folded(text.strip_prefix('\u{feff}').unwrap_or(&text)).into_owned()),
    }
}

/// The length of the line break other than \n and \r\n that `rest` starts with: a lone \r (the tokenizer
/// and `site` read it as \n), and in a `.pth` file what else `str.splitlines` splits at (\v, \f,
/// \x1c-\x1e, U+0085, U+2028, U+2029: `site` splits there since Python 3.13) when an `import` line
/// follows. Elsewhere such a character stays: earlier Pythons run it within the line (a form feed is a
/// blank to `exec`), and 3.13 runs no line that does not start with `import`.
fn line_break_len(code: PythonCode, rest: &[u8]) -> Option<usize> {
    let len = match rest {
        [b'\r', b'\n', ..] => return None,
        [b'\r', ..] => return Some(1),
        _ if code == PythonCode::Source => return None,
        [0x0b | 0x0c | 0x1c..=0x1e, ..] => 1,
        [0xc2, 0x85, ..] => 2,
        [0xe2, 0x80, 0xa8 | 0xa9, ..] => 3,
        _ => return None,
    };
    let line = &rest[len..];
    (line.starts_with(b"import ") || line.starts_with(b"import\t")).then_some(len)
}

/// `text` with each line break other than \n and \r\n written as \n: rules read lines as ending there.
fn with_lf_line_breaks(code: PythonCode, text: Cow<'_, [u8]>) -> Cow<'_, [u8]> {
    let breaks_at = |at: usize| line_break_len(code, &text[at..]).is_some();
    let first = match code {
        PythonCode::Source => memchr::memchr_iter(b'\r', &text).find(|&at| breaks_at(at)),
        PythonCode::Pth => (0..text.len()).find(|&at| breaks_at(at)),
    };
    let Some(first) = first else { return text };
    let mut out = Vec::with_capacity(text.len());
    out.extend_from_slice(&text[..first]);
    let mut at = first;
    while at < text.len() {
        match line_break_len(code, &text[at..]) {
            Some(len) => {
                out.push(b'\n');
                at += len;
            }
            None => {
                out.push(text[at]);
                at += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// The codec CPython reads `data` in: the one a coding cookie names (on line 1, or on line 2 when line 1
/// is blank or a comment; lines end at \n, \r\n or \r), else UTF-8. `None` for a codec the reading does not
/// follow, and for a file CPython refuses: after a UTF-8 BOM it takes only a cookie its tokenizer reads as
/// `utf-8`.
fn source_codec(data: &[u8]) -> Option<&'static Codec> {
    const UTF8: &Codec = &Codec::Utf8;
    let (bom, text) = match data.strip_prefix(b"\xef\xbb\xbf") {
        Some(text) => (true, text),
        None => (false, data),
    };
    let Some(name) = cookie(text) else { return Some(UTF8) };
    if bom {
        return (tokenizer_name(name) == Some("utf_8")).then_some(UTF8);
    }
    python_codec(name)
}

/// The codec name of the coding cookie of `text`, where CPython reads one.
fn cookie(text: &[u8]) -> Option<&[u8]> {
    let (first, rest) = split_line(text);
    match coding_spec(first) {
        Some(name) => Some(name),
        None if blank_or_comment(first) => rest.and_then(|rest| coding_spec(split_line(rest).0)),
        None => None,
    }
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

/// The codec CPython's tokenizer reads a cookie's name as (`get_normal_name`: `utf-8`, `latin-1`,
/// `iso-8859-1`, `iso-latin-1` and names beginning so with `-`, on the first 12 characters, `_` as `-`).
fn tokenizer_name(name: &[u8]) -> Option<&'static str> {
    let head: String = name
        .iter()
        .take(12)
        .map(|&b| char::from(if b == b'_' { b'-' } else { b.to_ascii_lowercase() }))
        .collect();
    if head == "utf-8" || head.starts_with("utf-8-") {
        Some("utf_8")
    } else if ["latin-1", "iso-8859-1", "iso-latin-1"]
        .iter()
        .any(|n| head == *n || head.starts_with(&format!("{n}-")))
    {
        Some("latin_1")
    } else {
        None
    }
}

/// A codec as CPython finds it by the name a cookie gives: as [`tokenizer_name`] reads it, else as the
/// codec lookup reads it: in lower case, each run of characters other
/// than letters, digits and '.' as one '_', none at the ends, and an alias also with '.' as '_'.
fn python_codec(name: &[u8]) -> Option<&'static Codec> {
    let mut key = String::with_capacity(name.len());
    match tokenizer_name(name) {
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

/// `data` with each byte `folds` names written as its form.
fn folded_bytes<'a>(data: &'a [u8], folds: &[(u8, &str)]) -> Cow<'a, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    for (at, byte) in data.iter().enumerate().filter(|(_, b)| !b.is_ascii()) {
        let Some((_, form)) = folds.iter().find(|(b, _)| b == byte) else { continue };
        let buf = out.get_or_insert_with(|| Vec::with_capacity(data.len()));
        buf.extend_from_slice(&data[copied..at]);
        buf.extend_from_slice(form.as_bytes());
        copied = at + 1;
    }
    let Some(mut buf) = out else { return Cow::Borrowed(data) };
    buf.extend_from_slice(&data[copied..]);
    Cow::Owned(buf)
}

/// `text` with each character whose NFKC form is ASCII letters, digits and '_' written in that form (in
/// comments and strings too: a reading for rules, not a tokenizer).
fn folded(text: &str) -> Cow<'_, [u8]> {
    let bytes = text.as_bytes();
    if text.is_ascii() {
        return Cow::Borrowed(bytes);
    }
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
    let Some(mut buf) = out else { return Cow::Borrowed(bytes) };
    buf.extend_from_slice(&bytes[copied..]);
    Cow::Owned(buf)
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
        let folded = reading(PythonCode::Source, source).unwrap();
        assert_eq!(folded, "import os\nos.system('exec')\neval(x)  # 設定 file µ\n".as_bytes());
        assert_eq!(folded_char('\u{FF3F}', &mut [0; 18]), Some(1), "fullwidth low line is '_'");
    }

    #[test]
    fn nothing_to_fold_is_no_reading() {
        let source = |data: &[u8]| reading(PythonCode::Source, data);
        assert_eq!(source(b"exec('x')\r\n"), None);
        assert_eq!(source("# 設定: µ, é, ŉ\nx = 1\n".as_bytes()), None);
        // Not UTF-8 and no cookie: CPython runs none of it.
        assert_eq!(source(b"\xef\xbd\x85xec('x') # \xff\n"), None);
        // A `.pth` file or a module in a cookie's codec with nothing to change has no reading either.
        assert_eq!(reading(PythonCode::Pth, b"import site\r\n../lib\n"), None);
        assert_eq!(source(b"# coding: latin-1\nx = '\xe9'\n"), None);
    }

    #[test]
    fn the_bom_goes_and_line_breaks_are_read_as_cpython_reads_them() {
        let source = |data: &[u8]| reading(PythonCode::Source, data);
        assert_eq!(source("\u{feff}ｅｘｅｃ('x')\n".as_bytes()).unwrap(), b"exec('x')\n");
        assert_eq!(source(b"\xef\xbb\xbfx = exec\n").unwrap(), b"x = exec\n");
        // A lone \r ends a line; \r\n is kept, and so are the breaks the tokenizer does not read.
        assert_eq!(source(b"x = exec\r\r\nx(1)\x0c\x0b\r").unwrap(), b"x = exec\n\r\nx(1)\x0c\x0b\n");
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("# coding: sjis\rｅｘｅｃ\r");
        assert_eq!(source(&sjis).unwrap(), b"# coding: sjis\nexec\n");
        assert_eq!(source(b"# coding: latin-1\r\xbas\r").unwrap(), b"# coding: latin-1\nos\n");
    }

    #[test]
    fn a_pth_file_is_read_as_site_reads_it() {
        let pth = |data: &[u8]| reading(PythonCode::Pth, data);
        // Every break `str.splitlines` splits at is a line break before an `import` line; \r\n is kept.
        let breaks = "a\rimport b\x0bimport c\x0cimport\td\x1cimport e\x1dimport f\x1eimport g\u{85}import h\
                      \u{2028}import i\u{2029}import j\r\nk\n";
        let read = "a\nimport b\nimport c\nimport\td\nimport e\nimport f\nimport g\nimport h\nimport i\n\
                    import j\r\nk\n";
        assert_eq!(pth(breaks.as_bytes()).unwrap(), read.as_bytes());
        // Elsewhere they are part of the line, which Pythons before 3.13 run whole.
        assert_eq!(pth(b"import os\x0c;x()\r").unwrap(), b"import os\x0c;x()\n");
        assert_eq!(pth("import os\u{2028}x\x0b import y\n".as_bytes()), None);
        assert_eq!(pth(b"\xef\xbb\xbfimport os\n").unwrap(), b"import os\n");
        // No cookie counts: `site` reads UTF-8 (and `exec` of a str ignores a cookie).
        let cookie = "# coding: latin-1\nimport ｏｓ\n".as_bytes();
        assert_eq!(pth(cookie).unwrap(), b"# coding: latin-1\nimport os\n");
        // Bytes that are not UTF-8: the lines before them run on Pythons before 3.13.
        let tail = [b"import \xef\xbd\x8f\xef\xbd\x93\n# ".as_slice(), &[0xff; 3], b"\n"].concat();
        assert_eq!(pth(&tail).unwrap(), "import os\n# \u{fffd}\u{fffd}\u{fffd}\n".as_bytes());
    }

    #[test]
    fn a_pth_file_not_in_utf8_holding_import_is_read_in_the_locale_codec() {
        assert!(pth_read_in_locale_codec(b"import \xbas\n"));
        assert!(pth_read_in_locale_codec(b"# \xff\nimport\tos\n"));
        assert!(!pth_read_in_locale_codec(b"../lib/\xe9t\xe9\n"), "no line of it runs in any codec");
        assert!(!pth_read_in_locale_codec("import ｏｓ\n".as_bytes()), "UTF-8");
    }

    #[test]
    fn read_in_the_codec_of_its_cookie() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("ｅｘｅｃ('x')  # 設定\n");
        let source = [b"# -*- coding: cp932 -*-\n".as_slice(), &sjis].concat();
        assert_eq!(
            reading(PythonCode::Source, &source).unwrap(),
            "# -*- coding: cp932 -*-\nexec('x')  # 設定\n".as_bytes()
        );
        // ISO-2022-JP: escapes back to ASCII vanish from the text CPython reads.
        let source = b"#!python\r\n# coding=ISO_2022-JP\r\nim\x1b(Bport os\r\n";
        assert!(reading(PythonCode::Source, source).unwrap().ends_with(b"import os\r\n"));
        // Latin-1: the ordinal indicators are `a` and `o` in NFKC.
        assert_eq!(
            reading(PythonCode::Source, b"# coding: latin-1\n\xbas.system('x')\n").unwrap(),
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
        let cases: [(&[u8], bool); 9] = [
            (b"# coding: euc-jp\n", true),
            (b"\x0c \t# vim: set fileencoding=EUC_JP :\n", true),
            (b"\n# coding: euc_jp\n", true),
            (b"#!/usr/bin/env python\r# coding: eucjp\r", true),
            (b"# coding coding=euc-jp\n", true),
            (b"x = 1  # coding: euc-jp\n", false),
            (b"x = 1\n# coding: euc-jp\n", false),
            (b"#\n#\n# coding: euc-jp\n", false),
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
        // After a BOM CPython takes only a cookie its tokenizer reads as utf-8, and refuses the file else.
        for head in
            [b"\xef\xbb\xbf# coding: utf_8-unix\n".as_slice(), b"\xef\xbb\xbf\n# x\n# coding: euc-jp\n"]
        {
            assert!(matches!(source_codec(head), Some(Codec::Utf8)), "{}", String::from_utf8_lossy(head));
        }
        for head in [b"\xef\xbb\xbf# coding: euc-jp\n".as_slice(), b"\xef\xbb\xbf\n# coding: utf8\n"] {
            assert!(source_codec(head).is_none(), "{}", String::from_utf8_lossy(head));
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
        for fit in ["pkg/m.py", "setup.py", "tool.pyw"] {
            assert_eq!(python_code(fit), Some(PythonCode::Source), "{fit}");
        }
        assert_eq!(python_code("evil.pth"), Some(PythonCode::Pth));
        for fit in ["m.pyc", "m.pyi", "README.md", "bin/tool", "m.py.txt", "x.pth.txt"] {
            assert_eq!(python_code(fit), None, "{fit}");
        }
    }
}
