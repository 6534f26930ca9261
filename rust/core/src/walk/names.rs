//! Member names: how they are shown, what is wrong with them, and which names a link makes a
//! member's content appear under once pip has unpacked the archive.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

/// Longest member path kept in a report (bytes); longer names are cut and flagged.
pub const PATH_DISPLAY_LIMIT: usize = 4096;
/// Symlinks followed while resolving one path, as the kernel's own limit (ELOOP) does.
const MAX_LINK_HOPS: usize = 40;

/// A name as shown in reports: lossy UTF-8, at most [`PATH_DISPLAY_LIMIT`] bytes.
pub(super) fn display_name(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(PATH_DISPLAY_LIMIT)];
    String::from_utf8_lossy(raw).into_owned()
}

/// What is wrong with a member name, if anything. Names are never used on the host; this is a
/// signal (an sdist that tries to write outside its directory is up to something).
pub(super) fn name_problem(raw: &[u8], check_utf8: bool) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let parts = || text.split(['/', '\\']);
    let problem = if raw.is_empty() {
        "is empty".to_owned()
    } else if raw.len() > PATH_DISPLAY_LIMIT {
        format!("is {} bytes long; shown cut to {PATH_DISPLAY_LIMIT}", raw.len())
    } else if raw[0] == b'/' || raw[0] == b'\\' {
        "is an absolute path".to_owned()
    } else if raw.len() >= 2 && raw[0].is_ascii_alphabetic() && raw[1] == b':' {
        "is an absolute Windows path".to_owned()
    } else if parts().any(|p| p == "..") {
        if climbs_out(parts()) {
            "climbs out of the archive with '..'".to_owned()
        } else {
            "has a '..' component (it stays inside the archive, written to another name than it shows)"
                .to_owned()
        }
    } else if raw.contains(&0) {
        "contains a NUL byte (extractors cut the name there)".to_owned()
    } else if raw.iter().any(|&b| b < 0x20 || b == 0x7f) || (!raw.is_ascii() && text.chars().any(is_c1)) {
        "contains control characters".to_owned()
    } else if !raw.is_ascii() && text.chars().any(is_bidi_control) {
        "contains bidirectional control characters (it may display as another name)".to_owned()
    } else if check_utf8 && std::str::from_utf8(raw).is_err() {
        "is not valid UTF-8 (shown with replacement characters)".to_owned()
    } else {
        return None;
    };
    Some(problem)
}

/// Whether a name's components (`..` popping one) go above the archive's root at some point.
fn climbs_out<'a>(parts: impl Iterator<Item = &'a str>) -> bool {
    let mut depth = 0usize;
    for part in parts {
        match part {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return true,
            },
            _ => depth += 1,
        }
    }
    false
}

fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

/// The characters that reorder text around them as it is displayed (a name can show as another).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The name of the single file inside a compressed, non-tar stream: `x.txt.gz` -> `x.txt`.
pub(super) fn decompressed_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let lower = base.to_ascii_lowercase();
    for suffix in [".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".lzma", ".tlz", ".lz", ".zst", ".tzst"] {
        if lower.ends_with(suffix) && base.len() > suffix.len() {
            let stem = &base[..base.len() - suffix.len()];
            return if suffix.starts_with(".t") { format!("{stem}.tar") } else { stem.to_owned() };
        }
    }
    format!("{base}.decompressed")
}

/// The archive kind a distribution's file name promises, if any (what pip goes by).
pub(super) fn archive_suffix(name: &str) -> Option<&'static str> {
    let lower = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    [
        ".whl",
        ".zip",
        ".egg",
        ".tar.gz",
        ".tgz",
        ".tar.bz2",
        ".tbz",
        ".tbz2",
        ".tar.xz",
        ".txz",
        ".tar.lzma",
        ".tlz",
        ".tar.lz",
        ".tar.zst",
        ".tzst",
        ".tar",
    ]
    .into_iter()
    .find(|suffix| lower.ends_with(suffix))
}

/// A path split into its components.
pub(super) type Place = Vec<Vec<u8>>;

/// The links of one archive, to find every name a member's content appears under on disk.
#[derive(Default)]
pub(super) struct Links {
    /// Symlink place -> its target as written, joined to the symlink's directory: the kernel
    /// resolves it when the link is followed, against the links that exist then.
    symlinks: HashMap<Place, Vec<u8>>,
    /// Symlink place -> its target as written (a hard link to it can copy the symlink).
    symlink_texts: HashMap<Place, Vec<u8>>,
    /// The directories made so far: directory members and every member's parents, under the name
    /// and where they really are (see `real_places`).
    dirs: HashSet<Place>,
    /// Where file members were written, under the name and where they really are.
    files: HashSet<Place>,
    /// Where links (of either kind) were made.
    link_places: HashSet<Place>,
    /// Every link's place and its target: a symlink's as written (see `symlinks`), a hard link's
    /// place (`os.link` resolves it when the link is made). A link whose target has a `..` after
    /// another component has two: current Pythons' data filter rewrites the target with
    /// `os.path.normpath` (the June 2025 security releases on), older ones leave the kernel to
    /// apply `..` where a symlink on the way leads.
    pairs: Vec<(Place, LinkTarget)>,
    /// Symlinks read two ways (see `pairs`) -> their target as current Pythons write it, joined to
    /// the symlink's directory: a member named through one whose readings lead to different places
    /// (with the links made by then) lands where the Python version decides.
    two_ways: HashMap<Place, Vec<u8>>,
}

