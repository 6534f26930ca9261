//! Problems met while walking or scanning a distribution. Nothing is skipped silently: every
//! member that is not scanned, or not scanned whole, has an issue with `unscanned = true`.

use std::fmt;

/// What went wrong. The kebab-case names are a public, stable interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueKind {
    /// A member is larger than `max_member_size`.
    MemberTooLarge,
    /// The distribution inflates to more than `max_total_size`.
    TotalSizeExceeded,
    /// The distribution has more than `max_members` members.
    TooManyMembers,
    /// A member or stream inflates more than `max_ratio` times its compressed size.
    CompressionRatio,
    /// An archive nested deeper than `max_depth` was scanned only as raw bytes.
    NestingTooDeep,
    /// A file's YARA-X scan did not finish within the timeout.
    ScanTimeout,
    /// YARA-X failed on a file for another reason.
    ScanError,
    /// The archive or a member is malformed or truncated.
    Corrupt,
    /// A member's checksum does not match its content.
    BadChecksum,
    /// An encrypted member cannot be read.
    Encrypted,
    /// A member uses a compression method this scanner cannot inflate.
    UnsupportedCompression,
    /// A symlink or hard link was recorded and not followed.
    LinkNotFollowed,
    /// A device, FIFO or other special entry, which has no content.
    SpecialEntry,
    /// Bytes outside any member (before or after the archive structure).
    HiddenData,
    /// The distribution's bytes could not be read (a local path that is missing or unreadable).
    Unreadable,
    /// A bug in the scanner caught while handling this member.
    InternalError,
    /// Zip entries that share bytes (the "overlapping entries" bomb); each is still scanned.
    OverlappingEntries,
    /// Several members with the same name; every one is scanned (extractors keep only one).
    DuplicateName,
    /// A member's declared size (or a zip64 size) differs from what its data inflates to.
    SizeMismatch,
    /// A member name that is absolute, climbs out with `..`, holds control characters or is not
    /// valid UTF-8 (names are never used on the host; this flags the intent).
    UnsafePath,
    /// Readers disagree about this part of the archive (Python versions read a header
    /// differently, or two names are given): the reading scanned is said in the message.
    Ambiguous,
}

impl IssueKind {
    pub const ALL: [IssueKind; 21] = [
        IssueKind::MemberTooLarge,
        IssueKind::TotalSizeExceeded,
        IssueKind::TooManyMembers,
        IssueKind::CompressionRatio,
        IssueKind::NestingTooDeep,
        IssueKind::ScanTimeout,
        IssueKind::ScanError,
        IssueKind::Corrupt,
        IssueKind::BadChecksum,
        IssueKind::Encrypted,
        IssueKind::UnsupportedCompression,
        IssueKind::LinkNotFollowed,
        IssueKind::SpecialEntry,
        IssueKind::HiddenData,
        IssueKind::Unreadable,
        IssueKind::InternalError,
        IssueKind::OverlappingEntries,
        IssueKind::DuplicateName,
        IssueKind::SizeMismatch,
        IssueKind::UnsafePath,
        IssueKind::Ambiguous,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IssueKind::MemberTooLarge => "member-too-large",
            IssueKind::TotalSizeExceeded => "total-size-exceeded",
            IssueKind::TooManyMembers => "too-many-members",
            IssueKind::CompressionRatio => "compression-ratio",
            IssueKind::NestingTooDeep => "nesting-too-deep",
            IssueKind::ScanTimeout => "scan-timeout",
            IssueKind::ScanError => "scan-error",
            IssueKind::Corrupt => "corrupt",
            IssueKind::BadChecksum => "bad-checksum",
            IssueKind::Encrypted => "encrypted",
            IssueKind::UnsupportedCompression => "unsupported-compression",
            IssueKind::LinkNotFollowed => "link-not-followed",
            IssueKind::SpecialEntry => "special-entry",
            IssueKind::HiddenData => "hidden-data",
            IssueKind::Unreadable => "unreadable",
            IssueKind::InternalError => "internal-error",
            IssueKind::OverlappingEntries => "overlapping-entries",
            IssueKind::DuplicateName => "duplicate-name",
            IssueKind::SizeMismatch => "size-mismatch",
            IssueKind::UnsafePath => "unsafe-path",
            IssueKind::Ambiguous => "ambiguous",
        }
    }
}

impl fmt::Display for IssueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem, about one member (`path`) or the whole distribution (`path` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub kind: IssueKind,
    pub message: String,
    /// True when content was left unscanned because of this problem.
    pub unscanned: bool,
}

impl Issue {
    pub fn new(path: impl Into<String>, kind: IssueKind, message: impl Into<String>) -> Self {
        // Informational kinds: the content concerned was scanned (or has none).
        let unscanned = !matches!(
            kind,
            IssueKind::LinkNotFollowed
                | IssueKind::SpecialEntry
                | IssueKind::BadChecksum
                | IssueKind::OverlappingEntries
                | IssueKind::DuplicateName
                | IssueKind::SizeMismatch
                | IssueKind::UnsafePath
        );
        Self { path: path.into(), kind, message: message.into(), unscanned }
    }

    /// The same issue, but content was left unscanned because of it after all (e.g. a checksum
    /// error that stopped a compressed stream).
    pub fn unscanned(mut self) -> Self {
        self.unscanned = true;
        self
    }

    /// The same issue, but its content was scanned after all (e.g. hidden bytes scanned as a blob).
    pub fn scanned(mut self) -> Self {
        self.unscanned = false;
        self
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.kind, self.message)
        } else {
            write!(f, "{}: {}: {}", self.path, self.kind, self.message)
        }
    }
}
