//! Walking a tarball: members as [`TarReader`] reads them (CPython's way), content read under the
//! limits, links recorded and their targets' content scanned again under the link's name (pip's
//! data filter writes it there), and whatever follows the end of the archive scanned and opened.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use super::build_backend::{may_be_pyproject, BackendSearch};
use super::names::{backslash_alias, display_name, join, same_leading_dir, LeadingDir, Links, Place};
use super::stream::{open_stream, stream_error_issue, Guard, Stream, Trip};
use super::tarfile::{
    expand_sparse, has_content, sparse_is_plain, TarEntry, TarReader, TarStop, TarStream, BLOCK, DIRTYPE,
    LNKTYPE, SYMTYPE, TAR_METADATA_LIMIT,
};
use super::{alias_issue, DistScan, Member, Order, QUEUE_BYTES, READ_CHUNK, SPLIT_WHY};
use crate::issue::{Issue, IssueKind};
use crate::service::ContentHashes;

/// Member names seen with content, by where they land: which entries wrote there.
type Written = HashMap<Vec<Vec<u8>>, Vec<usize>>;

/// What pip's stripping of an sdist's leading directory may change, gathered while the members are
/// read (whether pip strips is known only at the end).
#[derive(Default)]
struct Stripping {
    leading: LeadingDir,
    /// Members whose names pip splits at a `\`.
    split: Vec<(Order, String)>,
    /// Those of them with content: (entry, position, name, the name pip writes it under).
    split_files: Vec<(usize, Order, String, String)>,
    /// Hard links whose target pip leaves as written (see `same_leading_dir`).
    unstripped_targets: Vec<(Order, String)>,
    links: bool,
}

/// The modules of an sdist's in-tree build backend (see `build_backend`), and where pip builds it.
#[derive(Clone, Copy)]
struct Backend<'a> {
    search: &'a BackendSearch,
    root: &'a [Vec<u8>],
}