enum LinkTarget {
    Symbolic(Vec<u8>),
    Hard(Place),
}

/// How the targets of symlinks read two ways (see `Links::pairs`) are read.
#[derive(Clone, Copy)]
enum Reading {
    /// As written, `..` applied by the kernel (older Pythons).
    Kernel,
    /// As current Pythons' filter rewrites them.
    Current,
}

impl Links {
    pub(super) fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Where a member path lands under the unpack directory, with the links recorded so far (the
    /// ones extracted before it): components split on `/`, empty and `.` dropped, and `..` applied
    /// as the kernel applies it, to the directory a symlink on the way leads to, not to the text
    /// before it. `None` when it climbs out (pip refuses such a member) or runs into a link loop.
    pub(super) fn locate(&self, path: &[u8]) -> Option<Place> {
        self.locate_within(path, &mut 0, Reading::Kernel)
    }

    /// Where `path` really is once every symlink on it is followed (`None`: a loop).
    pub(super) fn resolve(&self, path: &[Vec<u8>]) -> Option<Place> {
        self.resolve_within(path, &mut 0, Reading::Kernel)
    }

    /// [`Links::resolve`] with the symlinks read two ways (see `pairs`) read as current Pythons
    /// write them; `None` when there is none, or on a loop.
    pub(super) fn resolve_current(&self, path: &[Vec<u8>]) -> Option<Place> {
        if self.two_ways.is_empty() {
            return None;
        }
        self.resolve_within(path, &mut 0, Reading::Current)
    }

    /// [`Links::locate`], sharing a budget of symlink hops with the resolution it is part of.
    fn locate_within(&self, path: &[u8], hops: &mut usize, reading: Reading) -> Option<Place> {
        let mut parts: Place = Vec::new();
        for part in path.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    parts = self.resolve_within(&parts, hops, reading)?;
                    parts.pop()?;
                }
                other => parts.push(other.to_vec()),
            }
        }
        Some(parts)
    }

    fn resolve_within(&self, path: &[Vec<u8>], hops: &mut usize, reading: Reading) -> Option<Place> {
        let mut current = path.to_vec();
        'outer: loop {
            for end in 1..=current.len() {
                let place = &current[..end];
                let written = match reading {
                    Reading::Current => self.two_ways.get(place).or_else(|| self.symlinks.get(place)),
                    Reading::Kernel => self.symlinks.get(place),
                };
                if let Some(target) = written {
                    *hops += 1;
                    if *hops > MAX_LINK_HOPS {
                        return None;
                    }
                    let mut next = self.locate_within(target, hops, reading)?;
                    next.extend_from_slice(&current[end..]);
                    current = next;
                    continue 'outer;
                }
            }
            return Some(current);
        }
    }

    pub(super) fn is_symlink(&self, place: &[Vec<u8>]) -> bool {
        self.symlinks.contains_key(place)
    }

    pub(super) fn is_dir(&self, place: &[Vec<u8>]) -> bool {
        self.dirs.contains(place)
    }

    pub(super) fn is_link(&self, place: &[Vec<u8>]) -> bool {
        self.link_places.contains(place)
    }

    /// Whether a member named `name` lands in a place the Python version decides: the name has a
    /// `..` that `tarfile`'s filter (current Pythons) takes away lexically where the kernel (older
    /// ones) applies it after a symlink, or it passes through a symlink whose target is read both
    /// ways (see `pairs`), or, in an archive with such a symlink, through a symlink loop.
    pub(super) fn placed_by_version(&self, name: &[u8]) -> bool {
        if let Some(lexical) = collapse_dot_dot(name) {
            if self.locate(&lexical) != self.locate(name) {
                return true;
            }
        }
        if self.two_ways.is_empty() {
            return false;
        }
        // Each component's place, its directory resolved through the symlinks before it.
        let mut directory: Place = Vec::new();
        for part in name.split(|&b| b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return false, // a `..` both readings apply alike (see above)
                other => {
                    let mut place = directory;
                    place.push(other.to_vec());
                    if let Some(lexical) = self.two_ways.get(&place) {
                        let physical = self.symlinks.get(&place).and_then(|written| self.locate(written));
                        if physical.is_none() || physical != self.locate(lexical) {
                            return true;
                        }
                    }
                    // A loop for the kernel's reading may be none for the other (the `..` that closed
                    // it taken away): a place the version decides.
                    let Some(resolved) = self.resolve(&place) else { return true };
                    directory = resolved;
                }
            }
        }
        false
    }

    /// Where a member named at `place` is made on disk, in each reading of the links made so far:
    /// its directory resolved through the symlinks on the way (`os.makedirs` and `open` follow
    /// them), and `place` itself, the name the model keys it by.
    fn real_places(&self, place: &[Vec<u8>]) -> Vec<Place> {
        let mut places = vec![place.to_vec()];
        if !self.has_symlinks() {
            return places; // no symlink on any way: the common case, every file member of an sdist
        }
        let Some((last, parent)) = place.split_last() else { return places };
        for mut real in [self.resolve(parent), self.resolve_current(parent)].into_iter().flatten() {
            real.push(last.clone());
            if !places.contains(&real) {
                places.push(real);
            }
        }
        places
    }

    /// Note a directory member at `place` (extracted at that point of the archive).
    pub(super) fn add_dir(&mut self, place: &[Vec<u8>]) {
        for real in self.real_places(place) {
            self.add_parents(&real);
            self.dirs.insert(real);
        }
    }

    /// Note a file member written at `place`: the directories it is extracted into, and every place
    /// it may land (through a symlink at `place` too), so that a later link made there is known to
    /// replace a file.
    pub(super) fn add_file(&mut self, place: &[Vec<u8>]) {
        let mut reals = self.real_places(place);
        if self.has_symlinks() {
            reals.extend([self.resolve(place), self.resolve_current(place)].into_iter().flatten());
        }
        for real in reals {
            self.add_parents(&real);
            self.files.insert(real);
        }
    }

    fn has_symlinks(&self) -> bool {
        !self.symlinks.is_empty() || !self.two_ways.is_empty()
    }

    pub(super) fn is_file(&self, place: &[Vec<u8>]) -> bool {
        self.files.contains(place)
    }

    /// Note the directories a member at `place` is extracted into (`tarfile` makes them).
    fn add_parents(&mut self, place: &[Vec<u8>]) {
        for end in (1..place.len()).rev() {
            if self.dirs.contains(&place[..end]) {
                break; // its own parents are in too
            }
            self.dirs.insert(place[..end].to_vec());
        }
    }

    /// Record a link as pip's data filter lets it through: absolute targets and targets outside
    /// the archive are refused by the filter (pip fails), so they alias nothing. Links are recorded
    /// in archive order, as they are extracted.
    pub(super) fn add(&mut self, name: &[u8], target: &[u8], symbolic: bool) {
        if target.first() == Some(&b'/') {
            return;
        }
        let Some(link) = self.locate(name) else { return };
        for real in self.real_places(&link) {
            self.add_parents(&real);
        }
        self.link_places.insert(link.clone());
        if symbolic && self.dirs.contains(&link) {
            // `tarfile` cannot unlink a directory to put the symlink there: the error is ignored at
            // pip's error level, and the directory stays.
            return;
        }
        if !symbolic {
            let named = self.locate(target).and_then(|place| self.symlink_texts.get(&place)).cloned();
            if let Some(text) = named {
                // A hard link to a symlink that dangles when it is made: `tarfile` extracts the
                // symlink again under the link's name, its target then read from there. Recorded
                // as well as the hard link (which holds when the target exists by then).
                self.add(name, &text, true);
            }
        }
        if symbolic && !link.is_empty() {
            // Kept even when the kernel's reading cannot follow it: a hard link copying it reads the
            // target from its own directory, where current Pythons' reading may lead somewhere.
            self.symlink_texts.insert(link.clone(), target.to_vec());
        }
        let dir: &[u8] =
            if symbolic { &name[..name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)] } else { b"" };
        // An empty symlink target is refused by the kernel (older Pythons make no link); current
        // Pythons' filter writes it as `.`.
        let empty = symbolic && target.is_empty();
        let lexical = if empty { Some(b".".to_vec()) } else { collapse_dot_dot(target) };
        for (k, text) in std::iter::once(target).chain(lexical.as_deref()).enumerate() {
            if empty && k == 0 {
                continue;
            }
            let joined = [dir, text].concat();
            if symbolic && k == 1 {
                self.two_ways.insert(link.clone(), joined.clone());
            }
            // The filter checks the target as it resolves when the link is extracted.
            let Some(place) = self.locate(&joined) else { continue };
            // A symlink may lead to the unpack directory itself (`..` from one level down).
            if link.is_empty() || (place.is_empty() && !symbolic) {
                return;
            }
            if symbolic {
                if k == 0 {
                    self.symlinks.insert(link.clone(), joined.clone());
                }
                self.pairs.push((link.clone(), LinkTarget::Symbolic(joined)));
            } else {
                self.pairs.push((link.clone(), LinkTarget::Hard(place)));
            }
        }
    }

    /// Whether a symlink `name` -> `target` leads out of the unpack directory as the kernel follows it
    /// (an absolute target, or one that climbs out, with the links made so far): pip before 24.1, which
    /// has no data filter, makes it, and writes a later member named through it out there.
    pub(super) fn leads_out(&self, name: &[u8], target: &[u8]) -> bool {
        if target.first() == Some(&b'/') {
            return true;
        }
        let dir = &name[..name.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)];
        self.locate(&[dir, target].concat()).is_none()
    }

    /// The graph of places whose content shows under other names once the links are made: a
    /// link's name shows its target's content (and so does a link to that link), and a member
    /// written to a link's name lands in the link's target (a symlink's target, or the file a hard
    /// link shares: `tarfile` opens an existing name for writing, through the link). Places are
    /// resolved through directory symlinks on the way, a symlink's target against every link of
    /// the archive (it is followed after the extraction, whatever came after it).
    pub(super) fn graph(&self) -> LinkGraph<'_> {
        let mut edges: HashMap<Place, Vec<Place>> = HashMap::new();
        let readings: &[Reading] =
            if self.two_ways.is_empty() { &[Reading::Kernel] } else { &[Reading::Kernel, Reading::Current] };
        for (link, target) in &self.pairs {
            let places: Vec<Place> = match target {
                LinkTarget::Symbolic(written) => readings
                    .iter()
                    .filter_map(|&reading| self.locate_within(written, &mut 0, reading))
                    .collect(),
                LinkTarget::Hard(place) => vec![place.clone()],
            };
            let mut targets: Vec<Place> = Vec::new();
            for place in places {
                // A place that runs into a symlink loop is still linked by name: a hard link recorded
                // both ways (see `add`) may loop in the model and hold content on disk. Symlinks on
                // the way read two ways lead to both places.
                let current = self.resolve_current(&place);
                let kernel = self.resolve(&place).unwrap_or(place);
                for resolved in std::iter::once(kernel).chain(current) {
                    if !targets.contains(&resolved) {
                        targets.push(resolved);
                    }
                }
            }
            for resolved in targets {
                edges.entry(resolved.clone()).or_default().push(link.clone());
                edges.entry(link.clone()).or_default().push(resolved);
            }
        }
        LinkGraph { links: self, edges }
    }
}

