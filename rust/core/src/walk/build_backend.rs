//! An sdist's in-tree build backend. pip builds an sdist by importing the module its
//! `pyproject.toml` names (`[build-system] build-backend`, setuptools' `build_meta` when it names
//! none) with the directories of `backend-path` first on `sys.path`: a module found there runs at
//! install time, as a `setup.py` does, under whatever name it has. The walkers find the root
//! `pyproject.toml` and scan each `.py` file that import can run again as install-time code.
//!
//! What pip does, step by step (pip's `load_pyproject_toml`, pyproject_hooks' `norm_and_check` and
//! `_build_backend`): each `backend-path` entry (a string is iterated character by character) is
//! joined to the source directory and `os.path.normpath`ed, refused when absolute or outside it;
//! pyproject_hooks before 1.1 (pip before 24.1) joins the entries with `os.pathsep` and splits them
//! again in the build process, so an entry holding a `:` becomes several `sys.path` entries, the
//! later ones relative to the working directory (the source directory); later versions keep each
//! whole. `import_module` of `a.b` then imports `a` (its `__init__.py`, or `a.py`) and `a.b`, each
//! from the first of those directories holding it (a file there is read as a zip by `zipimport`).

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::names::{display_name, LeadingDir, Links, Place};
use super::{alias_issue, DistScan, Order, BACKEND_ALIAS};
use crate::issue::{Issue, IssueKind};
use crate::limits::RATIO_GRACE_BYTES;
use crate::service::ContentHashes;
use crate::zipdir::{self, Directory};

/// Appended to the path of a module scanned as the build backend.
pub(super) const BACKEND_READING: &str = "<as the sdist's build backend>";
/// Why a module is scanned as the build backend (an alias issue's text, ending before the name).
pub(super) const BACKEND_WHY: &str =
    "pip imports it to build the sdist (its pyproject.toml's in-tree build backend, from `backend-path`): \
     install-time code, as a setup.py is; the rules for setup.py read it as";
/// The backend pip uses when `[build-system]` names none.
const DEFAULT_BACKEND: &str = "setuptools.build_meta:__legacy__";
/// `backend-path` directories, their depth and the parts of the backend's dotted name followed, at most
/// (real sdists have one or two of each): a hostile `pyproject.toml` of a million entries must not
/// make millions of places to look at. Past one of them the scan is incomplete.
const MAX_DIRECTORIES: usize = 64;
const MAX_DEPTH: usize = 32;
const MAX_PARTS: usize = 32;
/// A `pyproject.toml` is read up to this size (real ones are a few KiB): the TOML parser holds the
/// whole document, and a larger one is incomplete.
const MAX_PYPROJECT: usize = 1 << 20;

/// Whether a member at `place` may be the root `pyproject.toml` (at the top, or under the leading
/// directory pip strips).
pub(super) fn may_be_pyproject(place: &[Vec<u8>]) -> bool {
    place.len() <= 2 && place.last().is_some_and(|name| name == b"pyproject.toml")
}

/// Where importing an sdist's build backend looks in the archive.
#[derive(Debug, Default)]
pub(super) struct BackendSearch {
    /// Each `sys.path` directory `backend-path` adds (under the root), with the `.py` files the import
    /// may run from it.
    directories: Vec<(Place, Vec<Place>)>,
    /// Every directory's modules, sorted.
    modules: Vec<Place>,
}

impl BackendSearch {
    pub(super) fn is_empty(&self) -> bool {
        self.directories.is_empty()
    }

    pub(super) fn modules(&self) -> &[Place] {
        &self.modules
    }

    pub(super) fn is_module(&self, place: &[Vec<u8>]) -> bool {
        self.modules.binary_search_by(|module| module.as_slice().cmp(place)).is_ok()
    }

