//! Filetype routing: which rules a file needs to be scanned with at all.
//!
//! A match of a rule with a `filetype` only counts for paths ending in one of its suffixes, so a
//! file scanned with such a rule that does not fit its path is scanned for nothing. When the
//! sources allow it, a rule set is compiled in parts instead of whole: a *common* part (every rule
//! that cannot be routed) and one *class* part per distinct set of routable rules a path can fit
//! (a class that only file names reach may share a near superset's part instead). Each file is then
//! scanned with the common part and its class, and the matches that count are exactly those of the
//! whole set.
//!
//! A rule is routable only when moving it into another compiled part cannot change any result:
//! it has a plain `filetype` string, it is neither `global` nor `private`, no other rule's
//! condition names it (or a wildcard that could cover it), and its own condition names no rule.
//! Sources with `include` statements or global rules are never split; a plan for sources with
//! errors fails to compile and the set is then compiled whole, which reports them. Identifiers
//! are matched as bare tokens, over-approximating references: a false reference only keeps a
//! rule in the common part.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use yara_x_parser::cst::{Immutable, Node, NodeOrToken, SyntaxKind};
use yara_x_parser::Parser;

/// More classes than this and routing is not worth its compile time.
pub const MAX_CLASSES: usize = 64;

/// How to compile a rule set in parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The sources with every routable rule blanked out (same origins, same byte offsets, so
    /// compile diagnostics point at the right place); `None` when no rule is left.
    pub common: Option<Vec<(String, String)>>,
    /// One source per class, holding the imports of every source and the class's rules.
    pub classes: Vec<ClassPlan>,
    /// Each `filetype` suffix of a routable rule and the class of a path ending in it.
    pub suffixes: Vec<(String, usize)>,
    /// Every rule identifier, in source order (sources sorted by origin).
    pub order: Vec<String>,
    /// The `filetype` suffixes of each routable rule, to check against the compiled metadata.
    pub routed: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClassPlan {
    pub rules: Vec<String>,
    pub source: String,
}

/// One rule declaration as the planner sees it.
struct Decl {
    origin: usize,
    identifier: String,
    span: std::ops::Range<usize>,
    text: String,
    private: bool,
    filetypes: Option<Vec<String>>,
    /// Bare identifiers in the condition, and prefixes written as `prefix*`.
    names: HashSet<String>,
    wildcards: Vec<String>,
}