/// Which place shows which other place's content, built once from [`Links`].
pub(super) struct LinkGraph<'l> {
    links: &'l Links,
    edges: HashMap<Vec<Vec<u8>>, Vec<Vec<Vec<u8>>>>,
}

impl LinkGraph<'_> {
    /// Every other place the content written at `place` shows under (see [`Links::graph`]).
    pub(super) fn shown_under(&self, place: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
        let (edges, links) = (&self.edges, self.links);
        let start = place.to_vec();
        let mut seen = HashSet::from([start.clone()]);
        let mut queue = vec![start.clone()];
        // Both readings: current Pythons may resolve a path the kernel's reading loops on.
        for real in [links.resolve(place), links.resolve_current(place)].into_iter().flatten() {
            if seen.insert(real.clone()) {
                queue.push(real);
            }
        }
        // Written at a path through a symlink, the content lands where the path resolves.
        let mut found: Vec<Vec<Vec<u8>>> = queue[1..].to_vec();
        while let Some(at) = queue.pop() {
            for next in edges.get(&at).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(next.clone()) {
                    found.push(next.clone());
                    queue.push(next.clone());
                }
            }
        }
        found
    }
}

/// `path` as Python's `posixpath.normpath` writes a relative path, when that takes away a `..`
/// with the component before it (`None` otherwise: empty and `.` components change nothing the
/// kernel would not do too).
pub(super) fn collapse_dot_dot(path: &[u8]) -> Option<Vec<u8>> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut collapsed = false;
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if kept.last().is_some_and(|last| *last != b"..") => {
                kept.pop();
                collapsed = true;
            }
            other => kept.push(other),
        }
    }
    if !collapsed {
        return None;
    }
    let joined = kept.join(&b'/');
    Some(if joined.is_empty() { b".".to_vec() } else { joined })
}

