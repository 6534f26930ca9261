//! How CPython reads the identifiers of Python code: in NFKC form (PEP 3131). `ｅｘｅｃ(...)`,
//! `𝐞𝐯𝐚𝐥(...)` and `oſ.ſyſtem(...)` call `exec`, `eval` and `os.system`, where a rule reading the
//! bytes sees none of those names; such a file is scanned a second time as CPython reads it.

use unicode_normalization::UnicodeNormalization;

/// Appended to a file's path for the reading with its identifiers folded.
pub(super) const READING: &str = "<as Python reads its identifiers>";

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

/// `data` with each character whose NFKC form is ASCII letters, digits and '_' written in that form
/// (in comments and strings too: a reading for rules, not a decoding); bytes that are not UTF-8 are
/// kept. `None` when no character changes: the file reads as it is written.
pub(super) fn folded(data: &[u8]) -> Option<Vec<u8>> {
    if data.is_ascii() {
        return None;
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut offset = 0;
    let mut ascii = [0u8; 18];
    for chunk in data.utf8_chunks() {
        let valid = chunk.valid();
        for (i, c) in valid.char_indices() {
            if c.is_ascii() || !may_fold(c) {
                continue;
            }
            let Some(len) = folded_char(c, &mut ascii) else { continue };
            let at = offset + i;
            let buf = out.get_or_insert_with(|| Vec::with_capacity(data.len()));
            buf.extend_from_slice(&data[copied..at]);
            buf.extend_from_slice(&ascii[..len]);
            copied = at + c.len_utf8();
        }
        offset += valid.len() + chunk.invalid().len();
    }
    let mut buf = out?;
    buf.extend_from_slice(&data[copied..]);
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
        let folded = folded(source).unwrap();
        assert_eq!(folded, "import os\nos.system('exec')\neval(x)  # 設定 file µ\n".as_bytes());
        assert_eq!(folded_char('\u{FF3F}', &mut [0; 18]), Some(1), "fullwidth low line is '_'");
    }

    #[test]
    fn nothing_to_fold_is_no_reading() {
        assert_eq!(folded(b"exec('x')\n"), None);
        assert_eq!(folded("# 設定: µ, é, ŉ\nx = 1\n".as_bytes()), None);
        // Bytes that are not UTF-8 are kept around a folded character.
        assert_eq!(folded(b"\xff\xfe\xef\xbd\x85xec\xc3").unwrap(), b"\xff\xfeexec\xc3");
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