/// Plan a split of `sources` (sorted by origin), or `None` when it is impossible or pointless.
pub(crate) fn plan(sources: &[(&str, &str)]) -> Option<Plan> {
    let mut decls = Vec::new();
    let mut imports = Vec::new();
    for (origin, (_, text)) in sources.iter().enumerate() {
        let cst = Parser::new(text.as_bytes()).try_into_cst().ok()?;
        let root = cst.root();
        for item in root.children() {
            match item.kind() {
                SyntaxKind::IMPORT_STMT => imports.push(item.text().to_string()),
                SyntaxKind::RULE_DECL => decls.push(declaration(origin, &item)?),
                // `include` pulls in text the planner has not seen.
                _ => return None,
            }
        }
    }
    let declared: HashSet<&str> = decls.iter().map(|d| d.identifier.as_str()).collect();
    if declared.len() != decls.len() {
        return None; // duplicate names: compiling whole reports the error
    }
    let names_a_rule = |d: &Decl| {
        d.names.iter().any(|n| declared.contains(n.as_str()))
            || d.wildcards.iter().any(|w| declared.iter().any(|r| r.starts_with(w.as_str())))
    };
    // Every name and `prefix*` wildcard other rules' conditions use (a rule naming itself does
    // not compile, so its own names are left out).
    let mut used_names: HashSet<&str> = HashSet::new();
    let mut used_wildcards: Vec<(&str, &str)> = Vec::new();
    for d in &decls {
        used_names.extend(d.names.iter().map(String::as_str).filter(|n| *n != d.identifier));
        used_wildcards.extend(d.wildcards.iter().map(|w| (d.identifier.as_str(), w.as_str())));
    }
    let referenced = |identifier: &str| {
        used_names.contains(identifier)
            || used_wildcards.iter().any(|(owner, w)| *owner != identifier && identifier.starts_with(w))
    };
    let routed: BTreeMap<String, Vec<String>> = decls
        .iter()
        .filter(|d| !d.private && !names_a_rule(d) && !referenced(&d.identifier))
        .filter_map(|d| Some((d.identifier.clone(), d.filetypes.clone()?)))
        .collect();
    if routed.is_empty() {
        return None;
    }

    let suffix_set: BTreeSet<&str> = routed.values().flatten().map(String::as_str).collect();
    let mut classes: Vec<BTreeSet<&str>> = Vec::new();
    let mut suffixes = Vec::new();
    for suffix in suffix_set {
        let members: BTreeSet<&str> = routed
            .iter()
            .filter(|(_, fts)| fts.iter().any(|ft| suffix.ends_with(ft.as_str())))
            .map(|(id, _)| id.as_str())
            .collect();
        let class = classes.iter().position(|c| *c == members).unwrap_or_else(|| {
            classes.push(members);
            classes.len() - 1
        });
        suffixes.push((suffix.to_owned(), class));
    }
    if classes.len() > MAX_CLASSES {
        return None;
    }
    fold_file_name_classes(&mut classes, &mut suffixes);
    let import_block: String = imports.iter().map(|i| format!("{i}\n")).collect();
    let classes: Vec<ClassPlan> = classes
        .iter()
        .map(|members| {
            let mut source = import_block.clone();
            for d in decls.iter().filter(|d| members.contains(d.identifier.as_str())) {
                source.push_str(&d.text);
                source.push('\n');
            }
            ClassPlan { rules: members.iter().map(|m| (*m).to_owned()).collect(), source }
        })
        .collect();

    let common = (decls.len() > routed.len()).then(|| {
        sources
            .iter()
            .enumerate()
            .map(|(origin, (name, text))| {
                let mut bytes = text.as_bytes().to_vec();
                for d in decls.iter().filter(|d| d.origin == origin && routed.contains_key(&d.identifier)) {
                    for b in &mut bytes[d.span.clone()] {
                        if *b != b'\n' {
                            *b = b' ';
                        }
                    }
                }
                // Whole UTF-8 sequences inside the blanked spans became spaces byte by byte.
                ((*name).to_owned(), String::from_utf8(bytes).expect("only whole rules blanked"))
            })
            .collect()
    });
    let order = decls.iter().map(|d| d.identifier.clone()).collect();
    Some(Plan { common, classes, suffixes, order, routed })
}

/// How many more rules, in percent of its own, a class may hold than a class folded into it.
const FOLD_SLACK_PERCENT: usize = 10;

/// Fold each class that only file names reach (suffixes such as `setup.py` or `__init__.py`, which
/// do not start with a dot) into the smallest other class that holds all its rules and at most
/// `FOLD_SLACK_PERCENT`% more. Such files are few (the bench's real corpus: 1,792 `__init__.py`
/// files, 1.8 MB, beside 15,442 other `.py` files, 78 MB), so scanning them with a few more rules,
/// whose matches `filetype` filters out as always, costs nothing measurable; each class is one
/// more compile of the rules it repeats (a large class of the bundled set takes about 90 ms).
fn fold_file_name_classes(classes: &mut Vec<BTreeSet<&str>>, suffixes: &mut [(String, usize)]) {
    loop {
        let file_names_only =
            |class: usize| suffixes.iter().all(|(suffix, c)| *c != class || !suffix.starts_with('.'));
        let near_superset = |from: usize| {
            (0..classes.len())
                .filter(|&into| into != from && classes[into].is_superset(&classes[from]))
                .filter(|&into| {
                    (classes[into].len() - classes[from].len()) * 100
                        <= FOLD_SLACK_PERCENT * classes[into].len()
                })
                .min_by_key(|&into| (classes[into].len(), into))
        };
        let fold = (0..classes.len())
            .filter(|&from| file_names_only(from))
            .find_map(|from| near_superset(from).map(|into| (from, into)));
        let Some((from, into)) = fold else { return };
        classes.remove(from);
        for (_, class) in suffixes.iter_mut() {
            if *class == from {
                *class = into;
            }
            if *class > from {
                *class -= 1;
            }
        }
    }
}

/// Every token under `node`, in order, without trivia.
fn tokens(node: &Node<Immutable>, out: &mut Vec<(SyntaxKind, String)>) {
    for child in node.children_with_tokens() {
        match child {
            NodeOrToken::Node(n) => tokens(&n, out),
            NodeOrToken::Token(t) => {
                if !matches!(t.kind(), SyntaxKind::WHITESPACE | SyntaxKind::NEWLINE | SyntaxKind::COMMENT) {
                    out.push((t.kind(), t.text().to_owned()));
                }
            }
        }
    }
}