/// `name` as `os.path.normpath` writes it, when that ends in another component than the name
/// itself, so that other rules apply to it: pip's wheel installer writes every member to its
/// normalised name (`pkg/evil.py/.` is installed as `pkg/evil.py`), and current Pythons' tarfile
/// filter normalises a name with `..` (`pkg/evil.py/x/..`). `None` for a directory (a trailing
/// `/`), for a name that climbs out (pip refuses it), and for the names whose last component stays
/// (`pkg//evil.py` lands at `pkg/evil.py` for every extractor, and is routed alike).
pub(super) fn normalized_alias(name: &[u8]) -> Option<Vec<u8>> {
    let last = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    // Nearly every name ends in a plain component (checked first: it runs for every member).
    if !matches!(last, b"." | b"..") {
        return None;
    }
    let mut kept: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                kept.pop()?;
            }
            other => kept.push(other),
        }
    }
    if kept.is_empty() {
        return None;
    }
    Some(kept.join(&b'/'))
}

/// The name Windows writes `name` to, when that is another name (so that other rules may apply to it):
/// its path normalisation drops the trailing dots and spaces of the last component and the period that
/// ends another (`pkg./`; one ending in `..` is kept as it is), `NAME::$DATA` is the file `NAME` itself,
/// and on its case-blind names pip building an sdist runs a `SETUP.PY` as `setup.py`. `None` for a
/// directory (a trailing `/`) and for a component left empty.
pub(super) fn windows_alias(name: &[u8]) -> Option<Vec<u8>> {
    let last = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
    // Nearly every name has none of this (checked first: it runs for every member).
    let odd = matches!(last.last(), Some(b'.' | b' '))
        || last.contains(&b':')
        || (last.eq_ignore_ascii_case(b"setup.py") && last != b"setup.py")
        || memchr::memmem::find(name, b"./").is_some();
    if !odd || last.is_empty() {
        return None;
    }
    let count = name.split(|&b| b == b'/').count();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(count);
    for (at, mut part) in name.split(|&b| b == b'/').enumerate() {
        if !matches!(part, b"" | b"." | b"..") {
            if at + 1 == count {
                if part.len() > 7 && part[part.len() - 7..].eq_ignore_ascii_case(b"::$DATA") {
                    part = &part[..part.len() - 7];
                }
                while let [rest @ .., b'.' | b' '] = part {
                    part = rest;
                }
                if part.eq_ignore_ascii_case(b"setup.py") {
                    part = b"setup.py";
                }
            } else if part.ends_with(b".") && !part.ends_with(b"..") {
                part = &part[..part.len() - 1];
            }
            if part.is_empty() {
                return None;
            }
        }
        parts.push(part);
    }
    let alias = parts.join(&b'/');
    (alias != name).then_some(alias)
}