    /// A directory's place, or a leading part of it, may hold a file: Python puts it on `sys.path` all
    /// the same and `zipimport` reads it as a zip. For each such place `is_file` says holds a file: the
    /// names in that zip of the modules the import may run from it.
    pub(super) fn zips_on_path(&self, is_file: impl Fn(&[Vec<u8>]) -> bool) -> Vec<(Place, Vec<Vec<u8>>)> {
        let mut zips: Vec<(Place, Vec<Vec<u8>>)> = Vec::new();
        for (directory, modules) in &self.directories {
            for length in 1..=directory.len() {
                let file = &directory[..length];
                if is_file(file) {
                    let names = modules.iter().map(|module| module[length..].join(&b'/'));
                    match zips.iter_mut().find(|(place, _)| place == file) {
                        Some((_, inside)) => inside.extend(names),
                        None => zips.push((file.to_vec(), names.collect())),
                    }
                }
            }
        }
        zips
    }
}

/// Where importing the build backend `pyproject` names looks, under `root` (where pip builds: the
/// archive's leading directory when pip strips it). Empty when it names no `backend-path` (the
/// backend then comes from the build environment, not the archive) or is not UTF-8 (pip cannot read
/// it and builds nothing); `Err` saying why when it is not TOML this parser reads (Python's `tomllib`,
/// pip's, might), or names more places than the engine looks at.
pub(super) fn backend_search(pyproject: &[u8], root: &[Vec<u8>]) -> Result<BackendSearch, String> {
    let none = || Ok(BackendSearch::default());
    if pyproject.len() > MAX_PYPROJECT {
        return Err(format!("is larger than the {MAX_PYPROJECT} bytes the engine reads"));
    }
    let Ok(text) = std::str::from_utf8(pyproject) else { return none() };
    let document: toml::Table = text.parse().map_err(|err: toml::de::Error| {
        format!("is not TOML the engine reads ({}); pip (Python's tomllib) may read it", err.message())
    })?;
    let Some(toml::Value::Table(system)) = document.get("build-system") else { return none() };
    // A non-string entry stops pip before any import; taking the strings anyway only scans more.
    let entries: Vec<&str> = match system.get("backend-path") {
        Some(toml::Value::Array(items)) => items.iter().filter_map(toml::Value::as_str).collect(),
        Some(toml::Value::String(text)) => {
            text.char_indices().map(|(i, c)| &text[i..i + c.len_utf8()]).collect()
        }
        _ => Vec::new(),
    };
    if entries.is_empty() {
        return none();
    }
    let backend = match system.get("build-backend") {
        Some(toml::Value::String(backend)) => backend.as_str(),
        None => DEFAULT_BACKEND,
        Some(_) => return none(),
    };
    let module = backend.split_once(':').map_or(backend, |(module, _)| module);
    // `import_module("a..b")` imports `a` before it fails; a leading dot imports nothing.
    let parts: Vec<&str> =
        module.split('.').take_while(|part| !part.is_empty()).take(MAX_PARTS + 1).collect();
    let mut directories: BTreeSet<Place> = BTreeSet::new();
    let mut within = parts.len() <= MAX_PARTS;
    for entry in &entries {
        within = within
            && search_directories(entry, &mut |directory| {
                let deep = directory.len() > MAX_DEPTH;
                directories.insert(directory);
                !deep && directories.len() <= MAX_DIRECTORIES
            });
    }
    if !within {
        return Err(format!(
            "names more places for its build backend's modules than the engine looks at ({MAX_DIRECTORIES} \
             `backend-path` directories {MAX_DEPTH} deep, a name of {MAX_PARTS} parts)"
        ));
    }
    let mut search = BackendSearch::default();
    for directory in directories {
        let directory: Place = [root, &directory].concat();
        let mut modules = Vec::with_capacity(2 * parts.len());
        for depth in 1..=parts.len() {
            let mut package: Place = directory.clone();
            package.extend(parts[..depth].iter().map(|part| part.as_bytes().to_vec()));
            let mut module = package.clone();
            if let Some(last) = module.last_mut() {
                last.extend_from_slice(b".py");
            }
            package.push(b"__init__.py".to_vec());
            modules.push(package);
            modules.push(module);
        }
        search.modules.extend(modules.iter().cloned());
        search.directories.push((directory, modules));
    }
    search.modules.sort();
    search.modules.dedup();
    Ok(search)
}