fn declaration(origin: usize, rule: &Node<Immutable>) -> Option<Decl> {
    let mut identifier = None;
    let (mut private, mut filetypes, mut meta_seen) = (false, None, false);
    let (mut names, mut wildcards) = (HashSet::new(), Vec::new());
    for child in rule.children_with_tokens() {
        match child {
            NodeOrToken::Token(t) if t.kind() == SyntaxKind::IDENT && identifier.is_none() => {
                identifier = Some(t.text().to_owned());
            }
            NodeOrToken::Token(_) => {}
            NodeOrToken::Node(n) => match n.kind() {
                SyntaxKind::RULE_MODS => {
                    let mut mods = Vec::new();
                    tokens(&n, &mut mods);
                    if mods.iter().any(|(k, _)| *k == SyntaxKind::GLOBAL_KW) {
                        return None; // a global rule constrains every rule: never split
                    }
                    private = mods.iter().any(|(k, _)| *k == SyntaxKind::PRIVATE_KW);
                }
                SyntaxKind::META_BLK => {
                    for def in n.children().filter(|d| d.kind() == SyntaxKind::META_DEF) {
                        let mut parts = Vec::new();
                        tokens(&def, &mut parts);
                        let is_filetype =
                            parts.first().is_some_and(|(_, key)| key == "filetype" || key == "filetypes");
                        if is_filetype && !meta_seen {
                            // The first `filetype`/`filetypes` entry is the one scoring reads.
                            meta_seen = true;
                            filetypes = match parts.as_slice() {
                                [_, _, (SyntaxKind::STRING_LIT, lit)] => plain_string(lit)
                                    .map(|s| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
                                    .filter(|v| !v.is_empty()),
                                _ => None,
                            };
                        }
                    }
                }
                SyntaxKind::CONDITION_BLK => {
                    let mut toks = Vec::new();
                    tokens(&n, &mut toks);
                    for (i, (kind, text)) in toks.iter().enumerate() {
                        if *kind == SyntaxKind::IDENT {
                            if toks.get(i + 1).is_some_and(|(k, _)| *k == SyntaxKind::ASTERISK) {
                                wildcards.push(text.clone());
                            }
                            names.insert(text.clone());
                        }
                    }
                }
                _ => {}
            },
        }
    }
    let span = rule.span().range();
    Some(Decl {
        origin,
        identifier: identifier?,
        text: rule.text().to_string(),
        span,
        private,
        filetypes,
        names,
        wildcards,
    })
}

/// The value of a string literal without escapes; `None` when it has any (left unrouted rather
/// than risk reading it differently from the compiler).
fn plain_string(literal: &str) -> Option<&str> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str) -> Option<Plan> {
        plan(&[("a.yar", text)])
    }

    const ROUTABLE: &str = r#"