/// The name a `filetype` is matched against for the file shown as `path`: the `os.path.normpath`
/// form pip writes it to (empty and `.` components dropped, `x/..` resolved), so that a suffix of
/// several components (`pkg/evil.py`) fits `pkg//evil.py` and `pkg/./evil.py` as it fits the file
/// pip installs. Each nesting level (`outer!/inner`) apart: a member of an inner archive never climbs
/// into the outer one. `path` itself when that changes nothing, climbs out of its archive (pip
/// refuses it), or ends in `.` or `..` (scanned again under its normalised name:
/// [`normalized_alias`]).
pub(super) fn fit_name(path: &str) -> Cow<'_, str> {
    // Nearly every name is already normal (checked first: it runs for every file).
    let odd = path.starts_with('/') || path.starts_with("./") || path.contains("//") || path.contains("/./");
    if !odd && !path.starts_with("../") && !path.contains("/../") {
        return Cow::Borrowed(path);
    }
    let last = path.rsplit('/').next().unwrap_or(path);
    if matches!(last, "." | "..") {
        return Cow::Borrowed(path);
    }
    let mut levels: Vec<String> = Vec::new();
    for level in path.split("!/") {
        let mut kept: Vec<&str> = Vec::new();
        for part in level.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if kept.pop().is_none() {
                        return Cow::Borrowed(path);
                    }
                }
                other => kept.push(other),
            }
        }
        if kept.is_empty() {
            return Cow::Borrowed(path);
        }
        levels.push(kept.join("/"));
    }
    Cow::Owned(levels.join("!/"))
}

/// pip's `split_leading_dir`: a member name's first component and the rest, split at the first `/`,
/// or at the first `\` when one comes before any `/` (leading `/`, then leading `\`, dropped
/// first); the flag says it was split at a `\`.
fn pip_split_leading(name: &[u8]) -> (&[u8], &[u8], bool) {
    let mut path = name;
    while let [b'/', rest @ ..] = path {
        path = rest;
    }
    while let [b'\\', rest @ ..] = path {
        path = rest;
    }
    let slash = path.iter().position(|&b| b == b'/');
    match (slash, path.iter().position(|&b| b == b'\\')) {
        (Some(slash), backslash) if backslash.is_none_or(|backslash| slash < backslash) => {
            (&path[..slash], &path[slash + 1..], false)
        }
        (_, Some(backslash)) => (&path[..backslash], &path[backslash + 1..], true),
        _ => (path, &[], false),
    }
}

/// Where pip writes a member whose name it splits at a `\` when it strips the archive's leading
/// directory (`pkg\setup.py` is unpacked as `setup.py`), named as the archive's other members are:
/// `pkg/setup.py`. `None` for a name pip splits at a `/`, or with nothing after the split.
pub(super) fn backslash_alias(name: &[u8]) -> Option<Vec<u8>> {
    let (lead, rest, at_backslash) = pip_split_leading(name);
    (at_backslash && !rest.is_empty()).then(|| [lead, b"/", rest].concat())
}

