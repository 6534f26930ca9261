//! Filetype routing: a rule set compiled in parts gives exactly the results of the same set
//! compiled whole, survives serialization, reports compile errors where they were written, and
//! never lets one class's cached matches stand in for another's.

mod common;

use common::{scan, tar_gz, zip};
use dragonfly_core::{Engine, Limits, RuleSet, RulesError, COMPILED_MAGIC, COMPILED_ROUTED_MAGIC};

// `/setup.py` fits a root `setup.py` too (the reference node's absolute path); `\\x20` is an escape,
// which YARA-X hands over as bytes.
const SUFFIXES: [&str; 10] = [
    ".py",
    ".py .pyi",
    "setup.py",
    ".js",
    ".txt .md",
    ".pth",
    ".sh .bat",
    "/setup.py",
    "/run.sh .md",
    ".js\\x20.pth",
];
const WORDS: [&str; 6] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
const PATHS: [&str; 10] = [
    "pkg/a.py",
    "pkg/setup.py",
    "pkg/x.pyi",
    "web/app.js",
    "README.md",
    "notes.txt",
    "hook.pth",
    "run.sh",
    "data.bin",
    "pkg/nosuffix",
];

/// A small deterministic generator, so the cases are the same in every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Rules over a few words: some count everywhere, some only for some suffixes, one references
/// another (which keeps both whole) and one is private.
fn rule_source(rng: &mut Lcg, count: usize) -> String {
    let mut out = String::from("import \"math\"\n");
    for i in 0..count {
        let filetype = if rng.next(3) == 0 {
            String::new()
        } else {
            format!(" filetype = \"{}\"", SUFFIXES[rng.next(SUFFIXES.len())])
        };
        let (a, b) = (WORDS[rng.next(WORDS.len())], WORDS[rng.next(WORDS.len())]);
        let condition = match rng.next(4) {
            0 => "$a or #b > 3".to_owned(),
            1 => "$a and $b".to_owned(),
            2 => "#a > 1 or ($b and math.entropy(0, filesize) > 1)".to_owned(),
            _ => "any of them".to_owned(),
        };
        out.push_str(&format!(
            "rule r{i} {{ meta: weight = {}{filetype} strings: $a = \"{a}\" $b = \"{b}\" condition: {condition} }}\n",
            i % 5
        ));
    }
    out.push_str("private rule hidden { meta: filetype = \".js\" strings: $a = \"echo\" condition: $a }\n");
    out.push_str("rule uses_hidden { meta: weight = 2 filetype = \".py\" condition: hidden or r0 }\n");
    out
}

fn files(rng: &mut Lcg) -> Vec<(String, Vec<u8>)> {
    (0..40)
        .map(|i| {
            let words: Vec<&str> = (0..rng.next(5)).map(|_| WORDS[rng.next(WORDS.len())]).collect();
            // Half of the first ten at the archive's root (their names all differ), where a suffix
            // starting with `/` fits the whole name.
            let path = if i < PATHS.len() && rng.next(2) == 0 {
                PATHS[i].rsplit('/').next().unwrap().to_owned()
            } else {
                format!("{i}/{}", PATHS[rng.next(PATHS.len())])
            };
            (path, words.join(" ").into_bytes())
        })
        .collect()
}

fn engine(rules: RuleSet) -> Engine {
    Engine::new(rules, Limits::default(), Some(2)).unwrap()
}

#[test]
fn routed_results_equal_whole_results() {
    let mut rng = Lcg(7);
    let mut class_counts = Vec::new();
    for case in 0..12 {
        let source = rule_source(&mut rng, 10 + 10 * case);
        let routed = RuleSet::compile([("gen.yar", source.as_str())]).unwrap();
        let whole = RuleSet::compile_whole([("gen.yar", source.as_str())]).unwrap();
        class_counts.extend(routed.routed_classes());
        assert!(routed.routed_classes().is_some(), "case {case} is routed");
        assert_eq!(whole.routed_classes(), None);
        assert_eq!(routed.hash(), whole.hash());
        let ids = |set: &RuleSet| set.infos().iter().map(|i| i.identifier.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&routed), ids(&whole), "same rules in the same order");
        assert_eq!(routed.infos(), whole.infos());

        let entries = files(&mut rng);
        let borrowed: Vec<(&str, &[u8])> = entries.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
        for (name, archive) in [("c.tar.gz", tar_gz(&borrowed)), ("c.zip", zip(&borrowed))] {
            let expected = scan(&engine(whole.clone()), name, &archive);
            let actual = scan(&engine(routed.clone()), name, &archive);
            assert!(!expected.files.is_empty(), "case {case}: the generator makes matches");
            assert_eq!(actual.files, expected.files, "case {case} {name}");
            assert_eq!(actual.issues, expected.issues);
            assert_eq!((actual.files_scanned, actual.score()), (expected.files_scanned, expected.score()));
        }
    }
    assert!(class_counts.iter().any(|&n| n > 2), "several classes exercised: {class_counts:?}");
}

