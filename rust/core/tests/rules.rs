//! Compiling, describing and serializing rule sets.

use dragonfly_core::{Meta, RuleSet, RulesError, COMPILED_MAGIC};

#[test]
fn metadata_weight_and_filetype() {
    let rules = RuleSet::compile([(
        "a.yar",
        r#"rule one : tag1 tag2 { meta: weight = 7 filetype = ".py .pth" description = "d" condition: true }
           rule two { meta: weight = "seven" filetypes = ".txt" condition: true }
           rule three { condition: true }"#,
    )])
    .unwrap();
    let infos = rules.infos();
    assert_eq!(infos.len(), 3);
    assert_eq!((infos[0].identifier.as_str(), infos[0].weight), ("one", 7));
    assert_eq!(infos[0].tags, vec!["tag1", "tag2"]);
    assert_eq!(infos[0].filetypes, vec![".py", ".pth"]);
    assert!(infos[0].metadata.contains(&("description".into(), Meta::Str("d".into()))));
    assert!(infos[0].applies_to("x/y.pth") && !infos[0].applies_to("x/y.pyc"));
    // A non-integer weight counts as 0; the reference node's `filetypes` spelling is accepted.
    assert_eq!(infos[1].weight, 0);
    assert_eq!(infos[1].filetypes, vec![".txt"]);
    assert!(infos[2].applies_to("anything"));
}

#[test]
fn a_repeated_metadata_key_keeps_its_first_value() {
    let rules = RuleSet::compile([(
        "a.yar",
        r#"rule r { meta: weight = 3 note = "a" weight = 9 note = "b" x = true condition: true }"#,
    )])
    .unwrap();
    let info = &rules.infos()[0];
    assert_eq!(info.weight, 3);
    assert_eq!(
        info.metadata,
        vec![
            ("weight".into(), Meta::Int(3)),
            ("note".into(), Meta::Str("a".into())),
            ("x".into(), Meta::Bool(true))
        ]
    );
}

#[test]
fn compile_errors_name_file_line_and_column() {
    let err = RuleSet::compile([
        ("good.yar", "rule ok { condition: true }"),
        ("bad.yar", "rule ok2 {\n  strings: $a = \"x\"\n  condition: $b\n}"),
    ])
    .unwrap_err();
    let RulesError::Compile(diags) = &err else { panic!("{err}") };
    assert_eq!(diags.len(), 1);
    assert_eq!((diags[0].origin.as_str(), diags[0].line, diags[0].column), ("bad.yar", 3, 14));
    assert!(err.to_string().starts_with("bad.yar:3:14: "), "{err}");
}

#[test]
fn duplicate_rule_names_across_sources_are_errors() {
    let err = RuleSet::compile([
        ("a.yar", "rule same { condition: true }"),
        ("b.yar", "rule same { condition: true }"),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("same"), "{err}");
}

#[test]
fn standard_modules_are_available() {
    RuleSet::compile([(
        "m.yar",
        r#"import "pe" import "elf" import "math" import "hash" import "dotnet" import "macho" import "time"
           rule m { condition: pe.is_pe or elf.type == 1 or math.entropy(0, filesize) > 7 or hash.md5(0, 1) == "" }"#,
    )])
    .unwrap();
}

#[test]
fn serialize_round_trip_keeps_hash_and_rules() {
    let rules = RuleSet::compile([("a.yar", "rule x { meta: weight = 2 condition: true }")]).unwrap();
    let blob = rules.serialize();
    assert!(blob.starts_with(COMPILED_MAGIC));
    let back = RuleSet::deserialize(&blob).unwrap();
    assert_eq!(back.hash(), rules.hash());
    assert_eq!(back.infos()[0].weight, 2);
    assert!(matches!(RuleSet::deserialize(b"junk"), Err(RulesError::Format(_))));
    assert!(matches!(RuleSet::deserialize(&blob[..blob.len() / 2]), Err(RulesError::Format(_))));
}

fn format_error(blob: &[u8]) -> String {
    match RuleSet::deserialize(blob) {
        Err(RulesError::Format(message)) => message,
        other => panic!("expected a format error, got {:?}", other.map(|r| r.hash().to_owned())),
    }
}

#[test]
fn a_damaged_blob_is_refused_before_its_machine_code_is_loaded() {
    let rules = RuleSet::compile([("a.yar", "rule x { strings: $a = \"evil\" condition: $a }")]).unwrap();
    let blob = rules.serialize();
    // The body starts after the rule-set hash line (64 hex digits) and the checksum line (8). Every byte
    // of it counts: a flipped bit anywhere (in the machine code too) is caught.
    let body = COMPILED_MAGIC.len() + 65 + 9;
    for at in [body, body + (blob.len() - body) / 3, body + (blob.len() - body) / 2, blob.len() - 1] {
        let mut damaged = blob.clone();
        damaged[at] ^= 0x10;
        assert!(format_error(&damaged).contains("checksum does not match"), "flip at {at}");
    }
    let mut renamed = blob.clone();
    let first = COMPILED_MAGIC.len(); // the rule-set hash line is covered too
    renamed[first] = if renamed[first] == b'0' { b'1' } else { b'0' };
    assert!(format_error(&renamed).contains("checksum does not match"));
    let mut earlier = blob.clone();
    for version in [1, 3] {
        // format 1 had no checksum; format 3 a SHA-256 one
        earlier[COMPILED_MAGIC.len() - 2] = version;
        assert!(format_error(&earlier).contains("earlier version"), "format {version}");
    }
}

#[test]
fn hash_is_stable_and_order_independent() {
    let a =
        RuleSet::compile([("a.yar", "rule a { condition: true }"), ("b.yar", "rule b { condition: true }")])
            .unwrap();
    let b =
        RuleSet::compile([("b.yar", "rule b { condition: true }"), ("a.yar", "rule a { condition: true }")])
            .unwrap();
    assert_eq!(a.hash(), b.hash());
    let c =
        RuleSet::compile([("a.yar", "rule a { condition: false }"), ("b.yar", "rule b { condition: true }")])
            .unwrap();
    assert_ne!(a.hash(), c.hash());
}

#[test]
fn files_no_rule_can_count_for_are_known() {
    let typed = RuleSet::compile([(
        "a.yar",
        r#"rule a { meta: filetype = ".py .pth" condition: true } rule b { meta: filetype = "setup.py" condition: true }"#,
    )])
    .unwrap();
    assert!(typed.may_apply("pkg/x.py") && typed.may_apply("x.pth") && typed.may_apply("setup.py"));
    assert!(!typed.may_apply("pkg/data.json") && !typed.may_apply("pkg/x.pyc"));
    let untyped = RuleSet::compile([(
        "a.yar",
        r#"rule a { meta: filetype = ".py" condition: true } rule b { condition: true }"#,
    )])
    .unwrap();
    assert!(untyped.may_apply("pkg/data.json"));
}