/// Whether pip takes the first components of a hard link's name and target for the same leading
/// directory: it strips the target of it only then, and otherwise makes the link to the target as
/// written, under the unpack directory (`./pkg/x` is then the member `pkg/pkg/x`).
pub(super) fn same_leading_dir(name: &[u8], target: &[u8]) -> bool {
    pip_split_leading(name).0 == pip_split_leading(target).0
}

/// pip's `has_leading_dir` over an archive's member names, fed one at a time: every name has the
/// same first component, which pip then strips from every name as it unpacks an sdist.
#[derive(Default)]
pub(super) struct LeadingDir {
    common: Option<Vec<u8>>,
    differs: bool,
}

impl LeadingDir {
    pub(super) fn add(&mut self, name: &[u8]) {
        if self.differs {
            return;
        }
        let (lead, _, _) = pip_split_leading(name);
        match &self.common {
            _ if lead.is_empty() => self.differs = true,
            Some(common) => self.differs = common != lead,
            None => self.common = Some(lead.to_vec()),
        }
    }

    /// pip strips the leading directory (no name, or names with different first components: it
    /// does not).
    pub(super) fn stripped(&self) -> bool {
        !self.differs && self.common.is_some()
    }

    /// Where pip builds the sdist, as a place in the archive: the leading directory it strips, or the top.
    pub(super) fn root(&self) -> Place {
        match &self.common {
            Some(common) if !self.differs => vec![common.clone()],
            _ => Vec::new(),
        }
    }
}