#[test]
fn serialized_routed_sets_stay_routed() {
    let source = rule_source(&mut Lcg(3), 20);
    let rules = RuleSet::compile([("gen.yar", source.as_str())]).unwrap();
    let blob = rules.serialize();
    assert!(blob.starts_with(COMPILED_ROUTED_MAGIC));
    let back = RuleSet::deserialize(&blob).unwrap();
    assert_eq!((back.hash(), back.routed_classes()), (rules.hash(), rules.routed_classes()));
    assert_eq!(back.infos(), rules.infos());
    let entries = files(&mut Lcg(5));
    let borrowed: Vec<(&str, &[u8])> = entries.iter().map(|(p, d)| (p.as_str(), d.as_slice())).collect();
    let archive = tar_gz(&borrowed);
    assert_eq!(
        scan(&engine(back), "t.tar.gz", &archive).files,
        scan(&engine(rules), "t.tar.gz", &archive).files
    );

    // Every truncation, and trailing bytes, are refused with a format error.
    for cut in
        [COMPILED_ROUTED_MAGIC.len() + 10, COMPILED_ROUTED_MAGIC.len() + 70, blob.len() / 2, blob.len() - 1]
    {
        assert!(matches!(RuleSet::deserialize(&blob[..cut]), Err(RulesError::Format(_))), "cut at {cut}");
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert!(matches!(RuleSet::deserialize(&longer), Err(RulesError::Format(_))));

    // A whole set still writes and reads the first format.
    let whole = RuleSet::compile_whole([("gen.yar", source.as_str())]).unwrap();
    let whole_blob = whole.serialize();
    assert!(whole_blob.starts_with(COMPILED_MAGIC));
    assert_eq!(RuleSet::deserialize(&whole_blob).unwrap().routed_classes(), None);
}

/// Two filetype classes and a rule for every file.
const SEPARATE_CLASSES: &str = r#"
rule py_a { meta: weight = 3 filetype = ".py" strings: $a = "shared" condition: $a }
rule py_b { meta: weight = 3 filetype = ".py" strings: $a = "nothing" condition: $a }
rule py_c { meta: weight = 3 filetype = ".py" strings: $a = "nothing" condition: $a }
rule js_a { meta: weight = 4 filetype = ".js" strings: $a = "shared" condition: $a }
rule js_b { meta: weight = 4 filetype = ".js" strings: $a = "nothing" condition: $a }
rule js_c { meta: weight = 4 filetype = ".js" strings: $a = "nothing" condition: $a }
rule any_word { meta: weight = 1 strings: $a = "shared" condition: $a }
"#;

#[test]
fn blobs_whose_routing_table_lies_are_refused() {
    let rules = RuleSet::compile([("r.yar", SEPARATE_CLASSES)]).unwrap();
    assert_eq!(rules.routed_classes(), Some(2));
    let blob = rules.serialize();
    let entry = b"\x03\x00\x00\x00.py";
    let at = blob.windows(entry.len()).position(|w| w == entry).expect("the .py entry") + entry.len();
    let class = u32::from_le_bytes(blob[at..at + 4].try_into().unwrap());
    let mut forged = blob.clone();
    forged[at..at + 4].copy_from_slice(&(1 - class).to_le_bytes());
    // `.py` files would be scanned with the `.js` rules only: reported clean. Refused instead.
    assert!(matches!(RuleSet::deserialize(&forged), Err(RulesError::Format(_))));
    assert!(RuleSet::deserialize(&blob).is_ok());
}

#[test]
fn errors_in_routable_rules_point_at_their_source() {
    let err = RuleSet::compile([
        ("good.yar", "rule ok { condition: true }"),
        ("bad.yar", "rule fine { meta: filetype = \".py\" condition: true }\nrule broken {\n  meta: filetype = \".js\"\n  strings: $a = \"x\"\n  condition: $b\n}"),
    ])
    .unwrap_err();
    let RulesError::Compile(diags) = &err else { panic!("{err}") };
    assert_eq!((diags[0].origin.as_str(), diags[0].line, diags[0].column), ("bad.yar", 5, 14), "{err}");
}

#[test]
fn one_content_at_two_paths_gets_each_paths_rules() {
    let source = SEPARATE_CLASSES;
    let rules = RuleSet::compile([("r.yar", source)]).unwrap();
    assert_eq!(rules.routed_classes(), Some(2));
    let engine = Engine::new(rules, Limits::default(), Some(1)).unwrap().with_cache_journal(true);
    let archive =
        tar_gz(&[("a.py", b"shared"), ("b.js", b"shared"), ("c.txt", b"shared"), ("d.py", b"shared")]);
    let report = scan(&engine, "s.tar.gz", &archive);
    let hits: Vec<(&str, Vec<&str>)> = report
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.hits.iter().map(|h| h.rule.identifier.as_str()).collect()))
        .collect();
    assert_eq!(
        hits,
        [
            ("a.py", vec!["py_a", "any_word"]),
            ("b.js", vec!["js_a", "any_word"]),
            ("c.txt", vec!["any_word"]),
            ("d.py", vec!["py_a", "any_word"]),
        ]
    );
    // Three routes, three cache entries; the second .py file is a hit.
    let stats = engine.cache_stats();
    assert_eq!((stats.entries, stats.misses, stats.hits), (3, 3, 1), "{stats:?}");

    // Entries journaled by the routed engine never answer for the whole set (keys differ), so
    // an engine loading them still scans and finds everything.
    let journal = engine.take_cache_journal().unwrap();
    let whole = Engine::new(RuleSet::compile_whole([("r.yar", source)]).unwrap(), Limits::default(), Some(1))
        .unwrap();
    whole.import_cache(journal.iter().map(|(k, b)| (*k, b.as_slice())));
    let again = scan(&whole, "s.tar.gz", &archive);
    assert_eq!(again.files, report.files);
    let stats = whole.cache_stats();
    assert_eq!((stats.misses, stats.hits), (1, 3), "the whole set's keys are plain content hashes");
}