import "math"
rule py_1 { meta: filetype = ".py" strings: $a = "x" condition: $a }
rule py_2 { meta: filetype = ".py" strings: $a = "x" condition: $a }
rule py_3 { meta: filetype = ".py" strings: $a = "x" condition: $a }
rule js_1 { meta: filetype = ".js .mjs" strings: $a = "y" condition: $a and math.entropy(0, filesize) > 1 }
rule js_2 { meta: filetype = ".js" strings: $a = "y" condition: $a }
rule js_3 { meta: filetype = ".js" strings: $a = "y" condition: $a }
rule everywhere { strings: $a = "z" condition: $a }
"#;

    #[test]
    fn splits_filetyped_rules_into_classes() {
        let plan = plan_of(ROUTABLE).expect("routable");
        assert_eq!(plan.order, ["py_1", "py_2", "py_3", "js_1", "js_2", "js_3", "everywhere"]);
        assert_eq!(plan.routed.len(), 6);
        let common = &plan.common.as_ref().expect("one rule stays common")[0].1;
        assert_eq!(common.len(), ROUTABLE.len());
        assert!(common.contains("rule everywhere") && !common.contains("py_1"));
        let class_of = |suffix: &str| plan.suffixes.iter().find(|(s, _)| s == suffix).map(|(_, c)| *c);
        assert_eq!(plan.classes[class_of(".py").unwrap()].rules, ["py_1", "py_2", "py_3"]);
        assert_eq!(plan.classes[class_of(".js").unwrap()].rules, ["js_1", "js_2", "js_3"]);
        assert_eq!(plan.classes[class_of(".mjs").unwrap()].rules, ["js_1"]);
        assert!(plan.classes[class_of(".js").unwrap()].source.starts_with("import \"math\"\n"));
        assert_eq!(plan.classes.len(), 3);
    }

    #[test]
    fn nested_suffixes_share_rules() {
        let plan = plan_of(
            r#"rule a { meta: filetype = ".py" condition: true }
               rule b { meta: filetype = "setup.py" condition: true }"#,
        )
        .expect("routable");
        assert!(plan.common.is_none());
        let class = plan.suffixes.iter().find(|(s, _)| s == "setup.py").unwrap().1;
        assert_eq!(plan.classes[class].rules, ["a", "b"]);
    }

    /// Nine `.py` rules, one for `.pyw` files too, one for `setup.py` and `__init__.py` files, and
    /// `setup_only` rules for `setup.py` alone.
    fn file_name_classes(setup_only: usize) -> String {
        let mut text = String::new();
        for i in 0..9 {
            text += &format!("rule py_{i} {{ meta: filetype = \".py\" condition: true }}\n");
        }
        text += "rule windowed { meta: filetype = \".py .pyw\" condition: true }\n";
        text += "rule package { meta: filetype = \"setup.py __init__.py\" condition: true }\n";
        for i in 0..setup_only {
            text += &format!("rule setup_{i} {{ meta: filetype = \"setup.py\" condition: true }}\n");
        }
        text
    }

    #[test]
    fn a_class_only_file_names_reach_folds_into_a_near_superset() {
        let class_of = |plan: &Plan, suffix: &str| plan.suffixes.iter().find(|(s, _)| s == suffix).unwrap().1;
        // `__init__.py` fits 11 rules, `setup.py` those and one more (1/12 more): one class.
        let plan = plan_of(&file_name_classes(1)).expect("routable");
        assert_eq!(class_of(&plan, "__init__.py"), class_of(&plan, "setup.py"));
        assert_eq!(plan.classes[class_of(&plan, "setup.py")].rules.len(), 12);
        // `.pyw` fits 1 rule, but an extension reaches it; `.py` fits 10 of `__init__.py`'s 11, but
        // every `.py` file would then be scanned with them.
        assert_eq!(plan.classes.len(), 3);
        assert_eq!(plan.classes[class_of(&plan, ".py")].rules.len(), 10);
        // Three more (3/14 more): `__init__.py` keeps its own class.
        let plan = plan_of(&file_name_classes(3)).expect("routable");
        assert_ne!(class_of(&plan, "__init__.py"), class_of(&plan, "setup.py"));
        assert_eq!(plan.classes.len(), 4);
    }

    #[test]
    fn references_keep_rules_common() {
        // Referenced by name, by wildcard, referencing another rule, private: none is routed.
        for text in [
            r#"rule a { meta: filetype = ".py" condition: true } rule b { condition: a }"#,
            r#"rule gen_a { meta: filetype = ".py" condition: true } rule b { condition: any of (gen_*) }"#,
            r#"rule a { condition: true } rule b { meta: filetype = ".py" condition: a }"#,
            r#"private rule a { meta: filetype = ".py" condition: true } rule b { condition: true }"#,
            r#"rule a { meta: filetype = "\x2epy" condition: true }"#,
            r#"rule a { meta: filetype = 3 condition: true }"#,
        ] {
            assert_eq!(plan_of(text), None, "{text}");
        }
    }

    #[test]
    fn never_splits_global_rules_includes_or_duplicates() {
        for text in [
            r#"global rule g { condition: filesize < 10 } rule a { meta: filetype = ".py" condition: true }"#,
            r#"include "other.yar" rule a { meta: filetype = ".py" condition: true }"#,
            r#"rule a { meta: filetype = ".py" condition: true } rule a { condition: true }"#,
        ] {
            assert_eq!(plan_of(text), None, "{text}");
        }
    }

    #[test]
    fn the_first_filetype_entry_counts() {
        let plan = plan_of(r#"rule a { meta: filetype = ".py" filetype = ".js" condition: true }"#).unwrap();
        assert_eq!(plan.routed["a"], [".py"]);
    }
}