pub(super) fn join(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.join(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(path: &str) -> Vec<Vec<u8>> {
        Links::default().locate(path.as_bytes()).unwrap()
    }

    #[test]
    fn a_dotdot_name_says_whether_it_climbs_out() {
        let problem = |name: &str| name_problem(name.as_bytes(), true).unwrap();
        for name in ["../x.py", "a/../../x.py", "a\\..\\..\\x.py", "./../x.py"] {
            assert_eq!(problem(name), "climbs out of the archive with '..'", "{name}");
        }
        for name in ["a/../x.py", "a/b/../../x.py", "a/..", "a\\..\\x.py"] {
            assert!(problem(name).starts_with("has a '..' component (it stays inside"), "{name}");
        }
    }

    #[test]
    fn locates_like_a_filesystem() {
        assert_eq!(parts("./a//b/./c"), parts("a/b/c"));
        assert_eq!(parts("/a/b/../c"), parts("a/c"));
        assert_eq!(Links::default().locate(b"a/../../etc"), None);
        // `..` after a directory symlink leaves the directory the symlink leads to.
        let mut links = Links::default();
        links.add(b"pkg/d", b"sub/deep", true);
        assert_eq!(links.locate(b"pkg/d/../x.py").unwrap(), parts("pkg/sub/x.py"));
        links.add(b"pkg/evil.py", b"d/../data.txt", true);
        let shown = links.graph().shown_under(&parts("pkg/sub/data.txt"));
        assert!(shown.contains(&parts("pkg/evil.py")), "{shown:?}");
    }

    #[test]
    fn dot_dot_is_collapsed_as_posixpath_normpath_does() {
        let collapse = |path: &str| collapse_dot_dot(path.as_bytes()).map(|p| String::from_utf8(p).unwrap());
        assert_eq!(collapse("d/../data.txt").as_deref(), Some("data.txt"));
        assert_eq!(collapse("a/./b/../../x").as_deref(), Some("x"));
        assert_eq!(collapse("d/..").as_deref(), Some("."));
        assert_eq!(collapse("a/../../x").as_deref(), Some("../x"));
        // Nothing a lexical reading changes: leading `..`, `.` and empty components.
        assert_eq!(collapse("../../x/./y//z"), None);
    }

    #[test]
    fn a_link_target_is_read_both_as_the_kernel_and_as_the_current_filter_read_it() {
        let mut links = Links::default();
        links.add(b"pkg/d", b"sub/deep", true);
        links.add(b"pkg/evil.py", b"d/../data.txt", true);
        let graph = links.graph();
        for target in ["pkg/sub/data.txt", "pkg/data.txt"] {
            assert!(graph.shown_under(&parts(target)).contains(&parts("pkg/evil.py")), "{target}");
        }
        links.add(b"pkg/b", b"d/..", true);
        assert!(links.placed_by_version(b"pkg/b/setup.py"));
        assert!(links.placed_by_version(b"pkg/d/../setup.py"));
        assert!(!links.placed_by_version(b"pkg/d/setup.py"));
        assert!(!links.placed_by_version(b"pkg/sub/../setup.py"), "no symlink on the way: one reading");
        links.add(b"x", b"pkg", true);
        assert!(links.placed_by_version(b"x/b/setup.py"), "through another symlink first");
        // The readings agree when the link is made, and part when a later symlink changes one.
        let mut links = Links::default();
        links.add(b"pkg/b", b"a/..", true);
        assert!(!links.placed_by_version(b"pkg/b/c/g.py"));
        links.add(b"pkg/a", b"a", true);
        assert!(links.placed_by_version(b"pkg/b/c/g.py"));
        // A loop for the kernel (`sub` -> `b/../..`, `b` -> `sub`) that current Pythons, which wrote
        // `sub` -> `..`, do not have.
        let mut links = Links::default();
        links.add(b"pkg/sub", b"b/../..", true);
        links.add(b"pkg/b", b"sub", true);
        assert!(links.placed_by_version(b"pkg/b/x.py"));
        assert!(links.placed_by_version(b"pkg/./b/x.py"));
        assert!(!links.placed_by_version(b"pkg/c/x.py"));
    }

    #[test]
    fn names_linked_through_a_loop_of_the_model_still_show_the_content() {
        // `x.py` and `setup.py` are hard links to the symlink `sub/x.py`, each recorded both as the
        // hard link and as a copy of the symlink (`setup.py` -> itself: a loop). On disk `os.link`
        // follows the symlink: every name below holds what was written through `sub/x.py`.
        let mut links = Links::default();
        links.add(b"pkg/sub/x.py", b"setup.py", true);
        links.add(b"pkg/a/d/sub", b"../../x.py", true);
        links.add(b"pkg/x.py", b"pkg/sub/x.py", false);
        links.add(b"pkg/setup.py", b"pkg/sub/x.py", false);
        links.add(b"pkg/d/setup.py", b"pkg/setup.py", false);
        assert_shows(
            &links,
            "pkg/sub/x.py",
            &["pkg/sub/setup.py", "pkg/x.py", "pkg/setup.py", "pkg/d/setup.py", "pkg/a/d/sub"],
        );
    }

    /// Content written at `written` shows under each of `names`.
    fn assert_shows(links: &Links, written: &str, names: &[&str]) {
        let shown = links.graph().shown_under(&parts(written));
        for name in names {
            assert!(shown.contains(&parts(name)), "{name}: {shown:?}");
        }
    }

    #[test]
    fn a_symlink_target_resolves_through_links_made_after_it() {
        let mut links = Links::default();
        links.add(b"pkg/setup.py", b"d/../data.txt", true);
        links.add(b"pkg/d", b"sub/deep", true);
        let shown = links.graph().shown_under(&parts("pkg/sub/data.txt"));
        assert!(shown.contains(&parts("pkg/setup.py")), "{shown:?}");
    }

    #[test]
    fn a_member_written_to_a_hard_link_name_lands_in_the_shared_file() {
        let mut links = Links::default();
        links.add(b"pkg/x.txt", b"pkg/setup.py", false);
        assert!(links.graph().shown_under(&parts("pkg/x.txt")).contains(&parts("pkg/setup.py")));
    }

    #[test]
    fn links_alias_both_ways_through_directory_symlinks() {
        let mut links = Links::default();
        links.add(b"pkg/setup.py", b"data.txt", true);
        links.add(b"hard.py", b"pkg/data.txt", false);
        links.add(b"d", b"pkg", true);
        links.add(b"via.py", b"d/data.txt", true);
        links.add(b"chain.py", b"hard.py", false);
        links.add(b"abs.py", b"/etc/passwd", true);
        links.add(b"out.py", b"../../x", true);
        assert_shows(&links, "pkg/data.txt", &["pkg/setup.py", "hard.py", "via.py", "chain.py"]);
        let shown = links.graph().shown_under(&parts("pkg/data.txt"));
        assert!(!shown.iter().any(|to| to == &parts("abs.py") || to == &parts("out.py")));
        // Written through a symlink, a member lands in its target.
        assert!(links.graph().shown_under(&parts("pkg/setup.py")).contains(&parts("pkg/data.txt")));
        let mut looped = Links::default();
        looped.add(b"a", b"b", true);
        looped.add(b"b", b"a", true);
        assert_eq!(looped.resolve(&parts("a/x")), None);
    }

    #[test]
    fn fit_name_is_the_normpath_form_of_names_whose_last_component_stays() {
        for (path, fit) in [
            ("pkg/evil.py", "pkg/evil.py"),
            ("pkg//evil.py", "pkg/evil.py"),
            ("pkg/./evil.py", "pkg/evil.py"),
            ("./pkg/evil.py", "pkg/evil.py"),
            ("/setup.py", "setup.py"),
            ("pkg/x/../evil.py", "pkg/evil.py"),
            ("outer.zip!/./pkg//evil.py", "outer.zip!/pkg/evil.py"),
            ("p-1.0//in.zip!/a/../evil.py", "p-1.0/in.zip!/evil.py"),
            // A nested member climbing out of its own archive does not land in the outer one.
            ("p-1.0/pkg/in.zip!/../evil.py", "p-1.0/pkg/in.zip!/../evil.py"),
            // Climbing out, ending in `.` or `..` (an alias of its own), nothing left: as it is.
            ("../evil.py", "../evil.py"),
            ("a/../../evil.py", "a/../../evil.py"),
            ("pkg/evil.py/.", "pkg/evil.py/."),
            ("pkg//x/..", "pkg//x/.."),
            ("//", "//"),
        ] {
            assert_eq!(fit_name(path), fit, "{path}");
        }
    }

    #[test]
    fn windows_alias_is_the_name_windows_writes() {
        let alias = |name: &str| windows_alias(name.as_bytes()).map(|a| String::from_utf8(a).unwrap());
        for (name, expected) in [
            ("evil.pth.", Some("evil.pth")),
            ("pkg/evil.py . .", Some("pkg/evil.py")),
            ("pkg./__init__.py", Some("pkg/__init__.py")),
            ("evil.pth::$data", Some("evil.pth")),
            ("p-1.0/SETUP.PY", Some("p-1.0/setup.py")),
            ("p-1.0/Setup.py.", Some("p-1.0/setup.py")),
            ("p-1.0/setup.py", None),
            ("pkg/evil.py", None),
            ("pkg/", None),
            ("pkg/...", None),
            ("./pkg/evil.py", None),
            ("pkg../x.py", None),
            ("evil.pth:stream", None),
        ] {
            assert_eq!(alias(name).as_deref(), expected, "{name}");
        }
    }

    #[test]
    fn normalized_alias_is_the_normpath_form_when_it_is_another_name() {
        let alias = |name: &str| normalized_alias(name.as_bytes()).map(|a| String::from_utf8(a).unwrap());
        assert_eq!(alias("pkg/evil.py/.").as_deref(), Some("pkg/evil.py"));
        assert_eq!(alias("pkg/evil.py/x/..").as_deref(), Some("pkg/evil.py"));
        assert_eq!(alias("./pkg//evil.py/.").as_deref(), Some("pkg/evil.py"));
        // The same last component, a directory, a name that climbs out or is empty: none.
        for name in [
            "pkg/evil.py",
            "./pkg/evil.py",
            "pkg//evil.py",
            "pkg/x/../evil.py",
            "/pkg/evil.py",
            "pkg/",
            "../evil.py",
            "a/../..",
            "pkg/..",
            ".",
        ] {
            assert_eq!(alias(name), None, "{name}");
        }
    }

    #[test]
    fn names_split_as_pip_splits_the_leading_directory() {
        let split = |name: &str| {
            let (lead, rest, at_backslash) = pip_split_leading(name.as_bytes());
            (
                String::from_utf8(lead.to_vec()).unwrap(),
                String::from_utf8(rest.to_vec()).unwrap(),
                at_backslash,
            )
        };
        assert_eq!(split("pkg/setup.py"), ("pkg".into(), "setup.py".into(), false));
        assert_eq!(split("pkg\\setup.py"), ("pkg".into(), "setup.py".into(), true));
        assert_eq!(split("pkg/a\\b.py"), ("pkg".into(), "a\\b.py".into(), false));
        assert_eq!(split("pkg\\a/b.py"), ("pkg".into(), "a/b.py".into(), true));
        assert_eq!(split("//\\pkg/x"), ("pkg".into(), "x".into(), false));
        assert_eq!(split("./pkg/x"), (".".into(), "pkg/x".into(), false));
        assert_eq!(split("setup.py"), ("setup.py".into(), "".into(), false));
        assert_eq!(backslash_alias(b"pkg\\setup.py").as_deref(), Some(&b"pkg/setup.py"[..]));
        assert_eq!(backslash_alias(b"pkg/setup.py"), None);
        assert_eq!(backslash_alias(b"pkg\\"), None);
        assert!(same_leading_dir(b"pkg/setup.py", b"pkg/evil.txt"));
        assert!(same_leading_dir(b"pkg\\setup.py", b"pkg/evil.txt"));
        assert!(!same_leading_dir(b"pkg/setup.py", b"./pkg/evil.txt"));
    }

    #[test]
    fn the_leading_directory_is_stripped_only_when_every_name_shares_it() {
        let stripped = |names: &[&str]| {
            let mut leading = LeadingDir::default();
            names.iter().for_each(|name| leading.add(name.as_bytes()));
            leading.stripped()
        };
        assert!(stripped(&["pkg", "pkg/setup.py", "pkg\\x.txt", "/pkg/y"]));
        assert!(!stripped(&["pkg/setup.py", "README"]));
        assert!(!stripped(&["pkg/setup.py", "other/x"]));
        assert!(!stripped(&["pkg/setup.py", "/"]));
        assert!(!stripped(&[]));
    }
}
