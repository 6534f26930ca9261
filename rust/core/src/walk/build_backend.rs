//! An sdist's in-tree build backend. pip builds an sdist by importing the module its
//! `pyproject.toml` names (`[build-system] build-backend`, setuptools' `build_meta` when it names
//! none) with the directories of `backend-path` first on `sys.path`: a module found there runs at
//! install time, as a `setup.py` does, under whatever name it has. The walkers find the root
//! `pyproject.toml` and scan each `.py` file that import can run again as install-time code.
//!
//! What pip does, step by step (pip's `load_pyproject_toml`, pyproject_hooks' `norm_and_check` and
//! `_build_backend`): each `backend-path` entry (a string is iterated character by character) is
//! joined to the source directory and `os.path.normpath`ed, refused when absolute or outside it;
//! the entries are joined with `os.pathsep` and split on it again in the build process, so an entry
//! holding a `:` becomes several `sys.path` entries, the later ones relative to the working
//! directory (the source directory). `import_module` of `a.b` then imports `a` (its `__init__.py`,
//! or `a.py`) and `a.b`, each from the first `sys.path` entry holding it.

use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::names::{display_name, LeadingDir, Place};
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

/// Whether a member at `place` may be the root `pyproject.toml` (at the top, or under the leading
/// directory pip strips).
pub(super) fn may_be_pyproject(place: &[Vec<u8>]) -> bool {
    place.len() <= 2 && place.last().is_some_and(|name| name == b"pyproject.toml")
}

/// Where importing an sdist's build backend looks in the archive.
#[derive(Default)]
pub(super) struct BackendSearch {
    /// The `sys.path` entries `backend-path` adds, under the root.
    pub(super) directories: Vec<Place>,
    /// The `.py` files the import may run from them.
    pub(super) modules: Vec<Place>,
}

impl BackendSearch {
    pub(super) fn is_empty(&self) -> bool {
        self.directories.is_empty()
    }

    /// When a file is at `file`, where `backend-path` names a directory (or one inside it): Python puts
    /// it on `sys.path` all the same and `zipimport` reads it as a zip. The names in that zip of the
    /// modules the import may run from it.
    pub(super) fn inside(&self, file: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let directories: Vec<&Place> = self.directories.iter().filter(|d| d.starts_with(file)).collect();
        self.modules
            .iter()
            .filter(|module| directories.iter().any(|d| module.starts_with(d) && module.len() > d.len()))
            .map(|module| module[file.len()..].join(&b'/'))
            .collect()
    }
}

/// Where importing the build backend `pyproject` names looks, under `root` (where pip builds: the
/// archive's leading directory when pip strips it). Empty when it names no `backend-path` (the
/// backend then comes from the build environment, not the archive) or is not UTF-8 (pip cannot read
/// it and builds nothing); `Err` with the parser's message when it is not TOML this parser reads
/// (Python's `tomllib`, pip's, might).
pub(super) fn backend_search(pyproject: &[u8], root: &[Vec<u8>]) -> Result<BackendSearch, String> {
    let none = || Ok(BackendSearch::default());
    let Ok(text) = std::str::from_utf8(pyproject) else { return none() };
    let document: toml::Table = text.parse().map_err(|err: toml::de::Error| err.message().to_owned())?;
    let Some(toml::Value::Table(system)) = document.get("build-system") else { return none() };
    // A non-string entry stops pip before any import; taking the strings anyway only scans more.
    let entries: Vec<String> = match system.get("backend-path") {
        Some(toml::Value::Array(items)) => {
            items.iter().filter_map(|item| item.as_str().map(str::to_owned)).collect()
        }
        Some(toml::Value::String(text)) => text.chars().map(String::from).collect(),
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
    let parts: Vec<&str> = module.split('.').take_while(|part| !part.is_empty()).collect();
    let mut directories: Vec<Place> = entries
        .iter()
        .flat_map(|entry| search_directories(entry))
        .map(|directory| [root, &directory].concat())
        .collect();
    directories.sort();
    directories.dedup();
    let mut modules = Vec::new();
    for directory in &directories {
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
    }
    modules.sort();
    modules.dedup();
    Ok(BackendSearch { directories, modules })
}

/// The directories, relative to the source directory, that one `backend-path` entry puts on
/// `sys.path` (none when pip refuses it, or for the parts outside the source directory).
fn search_directories(entry: &str) -> Vec<Place> {
    if entry.starts_with('/') {
        return Vec::new(); // "paths must be relative"
    }
    // `os.path.normpath` of the entry joined to the source directory: `..` taken lexically.
    let Some(normalized) = lexical(entry.as_bytes()) else { return Vec::new() };
    let joined = normalized.join(&b'/');
    // pyproject_hooks before 1.1 (pip before 24.1) joins the entries with `os.pathsep` and splits them
    // again in the build process: the first piece is under the source directory, the others are
    // relative `sys.path` entries, read against the working directory (the same). Later versions pass
    // them as JSON: the entry whole.
    let pieces = joined
        .split(|&b| b == b':')
        .enumerate()
        .filter(|(i, piece)| *i == 0 || !piece.starts_with(b"/"))
        .filter_map(|(_, piece)| lexical(piece));
    std::iter::once(normalized.clone()).chain(pieces).collect()
}

/// `path`'s components with empty ones and `.` dropped and `..` applied to the one before;
/// `None` when it climbs out.
pub(super) fn lexical(path: &[u8]) -> Option<Place> {
    let mut parts: Place = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            other => parts.push(other.to_vec()),
        }
    }
    Some(parts)
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
        backend_search(pyproject, root).unwrap_or_else(|err| {
            self.backend_unread(
                root,
                order,
                &format!("is not TOML the engine reads ({err}); pip (Python's tomllib) may read it"),
            );
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
                names.filter_map(|name| lexical(name.as_bytes())).filter(|_| !entry.is_dir(data)).collect(),
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
            let is_module = |index: usize| places[index].iter().any(|place| search.modules.contains(place));
            self.scan_backend_entries(dir, data, allowed, is_module, "", &root, order);
            for (index, at) in places.iter().enumerate() {
                let inside: Vec<Vec<u8>> = at.iter().flat_map(|place| search.inside(place)).collect();
                if !inside.is_empty() {
                    if let Some(content) = self.zip_content(dir, data, index) {
                        let path = display_name(entries[index].decoded_name(data).0.as_bytes());
                        self.zip_on_path(&content, &path, &inside, &root, &[order, &[index as u32]].concat());
                    }
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
        assert!(backend_search(b"[build-system\nbackend-path = [\".\"]\n", &[]).is_err());
        // `a..b`: `a` is imported before the empty part fails.
        let pyproject = "[build-system]\nbuild-backend = \"a..b\"\nbackend-path = [\".\"]\n";
        assert_eq!(modules(pyproject, ""), ["a.py", "a/__init__.py"]);
    }
}