#[test]
fn a_folded_file_name_class_gives_the_results_of_the_whole_set() {
    // `__init__.py` fits ten rules, `setup.py` those and one more: one class for both, whose
    // `setup.py` rule must still count for `setup.py` files alone.
    let mut source: String = (0..9)
        .map(|i| {
            format!("rule py_{i} {{ meta: filetype = \".py\" strings: $a = \"word{i}\" condition: $a }}\n")
        })
        .collect();
    source += "rule package { meta: weight = 2 filetype = \"setup.py __init__.py\" strings: $a = \"shared\" condition: $a }\n";
    source += "rule setup_only { meta: weight = 3 filetype = \"setup.py\" strings: $a = \"shared\" condition: $a }\n";
    let routed = RuleSet::compile([("r.yar", source.as_str())]).unwrap();
    let whole = RuleSet::compile_whole([("r.yar", source.as_str())]).unwrap();
    assert_eq!(routed.routed_classes(), Some(2), "`.py`, and `setup.py` with `__init__.py`");
    let content: &[u8] = b"shared word0 word8";
    let entries =
        [("pkg/__init__.py", content), ("setup.py", content), ("pkg/a.py", content), ("notes.txt", content)];
    for (name, archive) in [("f.tar.gz", tar_gz(&entries)), ("f.zip", zip(&entries))] {
        let expected = scan(&engine(whole.clone()), name, &archive);
        let actual = scan(&engine(routed.clone()), name, &archive);
        assert_eq!(actual.files, expected.files, "{name}");
        let rules_of = |path: &str| -> Vec<String> {
            let file = actual.files.iter().find(|f| f.path == path).expect("a file with matches");
            file.hits.iter().map(|h| h.rule.identifier.clone()).collect()
        };
        assert_eq!(rules_of("pkg/__init__.py"), ["py_0", "py_8", "package"], "{name}");
        assert_eq!(rules_of("setup.py"), ["py_0", "py_8", "package", "setup_only"], "{name}");
    }
}