/// Hand `found` each directory, relative to the source directory, that one `backend-path` entry puts
/// on `sys.path` (none when pip refuses it, nor the parts outside the source directory), until it
/// returns false; false then.
fn search_directories(entry: &str, found: &mut dyn FnMut(Place) -> bool) -> bool {
    if entry.starts_with('/') {
        return true; // "paths must be relative"
    }
    // `os.path.normpath` of the entry joined to the source directory: `..` taken lexically.
    let Some(whole) = normalized(entry.as_bytes()) else { return true };
    let joined = whole.join(&b'/');
    if !found(whole) {
        return false;
    }
    // pyproject_hooks before 1.1 (pip before 24.1) joins the entries with `os.pathsep` and splits them
    // again in the build process: the first piece is under the source directory, the others are
    // relative `sys.path` entries, read against the working directory (the same). Later versions pass
    // them as JSON: the entry whole, above.
    for (i, piece) in joined.split(|&b| b == b':').enumerate() {
        if joined.len() == piece.len() || (i > 0 && piece.starts_with(b"/")) {
            continue;
        }
        if let Some(directory) = normalized(piece) {
            if !found(directory) {
                return false;
            }
        }
    }
    true
}

/// `path`'s components as `os.path.normpath` reads them (empty ones and `.` dropped, `..` taking the one
/// before); `None` when it climbs out: where a member lands when no link is on its way.
fn normalized(path: &[u8]) -> Option<Place> {
    Links::default().locate(path)
}