impl DistScan<'_> {
    /// Walk a tar stream. At the top level one thread inflates and parses while the pool scans
    /// members as they come (a tarball is one stream); nested tarballs are walked in place.
    pub(super) fn walk_tar(
        &self,
        stream: Stream<'_>,
        prefix: &str,
        depth: u32,
        order: &[u32],
        parallel: bool,
    ) {
        if !parallel || self.threads == 1 {
            self.read_tar(stream, prefix, depth, order, &mut |member| self.file(member));
            return;
        }
        // This thread inflates and parses and hands each member to the pool as a task. Nothing
        // blocks and no thread is added: once the members waiting for a scanner hold
        // `QUEUE_BYTES`, this thread scans the next one itself, which bounds memory and keeps it
        // busy when inflating outruns scanning.
        let waiting = AtomicU64::new(0);
        rayon::scope(|scope| {
            let waiting = &waiting;
            self.read_tar(stream, prefix, depth, order, &mut |member| {
                let bytes = member.data.len() as u64;
                if waiting.load(Ordering::Relaxed) + bytes > QUEUE_BYTES {
                    self.file(member);
                    return;
                }
                waiting.fetch_add(bytes, Ordering::Relaxed);
                scope.spawn(move |_| {
                    self.file(member);
                    waiting.fetch_sub(bytes, Ordering::Relaxed);
                });
            });
        });
    }

    fn read_tar(
        &self,
        stream: Stream<'_>,
        prefix: &str,
        depth: u32,
        order: &[u32],
        emit: &mut dyn FnMut(Member),
    ) {
        let label = prefix.strip_suffix("!/").unwrap_or(prefix);
        let Stream { reader, guard, container, source } = stream;
        let mut tar = TarStream::new(reader);
        let mut headers = TarReader::new();
        let mut links = Links::default();
        let mut written = Written::new();
        let mut stripping = Stripping::default();
        // The last member at each place the root pyproject.toml may be (see `build_backend`): its
        // content, or `None` for a link.
        let mut pyprojects: BTreeMap<Place, Option<Vec<u8>>> = BTreeMap::new();
        // Where symlinks that lead out of the unpack directory were made (see `Links::leads_out`).
        let mut outside: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut index = 0usize;
        let stop = loop {
            let member_order: Order = [order, &[index as u32]].concat();
            let mut entry = match headers.next(&mut tar) {
                Ok(entry) => entry,
                Err(stop) => break stop,
            };
            // `tarfile` writes any member to its name without trailing slashes (`_extract_member`):
            // a regular file named `setup.py/` is installed as `setup.py`, and must be routed as one.
            while entry.name.last() == Some(&b'/') {
                entry.name.pop();
            }
            index += 1;
            stripping.leading.add(&entry.name);
            if self.cancelled()
                || !self.count_member(&member_order)
                || self.total_exceeded.load(Ordering::Relaxed)
            {
                return;
            }
            let path = format!("{prefix}{}", display_name(&entry.name));
            let split_alias = backslash_alias(&entry.name);
            if split_alias.is_some() {
                stripping.split.push((member_order.clone(), path.clone()));
            }
            for note in &entry.ambiguities {
                self.issue(member_order.clone(), Issue::new(&*path, IssueKind::Ambiguous, note.0.clone()));
            }
            if entry.kind == DIRTYPE {
                if let Some(place) = links.locate(&entry.name) {
                    if links.is_symlink(&place) || links.is_file(&place) {
                        self.unplaced(
                            &member_order,
                            &path,
                            "a directory member where a file or a symlink was made",
                        );
                    }
                    links.add_dir(&place);
                }
                continue;
            }
            self.check_name(&entry.name, true, &path, &member_order);
            self.check_duplicate(&entry.name, &path, &member_order);
            if matches!(entry.kind, LNKTYPE | SYMTYPE) {
                let symbolic = entry.kind == SYMTYPE;
                stripping.links = true;
                if !symbolic && !same_leading_dir(&entry.name, &entry.linkname) {
                    stripping.unstripped_targets.push((member_order.clone(), path.clone()));
                }
                if prefix.is_empty() {
                    if let Some(place) = links.locate(&entry.name).filter(|place| may_be_pyproject(place)) {
                        pyprojects.insert(place, None);
                    }
                }
                if let Some(why) = link_out_of_model(&links, &entry.name, symbolic) {
                    self.unplaced(&member_order, &path, why);
                }
                if !symbolic {
                    self.check_written_outside(&links, &outside, &entry.name, &path, &member_order);
                } else if links.leads_out(&entry.name, &entry.linkname) {
                    outside.extend(links.locate(&entry.name));
                }
                links.add(&entry.name, &entry.linkname, symbolic);
                let what = if symbolic { "symlink" } else { "hard link" };
                let message = format!(
                    "{what} to {:?} recorded, not followed; the target's content was scanned under this name",
                    display_name(&entry.linkname)
                );
                self.issue(member_order, Issue::new(path, IssueKind::LinkNotFollowed, message));
                continue;
            }
            // Directories and links are handled above: what is left without content is a device or a FIFO.
            if !has_content(entry.kind) {
                let message = "device or FIFO entry has no content";
                self.issue(member_order, Issue::new(path, IssueKind::SpecialEntry, message));
                continue;
            }
            self.check_written_outside(&links, &outside, &entry.name, &path, &member_order);
            if links.placed_by_version(&entry.name) {
                self.unplaced(
                    &member_order,
                    &path,
                    "a member whose '..' or symlink target Python versions read apart",
                );
            }
            let data = self.tar_content(&mut tar, &entry, &guard, &path, &member_order);
            if let Some(data) = data {
                if let Some(parts) = links.locate(&entry.name) {
                    // Top level only (pip builds the distribution, not an sdist inside it), and under the
                    // leading directory seen so far: at most two places are kept.
                    if prefix.is_empty()
                        && may_be_pyproject(&parts)
                        && (parts.len() == 1 || parts[..1] == stripping.leading.root()[..])
                    {
                        pyprojects.insert(parts.clone(), Some(data.clone()));
                    }
                    links.add_file(&parts);
                    written.entry(parts).or_default().push(index - 1);
                }
                if let Some(alias) = split_alias {
                    let alias = format!("{prefix}{}", display_name(&alias));
                    stripping.split_files.push((index - 1, member_order.clone(), path.clone(), alias));
                }
                let mut hashes = ContentHashes::default();
                self.scan_aliases(&entry.name, false, prefix, &path, &member_order, &data, &mut hashes);
                emit(Member { order: member_order, path, data, depth });
            }
            if guard.tripped() != Trip::None {
                return;
            }
        };
        let end = match stop {
            TarStop::End { offset: 0, what, marker: false } => {
                let message = format!("not a readable tar archive: it starts with {what}");
                self.issue(order.to_vec(), Issue::new(label, IssueKind::Corrupt, message));
                0
            }
            TarStop::End { offset, .. } => offset,
            TarStop::Refused { offset, why } => {
                let message = format!(
                    "malformed tar at entry {index} (offset {offset}): {why}; Python's tarfile refuses the archive \
                     here; the rest was scanned as raw bytes"
                );
                self.issue([order, &[index as u32]].concat(), Issue::new(label, IssueKind::Corrupt, message));
                offset
            }
            TarStop::Metadata => {
                let message = format!(
                    "a tar header's metadata (GNU long name or link, PAX records or sparse map) is over the \
                     {TAR_METADATA_LIMIT}-byte metadata limit; the rest was not scanned"
                );
                self.issue(order.to_vec(), Issue::new(label, IssueKind::MemberTooLarge, message));
                return;
            }
            TarStop::Stream(err) => {
                let issue = stream_error_issue(&guard, &err, label, self.limits);
                self.issue([order, &[index as u32]].concat(), issue);
                return;
            }
        };
        let root = stripping.leading.root();
        let pyproject = pyprojects.remove(&[root.as_slice(), &[b"pyproject.toml".to_vec()]].concat());
        if pyproject.as_ref().is_some_and(Option::is_none) {
            self.backend_unread(&root, order, "is a link (pip reads it through the link)");
        }
        let backend = self.backend_places(pyproject.flatten().as_deref(), &root, order);
        let split_files = self.stripped_names(stripping);
        self.tar_trailing(&mut tar, end, &guard, prefix, depth, order);
        let stream = Stream { reader: tar.reader, guard, container, source };
        self.after_stream(&stream, prefix, depth, order);
        if !links.is_empty() || !split_files.is_empty() || !backend.is_empty() {
            let backend = Backend { search: &backend, root: &root };
            self.tar_aliases(&stream, &links, &written, &split_files, backend, prefix, order);
        }
    }

    /// What pip's stripping of the leading directory changes, once every name is known (it strips
    /// only when all share their first component): file members whose names it splits at a `\`
    /// are returned, to be scanned again under the name it writes them to; links it may make apart
    /// from the engine's model make the result incomplete.
    fn stripped_names(&self, stripping: Stripping) -> Vec<(usize, String)> {
        if !stripping.leading.stripped() {
            return Vec::new();
        }
        for (order, path) in stripping.unstripped_targets {
            let message = "a hard link whose target pip (24.1 and later) does not strip of the leading directory it \
                           strips from every name: it links to the target as written, under the unpack directory, \
                           where another member may be; the content was scanned under the names the engine works \
                           out, which may miss one";
            self.issue(order, Issue::new(path, IssueKind::Ambiguous, message));
        }
        if stripping.links {
            for (order, path) in stripping.split {
                let message = "a name pip splits at its '\\' when it strips the leading directory, in an archive with \
                               links, where the links then lead is not modelled; the content was scanned under the \
                               names the engine works out, which may miss one";
                self.issue(order, Issue::new(path, IssueKind::Ambiguous, message));
            }
        }
        let mut aliases = Vec::with_capacity(stripping.split_files.len());
        for (index, order, path, alias) in stripping.split_files {
            self.issue(order, alias_issue(&path, SPLIT_WHY, &alias));
            aliases.push((index, alias));
        }
        aliases
    }

    /// A member written through a symlink in `outside` (one leading out of the unpack directory):
    /// pip before 24.1 writes its content out there, under a name the engine cannot give it (current
    /// pip refuses the symlink). The result is incomplete rather than clean.
    fn check_written_outside(
        &self,
        links: &Links,
        outside: &[Vec<Vec<u8>>],
        name: &[u8],
        path: &str,
        order: &Order,
    ) {
        if outside.is_empty() {
            return;
        }
        let Some(place) = links.locate(name) else { return };
        let resolved = links.resolve(&place);
        if std::iter::once(&place).chain(&resolved).any(|at| outside.iter().any(|link| at.starts_with(link)))
        {
            let message = "written through a symlink that leads out of the unpack directory: pip before 24.1 (no \
                           data filter) writes the content out there, under a name the engine cannot give it; \
                           it was scanned under this name only";
            self.issue(order.clone(), Issue::new(path, IssueKind::Ambiguous, message));
        }
    }

    /// A link or directory member placed where the engine's model of `tarfile`'s extraction and
    /// the Python versions may part: the result is incomplete rather than clean.
    fn unplaced(&self, order: &Order, path: &str, what: &str) {
        let message = format!(
            "{what}: what lands under which name here differs between Python versions' tarfile (how it \
             replaces existing names, or reads '..'); the content was scanned under the names the engine works \
             out, which may miss one"
        );
        self.issue(order.clone(), Issue::new(path, IssueKind::Ambiguous, message));
    }

    /// One member's content: `size` bytes from its data offset, or a sparse member's chunks laid
    /// out as `tarfile` extracts them. Every shortfall is an issue.
    fn tar_content(
        &self,
        tar: &mut TarStream<'_>,
        entry: &TarEntry,
        guard: &Guard,
        path: &str,
        order: &Order,
    ) -> Option<Vec<u8>> {
        let stored = entry.stored_len();
        let end = entry.data_offset.saturating_add(stored);
        let mut reader = tar.range(entry.data_offset, end, entry.next_header);
        let Some(chunks) = &entry.sparse else {
            let read = self.read_member(&mut reader, guard, path, None, Some(entry.size), None, order);
            if let Some(data) = &read.data {
                if read.whole && data.len() as u64 != entry.size {
                    let message = format!(
                        "declares {} bytes but the archive ends after {}; all of it was scanned",
                        entry.size,
                        data.len()
                    );
                    self.issue(order.clone(), Issue::new(path, IssueKind::SizeMismatch, message));
                }
            }
            return read.data;
        };
        if !sparse_is_plain(chunks) {
            let message =
                "its sparse map is out of order or overlaps: tarfile's extract and extractfile give \
                           different bytes; the extracted file was scanned";
            self.issue(order.clone(), Issue::new(path, IssueKind::Ambiguous, message));
        }
        // Holes are not compressed data (the ratio would always trip on them); they are bounded
        // by the member and total limits, and the stream's own ratio still guards the data.
        let read = self.read_member(&mut reader, guard, path, Some(u64::MAX), Some(stored), None, order);
        let data = read.data?;
        let max = self.limits.max_member_size;
        if entry.size > max {
            let message = format!(
                "a sparse member of {} bytes, over the member-size limit of {max} bytes; only the first {max} bytes \
                 were scanned",
                entry.size
            );
            self.issue(order.clone(), Issue::new(path, IssueKind::MemberTooLarge, message));
        }
        let content = expand_sparse(&data, chunks, entry.size, max);
        let holes = (content.len() as u64).saturating_sub(data.len() as u64);
        self.charge(holes, path, order).then_some(content)
    }

    /// Scan what follows the end of the archive (from `offset`, where `tarfile` stopped): zero
    /// blocks are padding; anything else is hidden data, scanned and opened like a member.
    fn tar_trailing(
        &self,
        tar: &mut TarStream<'_>,
        offset: u64,
        guard: &Guard,
        prefix: &str,
        depth: u32,
        order: &[u32],
    ) {
        let order: Order = [order, &[u32::MAX]].concat();
        let path = format!("{prefix}<after end of archive>");
        let max = self.limits.max_member_size as usize;
        let mut reader = tar.range(offset, u64::MAX, u64::MAX);
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut skipped = 0u64;
        let mut kept: Option<Vec<u8>> = None;
        while !self.cancelled() {
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    let mut issue = stream_error_issue(guard, &err, &path, self.limits);
                    if issue.kind == IssueKind::BadChecksum {
                        // Every member came out before the stream's final check failed.
                        issue = issue.scanned();
                        issue.message = format!(
                            "the compressed stream's checksum does not match: {err}; its content was scanned"
                        );
                    }
                    self.issue(order.clone(), issue);
                    break;
                }
            };
            match kept.as_mut() {
                Some(kept) => kept.extend_from_slice(&chunk[..n]),
                None => match chunk[..n].iter().position(|&b| b != 0) {
                    Some(first) => {
                        // Keep whole blocks, so that a tar hidden there still starts at a header.
                        let at = skipped + first as u64;
                        let start = at - at % BLOCK;
                        let mut hidden = vec![0u8; skipped.saturating_sub(start) as usize];
                        hidden.extend_from_slice(&chunk[start.saturating_sub(skipped) as usize..n]);
                        skipped = start;
                        kept = Some(hidden);
                    }
                    None => skipped += n as u64,
                },
            }
            if kept.as_ref().is_some_and(|k| k.len() > max) {
                let message = format!(
                    "hidden data after the end of the archive exceeds {max} bytes; only the first {max} were scanned"
                );
                self.issue(order.clone(), Issue::new(&*path, IssueKind::MemberTooLarge, message));
                break;
            }
        }
        let Some(mut hidden) = kept else { return };
        hidden.truncate(max);
        let message = format!(
            "{} bytes after the end of the tar archive (from offset {} of the tar stream); scanned, and opened if \
             they hold an archive",
            hidden.len(),
            offset + skipped
        );
        self.issue(order.clone(), Issue::new(&*path, IssueKind::HiddenData, message).scanned());
        self.file(Member { order, path, data: hidden, depth });
    }

    /// Scan again, under each name a link gives it, the content of every member a link points
    /// at (and of members written through a symlink, under its target's name), and as the sdist's
    /// build backend each member at one of its modules' places (see `build_backend`). A second pass
    /// over the archive reads only those members: links and in-tree backends are rare, and this
    /// keeps the first pass from holding every member in case a later link or `pyproject.toml`
    /// needs it.
    #[allow(clippy::too_many_arguments)]
    fn tar_aliases(
        &self,
        stream: &Stream<'_>,
        links: &Links,
        written: &Written,
        split_files: &[(usize, String)],
        backend: Backend<'_>,
        prefix: &str,
        order: &[u32],
    ) {
        let mut wanted: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (entry, alias) in split_files {
            wanted.entry(*entry).or_default().push(alias.clone());
        }
        let graph = links.graph();
        // The members whose content shows at the place of a build backend's module, under its own name or
        // through links.
        let mut backend_entries: BTreeSet<usize> = BTreeSet::new();
        // And the members `zipimport` reads as zips, where `backend-path` names a directory: the modules'
        // names in them.
        let mut zips_on_path: BTreeMap<usize, Vec<Vec<u8>>> = BTreeMap::new();
        let search = backend.search;
        let mut count = split_files.len() as u64;
        for (place, entries) in written {
            let shown = graph.shown_under(place);
            if !search.is_empty() && (search.is_module(place) || shown.iter().any(|at| search.is_module(at)))
            {
                backend_entries.extend(entries);
            }
            for shown in shown {
                let name = format!("{prefix}{}", display_name(&join(&shown)));
                for &entry in entries {
                    wanted.entry(entry).or_default().push(name.clone());
                    count += 1;
                }
            }
            if count > self.limits.max_members {
                break;
            }
        }
        if !search.is_empty() {
            // Through a symlinked directory on the way to a module's place.
            for real in search.modules().iter().filter_map(|place| links.resolve(place)) {
                backend_entries.extend(written.get(&real).into_iter().flatten());
            }
            for (file, inside) in search.zips_on_path(|place| written.contains_key(place)) {
                zips_on_path.extend(written[&file].iter().map(|&entry| (entry, inside.clone())));
            }
        }
        let last = wanted.keys().next_back().max(backend_entries.last()).max(zips_on_path.keys().next_back());
        let Some(&last) = last else { return };
        if count > self.limits.max_members {
            let message = format!(
                "links give members {count} more names, over the member limit of {}; the content under those names \
                 was not scanned",
                self.limits.max_members
            );
            self.issue(
                order.to_vec(),
                Issue::new(prefix.strip_suffix("!/").unwrap_or(prefix), IssueKind::TooManyMembers, message),
            );
            return;
        }
        let again = open_stream(stream.container, stream.source, self.limits);
        let mut tar = TarStream::new(again.reader);
        let mut headers = TarReader::new();
        let max = self.limits.max_member_size;
        for index in 0..=last {
            let Ok(entry) = headers.next(&mut tar) else { return };
            let names = wanted.get(&index);
            let as_backend = backend_entries.contains(&index);
            let zip_on_path = zips_on_path.get(&index);
            if names.is_none() && !as_backend && zip_on_path.is_none() {
                continue;
            }
            let stored = entry.stored_len().min(max);
            let mut reader =
                tar.range(entry.data_offset, entry.data_offset.saturating_add(stored), entry.next_header);
            let mut data = Vec::new();
            if reader.read_to_end(&mut data).is_err() {
                return;
            }
            let data = match &entry.sparse {
                Some(chunks) => expand_sparse(&data, chunks, entry.size, max),
                None => data,
            };
            let mut hashes = ContentHashes::default();
            for (k, name) in names.into_iter().flatten().enumerate() {
                let alias_order: Order = [order, &[index as u32, k as u32 + 1]].concat();
                self.scan_named(alias_order, name.clone(), &data, &mut hashes);
            }
            let path = format!("{prefix}{}", display_name(&entry.name));
            let entry_order: Order = [order, &[index as u32]].concat();
            if as_backend {
                self.scan_as_backend(&entry_order, &path, backend.root, &data, &mut hashes);
            }
            if let Some(inside) = zip_on_path {
                self.zip_on_path(&data, &path, inside, backend.root, &entry_order);
            }
        }
    }
}

/// Why a link member is outside what the engine models exactly, if it is: named through a symlink
/// or with `.` or `..` inside its name, or made where a file, a directory or a link already is.
fn link_out_of_model(links: &Links, name: &[u8], symbolic: bool) -> Option<&'static str> {
    let parts: Vec<&[u8]> = name.split(|&b| b == b'/').collect();
    let leading = parts.iter().take_while(|part| **part == b".").count();
    if parts[leading..].iter().any(|part| *part == b"." || *part == b"..") {
        return Some("a link named with '.' or '..' inside its name");
    }
    let place = links.locate(name)?;
    let parent = &place[..place.len().saturating_sub(1)];
    if links.resolve(parent).as_deref() != Some(parent) {
        return Some("a link named through a symlink");
    }
    if links.placed_by_version(name) {
        return Some("a link named through a symlink Python versions read apart");
    }
    if links.is_file(&place) || links.is_dir(&place) || links.is_link(&place) {
        return Some(if symbolic {
            "a symlink member where a file, a directory or a link was made"
        } else {
            "a hard link member where a file, a directory or a link was made"
        });
    }
    None
}