impl DistScan<'_> {
    /// [`backend_search`] of the archive's root `pyproject.toml` (`None`: it has none); one that is
    /// not TOML the engine reads is an issue: what it may name was not scanned as install-time code.
    pub(super) fn backend_places(
        &self,
        pyproject: Option<&[u8]>,
        root: &[Vec<u8>],
        order: &[u32],
    ) -> BackendSearch {
        let Some(pyproject) = pyproject else { return BackendSearch::default() };
        backend_search(pyproject, root).unwrap_or_else(|why| {
            self.backend_unread(root, order, &why);
            BackendSearch::default()
        })
    }

    /// The root `pyproject.toml` was not read, for the reason `why` gives: the result is incomplete.
    pub(super) fn backend_unread(&self, root: &[Vec<u8>], order: &[u32], why: &str) {
        let path = display_name(&[root, &[b"pyproject.toml".to_vec()]].concat().join(&b'/'));
        let message = format!(
            "the sdist's pyproject.toml {why}: pip imports the in-tree build backend it may name (`backend-path`) \
             to build the sdist, and no module was scanned as that backend"
        );
        self.issue([order, &[BACKEND_ALIAS]].concat(), Issue::new(path, IssueKind::Ambiguous, message));
    }

    /// Scan a member's `content` (the member `path`, at `order`) again as the build backend: under a
    /// `setup.py` name at `root` for the rules, with an informational issue.
    pub(super) fn scan_as_backend(
        &self,
        order: &[u32],
        path: &str,
        root: &[Vec<u8>],
        content: &[u8],
        hashes: &mut ContentHashes,
    ) {
        let alias = format!("{path}{BACKEND_READING}");
        self.issue(order.to_vec(), alias_issue(path, BACKEND_WHY, &alias));
        let fit = display_name(&[root, &[b"setup.py".to_vec()]].concat().join(&b'/'));
        let alias_order: Order = [order, &[BACKEND_ALIAS]].concat();
        self.scan_fitted(alias_order, alias, Some(&fit), content, hashes);
    }

    /// A top-level zip's build backend (see the module's text): its root `pyproject.toml` and the
    /// modules it names read again after the walk, each from the first `allowed` entries. pip unzips an
    /// sdist under each entry's name as `zipfile` reads it (the Unicode Path field's, on Python 3.12 and
    /// later: both are tried), its leading directory stripped, `..` taken lexically.
    pub(super) fn zip_backend(&self, dir: &Directory, data: &[u8], allowed: usize, order: &[u32]) {
        let entries = &dir.entries[..allowed.min(dir.entries.len())];
        // A wheel has no pyproject.toml: nothing more is done for it.
        let may_be_pyproject = |entry: &zipdir::Entry| {
            entry
                .raw_name(data)
                .split(|&b| b == 0)
                .next()
                .is_some_and(|name| name.ends_with(b"pyproject.toml"))
                || entry.unicode_name(data).is_some_and(|name| name.ends_with("pyproject.toml"))
        };
        if !entries.iter().any(may_be_pyproject) {
            return;
        }
        // pip strips the leading directory of the names `zipfile` gives: the Unicode Path field's on
        // Python 3.12 and later, the header's before. Each reading's root is looked at.
        let (mut header_names, mut unicode_names) = (LeadingDir::default(), LeadingDir::default());
        let mut places: Vec<Vec<Place>> = Vec::with_capacity(entries.len());
        for entry in entries {
            let name = entry.decoded_name(data).0;
            let unicode = entry.unicode_name(data);
            header_names.add(name.as_bytes());
            unicode_names.add(unicode.as_deref().unwrap_or(&name).as_bytes());
            let names = std::iter::once(name).chain(unicode);
            places.push(
                names
                    .filter_map(|name| normalized(name.as_bytes()))
                    .filter(|_| !entry.is_dir(data))
                    .collect(),
            );
        }
        let mut roots = vec![header_names.root()];
        if unicode_names.root() != roots[0] {
            roots.push(unicode_names.root());
        }
        for root in roots {
            let pyproject: Place = [root.as_slice(), &[b"pyproject.toml".to_vec()]].concat();
            let Some(index) = places.iter().rposition(|at| at.contains(&pyproject)) else { continue };
            let content = self.zip_content(dir, data, index);
            let search = self.backend_places(content.as_deref(), &root, order);
            if search.is_empty() {
                continue;
            }
            let is_module = |index: usize| places[index].iter().any(|place| search.is_module(place));
            self.scan_backend_entries(dir, data, allowed, is_module, "", &root, order);
            // The last entry at a place is the file there, as extraction leaves it.
            let files: HashMap<&[Vec<u8>], usize> = places
                .iter()
                .enumerate()
                .flat_map(|(index, at)| at.iter().map(move |place| (place.as_slice(), index)))
                .collect();
            for (file, inside) in search.zips_on_path(|place| files.contains_key(place)) {
                let index = files[file.as_slice()];
                if let Some(content) = self.zip_content(dir, data, index) {
                    let path = display_name(entries[index].decoded_name(data).0.as_bytes());
                    self.zip_on_path(&content, &path, &inside, &root, &[order, &[index as u32]].concat());
                }
            }
        }
    }

    /// A member that `backend-path` puts on `sys.path` (at `path`, its content `data`) is read as a zip by
    /// `zipimport`: the build backend's modules it may serve (`inside`: their names in it, see
    /// [`BackendSearch::inside`]) are scanned as the backend. Not a zip, it serves nothing.
    pub(super) fn zip_on_path(
        &self,
        data: &[u8],
        path: &str,
        inside: &[Vec<u8>],
        root: &[Vec<u8>],
        order: &[u32],
    ) {
        let Ok((dir, _)) = Directory::parse(data, self.limits.max_members) else { return };
        // zipimport looks a module up under its exact name in the archive (no `.` or `..` taken away).
        let is_module = |index: usize| {
            let name = dir.entries[index].decoded_name(data).0;
            inside.iter().any(|module| module == name.as_bytes())
        };
        let prefix = format!("{path}!/");
        self.scan_backend_entries(&dir, data, dir.entries.len(), is_module, &prefix, root, order);
    }

    /// Scan as the backend each of the first `allowed` entries of a zip that `is_module` picks (its path:
    /// `prefix` and its name), reading again at most the archive's inflation budget in all (an archive
    /// may hold many entries of one name).
    #[allow(clippy::too_many_arguments)]
    fn scan_backend_entries(
        &self,
        dir: &Directory,
        data: &[u8],
        allowed: usize,
        is_module: impl Fn(usize) -> bool,
        prefix: &str,
        root: &[Vec<u8>],
        order: &[u32],
    ) {
        let budget = self.limits.max_ratio.saturating_mul(data.len() as u64).max(RATIO_GRACE_BYTES);
        let mut read_again = 0u64;
        for index in 0..allowed.min(dir.entries.len()) {
            if self.cancelled() {
                return;
            }
            if !is_module(index) {
                continue;
            }
            let path =
                format!("{prefix}{}", display_name(dir.entries[index].decoded_name(data).0.as_bytes()));
            let entry_order: Order = [order, &[index as u32]].concat();
            let Some(content) = self.zip_content(dir, data, index) else { continue };
            read_again += content.len() as u64;
            if read_again > budget {
                let message = format!(
                    "the modules pip may import as the sdist's build backend inflate more than {}:1 of the \
                     archive in all; this one and the rest were not scanned as that backend",
                    self.limits.max_ratio
                );
                self.issue(entry_order, Issue::new(path, IssueKind::CompressionRatio, message));
                return;
            }
            self.scan_as_backend(&entry_order, &path, root, &content, &mut ContentHashes::default());
        }
    }

    /// A zip entry's content read again, up to the member-size limit (the walk has read it under
    /// every limit and named what stopped it); `None` when it cannot be read.
    fn zip_content(&self, dir: &Directory, data: &[u8], index: usize) -> Option<Vec<u8>> {
        let entry = &dir.entries[index];
        if entry.flags & (zipdir::FLAG_ENCRYPTED | zipdir::FLAG_STRONG_ENCRYPTION) != 0 {
            return None;
        }
        let local = dir.local(data, entry).ok()?;
        let raw =
            zipdir::CountingSlice { data: &data[local.data.clone()], consumed: Arc::new(AtomicU64::new(0)) };
        let decoder = zipdir::decoder(entry.method, entry.flags, entry.size, raw).ok()?;
        let mut content = Vec::new();
        // What inflated before an error is kept, as the walk keeps it.
        let _ = decoder.take(self.limits.max_member_size).read_to_end(&mut content);
        Some(content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(pyproject: &str, root: &str) -> Vec<String> {
        let root: Place = root.split('/').filter(|p| !p.is_empty()).map(|p| p.as_bytes().to_vec()).collect();
        let mut found: Vec<String> = backend_search(pyproject.as_bytes(), &root)
            .unwrap()
            .modules
            .iter()
            .map(|place| String::from_utf8(place.join(&b'/')).unwrap())
            .collect();
        found.sort();
        found
    }

    #[test]
    fn every_module_the_import_may_run_from_each_directory() {
        let pyproject = "[build-system]\nrequires = []\nbuild-backend = \"tools.backend:api\"\nbackend-path = [\"_build\", \"./x/../y\"]\n";
        assert_eq!(
            modules(pyproject, "pkg-1.0"),
            [
                "pkg-1.0/_build/tools.py",
                "pkg-1.0/_build/tools/__init__.py",
                "pkg-1.0/_build/tools/backend.py",
                "pkg-1.0/_build/tools/backend/__init__.py",
                "pkg-1.0/y/tools.py",
                "pkg-1.0/y/tools/__init__.py",
                "pkg-1.0/y/tools/backend.py",
                "pkg-1.0/y/tools/backend/__init__.py",
            ]
        );
    }

    #[test]
    fn setuptools_from_the_tree_when_no_backend_is_named() {
        let pyproject = "[build-system]\nrequires = []\nbackend-path = [\".\"]\n";
        assert_eq!(
            modules(pyproject, ""),
            [
                "setuptools.py",
                "setuptools/__init__.py",
                "setuptools/build_meta.py",
                "setuptools/build_meta/__init__.py"
            ]
        );
    }

    #[test]
    fn entries_split_on_the_path_separator_and_strings_iterated() {
        // "a:b" is two sys.path entries for older pips ("b" relative to the working directory, the source
        // directory), one for later ones.
        let pyproject = "[build-system]\nbuild-backend = \"m\"\nbackend-path = [\"a:b\", \"c:/etc\", \"/abs\", \"../out\"]\n";
        assert_eq!(
            modules(pyproject, "p"),
            [
                "p/a/m.py",
                "p/a/m/__init__.py",
                "p/a:b/m.py",
                "p/a:b/m/__init__.py",
                "p/b/m.py",
                "p/b/m/__init__.py",
                "p/c/m.py",
                "p/c/m/__init__.py",
                "p/c:/etc/m.py",
                "p/c:/etc/m/__init__.py"
            ]
        );
        let pyproject = "[build-system]\nbuild-backend = \"m\"\nbackend-path = \"s.\"\n";
        assert_eq!(modules(pyproject, ""), ["m.py", "m/__init__.py", "s/m.py", "s/m/__init__.py"]);
    }

    #[test]
    fn no_in_tree_backend_and_what_pip_cannot_read() {
        for pyproject in [
            "[build-system]\nrequires = []\nbuild-backend = \"flit_core.buildapi\"\n",
            "[build-system]\nbuild-backend = \"m\"\nbackend-path = []\n",
            "[build-system]\nbuild-backend = \".m\"\nbackend-path = [\".\"]\n",
            "[build-system]\nbuild-backend = 3\nbackend-path = [\".\"]\n",
            "[project]\nname = \"x\"\n",
        ] {
            assert!(modules(pyproject, "p").is_empty(), "{pyproject}");
        }
        assert!(backend_search(b"[build-system]\nbackend-path = [\".\"]\n\xff", &[]).unwrap().is_empty());
        assert!(backend_search(b"[build-system\nbackend-path = [\".\"]\n", &[])
            .unwrap_err()
            .contains("not TOML"));
        // A hostile number of places is refused, not built; repeats of one are one.
        let with = |path: &str| format!("[build-system]\nbuild-backend = \"a.b\"\nbackend-path = {path}\n");
        let huge = with(&format!("\"{}\"", "x".repeat(1 << 20)));
        assert!(backend_search(huge.as_bytes(), &[]).unwrap_err().contains("larger than"));
        let repeated = with(&format!("[\"{}\"]", ":".repeat(1 << 19)));
        // The entry whole (a directory named with colons) and the empty pieces, the source directory.
        assert_eq!(backend_search(repeated.as_bytes(), &[]).unwrap().modules().len(), 8);
        let distinct: Vec<String> = (0..65).map(|i| format!("d{i}")).collect();
        for path in [
            format!("{distinct:?}"),
            format!("[\"{}\"]", distinct.join(":")),
            format!("[\"{}\"]", "a/".repeat(33)),
        ] {
            assert!(
                backend_search(with(&path).as_bytes(), &[]).unwrap_err().contains("more places"),
                "{path}"
            );
        }
        // `a..b`: `a` is imported before the empty part fails.
        let pyproject = "[build-system]\nbuild-backend = \"a..b\"\nbackend-path = [\".\"]\n";
        assert_eq!(modules(pyproject, ""), ["a.py", "a/__init__.py"]);
    }
}
