//! Turning a pushed request's `:path` into a safe path relative to the output
//! directory, and checking that directory's existing entries before writing.
//!
//! [`sanitize`] maps the bytes of a `:path` to a relative path made only of
//! normal components:
//!
//! 1. the query (`?...`) and the fragment (`#...`) are removed;
//! 2. leading slashes are removed (nghq sends `//hello.txt`);
//! 3. `%XX` escapes are decoded (a `%` not followed by two hex digits is refused);
//! 4. the decoded bytes are refused if they hold a NUL or a backslash, or start
//!    with `/` (absolute after decoding, e.g. `/%2Fetc`);
//! 5. the bytes are split at `/`; empty and `.` components are dropped, a `..`
//!    component is refused, a first component that looks like a Windows drive
//!    (`C:`, `c:foo`) is refused, and so is a component longer than
//!    [`MAX_COMPONENT_LEN`] bytes;
//! 6. nothing left is refused, and so is a result longer than [`MAX_PATH_LEN`] bytes.
//!
//! Bytes that are not UTF-8 after decoding are kept (file names are bytes on
//! Linux).
//!
//! [`check_parents`] and [`create_parents`] then look at the output directory:
//! a parent component that exists as anything but a real directory (a file, or
//! a symlink, wherever it points) is refused, so a write never leaves the
//! directory through a symlink.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

/// The longest file name component accepted, in bytes (Linux `NAME_MAX`).
pub const MAX_COMPONENT_LEN: usize = 255;

/// The longest relative path accepted, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// Why a `:path` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The request has no `:path` header.
    #[error("the request has no :path")]
    Missing,
    /// Nothing is left once slashes, `.` components, query and fragment are removed.
    #[error("the path names no file")]
    Empty,
    /// A `%` is not followed by two hex digits.
    #[error("invalid percent escape at byte {at}")]
    BadEscape {
        /// Byte offset of the `%` in the `:path`.
        at: usize,
    },
    /// The decoded path holds a NUL byte.
    #[error("the path contains a NUL byte")]
    Nul,
    /// The decoded path holds a backslash.
    #[error("the path contains a backslash")]
    Backslash,
    /// The decoded path is absolute (it starts with `/` after decoding).
    #[error("the path is absolute after percent-decoding")]
    Absolute,
    /// A `..` component.
    #[error("the path has a `..` component")]
    DotDot,
    /// The first component looks like a Windows drive (`C:`).
    #[error("the path starts with a drive prefix")]
    DrivePrefix,
    /// A component is longer than [`MAX_COMPONENT_LEN`] bytes.
    #[error("a path component is {len} bytes long (at most 255)")]
    ComponentTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The path is longer than [`MAX_PATH_LEN`] bytes.
    #[error("the path is {len} bytes long (at most 4096)")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name is reserved for the receiver's own temporary files.
    #[error("the path uses a name reserved for temporary files")]
    Reserved,
    /// A parent component exists in the output directory as a symlink.
    #[error("{} is a symlink", parent.display())]
    SymlinkParent {
        /// The parent, relative to the output directory.
        parent: PathBuf,
    },
    /// A parent component exists in the output directory as something other
    /// than a directory.
    #[error("{} exists and is not a directory", parent.display())]
    ParentNotDirectory {
        /// The parent, relative to the output directory.
        parent: PathBuf,
    },
    /// The target exists in the output directory as a directory.
    #[error("{} is a directory", path.display())]
    TargetIsDirectory {
        /// The target, relative to the output directory.
        path: PathBuf,
    },
}

/// Why a path could not be placed in the output directory.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The path is refused.
    #[error(transparent)]
    Refused(#[from] PathError),
    /// Looking at or creating a directory failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The full path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Decodes `%XX` escapes ([`h3m_proto::http::path::percent_decode`]); `base`
/// is the offset of `bytes` in the `:path` (for errors).
fn percent_decode(bytes: &[u8], base: usize) -> Result<Vec<u8>, PathError> {
    h3m_proto::http::path::percent_decode(bytes).map_err(|e| PathError::BadEscape { at: base + e.at })
}

/// Whether a component looks like a Windows drive: an ASCII letter and a colon.
fn is_drive(component: &[u8]) -> bool {
    matches!(component, [letter, b':', ..] if letter.is_ascii_alphabetic())
}

/// Maps a `:path` to a relative path of normal components (see the module
/// documentation for the rules).
pub fn sanitize(path: &[u8]) -> Result<PathBuf, PathError> {
    match plain(path) {
        Some(rel) => Ok(PathBuf::from(OsString::from_vec(rel.to_vec()))),
        None => sanitize_in_full(path),
    }
}

/// The common case in one pass: one leading `/`, then non-empty components
/// other than `.` and `..`, of at most [`MAX_COMPONENT_LEN`] bytes each, with
/// no escape, query, fragment, NUL or backslash, the first not a drive, at
/// most [`MAX_PATH_LEN`] bytes in all: the relative path is the rest as is
/// (what [`sanitize_in_full`] would make of it). `None`: anything else.
fn plain(path: &[u8]) -> Option<&[u8]> {
    let rel = path.strip_prefix(b"/")?;
    if rel.is_empty() || rel.len() > MAX_PATH_LEN {
        return None;
    }
    let mut component_start = 0;
    for (i, &b) in rel.iter().chain(std::iter::once(&b'/')).enumerate() {
        match b {
            b'/' => {
                let component = rel.get(component_start..i)?;
                if component.is_empty()
                    || component == b"."
                    || component == b".."
                    || component.len() > MAX_COMPONENT_LEN
                    || (component_start == 0 && is_drive(component))
                {
                    return None;
                }
                component_start = i + 1;
            }
            b'%' | b'?' | b'#' | b'\\' | 0 => return None,
            _ => {}
        }
    }
    Some(rel)
}

/// [`sanitize`] by the rules, step by step.
fn sanitize_in_full(path: &[u8]) -> Result<PathBuf, PathError> {
    let end = path.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(path.len());
    let without_query = path.get(..end).unwrap_or(path);
    let leading = without_query.iter().take_while(|&&b| b == b'/').count();
    let rest = without_query.get(leading..).unwrap_or_default();
    let decoded = percent_decode(rest, leading)?;
    if decoded.contains(&0) {
        return Err(PathError::Nul);
    }
    if decoded.contains(&b'\\') {
        return Err(PathError::Backslash);
    }
    if decoded.first() == Some(&b'/') {
        return Err(PathError::Absolute);
    }
    let mut components: Vec<&[u8]> = Vec::new();
    for component in decoded.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(PathError::DotDot),
            c if c.len() > MAX_COMPONENT_LEN => return Err(PathError::ComponentTooLong { len: c.len() }),
            c => components.push(c),
        }
    }
    match components.first() {
        None => return Err(PathError::Empty),
        Some(first) if is_drive(first) => return Err(PathError::DrivePrefix),
        Some(_) => {}
    }
    let joined = components.join(&b'/');
    if joined.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong { len: joined.len() });
    }
    Ok(PathBuf::from(OsString::from_vec(joined)))
}

/// The normal components of a relative path from [`sanitize`] (other kinds are skipped).
fn normal_components(rel: &Path) -> Vec<&OsStr> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name),
            _ => None,
        })
        .collect()
}

/// What stands at `full` (relative name `rel` for errors): `Ok(true)` a real
/// directory, `Ok(false)` nothing.
fn existing_dir(full: &Path, rel: &Path) -> Result<bool, PlaceError> {
    match std::fs::symlink_metadata(full) {
        Ok(meta) if meta.file_type().is_symlink() => Err(PathError::SymlinkParent { parent: rel.to_path_buf() }.into()),
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(_) => Err(PathError::ParentNotDirectory { parent: rel.to_path_buf() }.into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PlaceError::Io { path: full.to_path_buf(), source }),
    }
}

/// Checks, without changing anything, that every parent of `rel` inside `root`
/// either does not exist yet or is a real directory (not a symlink), and that
/// `rel` itself is not a directory.
pub fn check_parents(root: &Path, rel: &Path) -> Result<(), PlaceError> {
    if let Some(full) = check_parent_dirs(root, rel)? {
        check_target(&full, rel)?;
    }
    Ok(())
}

/// [`check_parents`] without the look at `rel` itself (one `stat` less per
/// resource: the writer's rename reports a directory there). Returns the full
/// target path when every parent exists.
pub fn check_parent_dirs(root: &Path, rel: &Path) -> Result<Option<PathBuf>, PlaceError> {
    let parts = normal_components(rel);
    let (last, parents) = parts.split_last().ok_or(PathError::Empty)?;
    let mut full = root.to_path_buf();
    let mut relative = PathBuf::new();
    for part in parents {
        full.push(part);
        relative.push(part);
        if !existing_dir(&full, &relative)? {
            return Ok(None);
        }
    }
    full.push(last);
    Ok(Some(full))
}

/// Refuses a target that exists as a directory.
fn check_target(full: &Path, rel: &Path) -> Result<(), PlaceError> {
    match std::fs::symlink_metadata(full) {
        Ok(meta) if meta.is_dir() => Err(PathError::TargetIsDirectory { path: rel.to_path_buf() }.into()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PlaceError::Io { path: full.to_path_buf(), source }),
    }
}

/// Like [`check_parents`], creating the missing parents one at a time (each
/// new one checked again, so a symlink planted meanwhile is still refused),
/// but not the target itself. Returns the full target path, `root` joined
/// with `rel`.
pub fn create_parents(root: &Path, rel: &Path) -> Result<PathBuf, PlaceError> {
    let parts = normal_components(rel);
    let (last, parents) = parts.split_last().ok_or(PathError::Empty)?;
    let mut full = root.to_path_buf();
    let mut relative = PathBuf::new();
    for part in parents {
        full.push(part);
        relative.push(part);
        if existing_dir(&full, &relative)? {
            continue;
        }
        match std::fs::create_dir(&full) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(PlaceError::Io { path: full, source }),
        }
        if !existing_dir(&full, &relative)? {
            let source = io::Error::new(io::ErrorKind::NotFound, "directory vanished after creation");
            return Err(PlaceError::Io { path: full, source });
        }
    }
    // A target that became a directory since `check_parents` makes the
    // rename fail (`EISDIR`): the writer reports it as
    // [`PathError::TargetIsDirectory`] without another `stat` per file.
    full.push(last);
    Ok(full)
}

/// Whether the first component of a sanitized path starts with `prefix`.
pub fn first_component_starts_with(rel: &Path, prefix: &[u8]) -> bool {
    normal_components(rel).first().is_some_and(|c| c.as_bytes().starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(input: &str) -> String {
        sanitize(input.as_bytes()).unwrap().to_str().unwrap().to_owned()
    }

    fn err(input: &[u8]) -> PathError {
        sanitize(input).unwrap_err()
    }

    #[test]
    fn nghq_paths() {
        assert_eq!(ok("//hello.txt"), "hello.txt");
        assert_eq!(ok("//sub/data.json"), "sub/data.json");
        assert_eq!(ok("/media/index.html"), "media/index.html");
    }

    #[test]
    fn query_fragment_dots_and_slashes() {
        assert_eq!(ok("/a/b.txt?x=1/../.."), "a/b.txt");
        assert_eq!(ok("/a/b.txt#frag"), "a/b.txt");
        assert_eq!(ok("/a//./b/./c"), "a/b/c");
        assert_eq!(ok("/a/b/"), "a/b");
        assert_eq!(ok("/my%20file%3F.txt"), "my file?.txt");
        assert_eq!(ok("/a%2Fb"), "a/b");
        assert_eq!(ok("/%C3%A9t%C3%A9/日本.txt"), "été/日本.txt");
        assert_eq!(ok("/..a/b.."), "..a/b..");
        assert_eq!(ok("/a/C:/x"), "a/C:/x");
    }

    #[test]
    fn refusals() {
        assert_eq!(err(b"/../../etc/x"), PathError::DotDot);
        assert_eq!(err(b"/%2e%2e/x"), PathError::DotDot);
        assert_eq!(err(b"/a/../../x"), PathError::DotDot);
        assert_eq!(err(b"/a/.."), PathError::DotDot);
        assert_eq!(err(b"/a%00b"), PathError::Nul);
        assert_eq!(err(b"/a\0b"), PathError::Nul);
        assert_eq!(err(b"/a\\..\\b"), PathError::Backslash);
        assert_eq!(err(b"/a%5cb"), PathError::Backslash);
        assert_eq!(err(b"/C:/x"), PathError::DrivePrefix);
        assert_eq!(err(b"/c:x"), PathError::DrivePrefix);
        assert_eq!(err(b"/"), PathError::Empty);
        assert_eq!(err(b""), PathError::Empty);
        assert_eq!(err(b"//././/"), PathError::Empty);
        assert_eq!(err(b"/?a"), PathError::Empty);
        assert_eq!(err(b"/%zz"), PathError::BadEscape { at: 1 });
        assert_eq!(err(b"/ab%4"), PathError::BadEscape { at: 3 });
        assert_eq!(err(b"/ab%"), PathError::BadEscape { at: 3 });
        assert_eq!(err(b"//%2Fetc/passwd"), PathError::Absolute);
        assert_eq!(err(&[b'/'; 1]), PathError::Empty);
        let long = format!("/{}", "a".repeat(256));
        assert_eq!(err(long.as_bytes()), PathError::ComponentTooLong { len: 256 });
        let deep = "/abcdefgh".repeat(500);
        assert_eq!(err(deep.as_bytes()), PathError::TooLong { len: 4499 });
    }

    #[test]
    fn non_utf8_is_kept() {
        let p = sanitize(b"/a%FF%FEb").unwrap();
        assert_eq!(p.as_os_str().as_bytes(), b"a\xff\xfeb");
    }

    #[test]
    fn parents_are_checked() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("file"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        std::fs::create_dir(root.path().join("dir")).unwrap();
        let refused = |rel: &str| match check_parents(root.path(), Path::new(rel)) {
            Err(PlaceError::Refused(e)) => e,
            other => panic!("{rel}: {other:?}"),
        };
        assert_eq!(refused("link/x"), PathError::SymlinkParent { parent: "link".into() });
        assert_eq!(refused("file/x"), PathError::ParentNotDirectory { parent: "file".into() });
        assert_eq!(refused("dir"), PathError::TargetIsDirectory { path: "dir".into() });
        check_parents(root.path(), Path::new("dir/new/deeper/x")).unwrap();
        check_parents(root.path(), Path::new("link")).unwrap();
        assert!(matches!(create_parents(root.path(), Path::new("link/a/b")), Err(PlaceError::Refused(_))));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        let full = create_parents(root.path(), Path::new("dir/new/deeper/x")).unwrap();
        assert_eq!(full, root.path().join("dir/new/deeper/x"));
        assert!(root.path().join("dir/new/deeper").is_dir());
    }

    /// Whether `rel`, resolved lexically under a root, stays strictly inside it.
    fn stays_inside(rel: &Path) -> bool {
        let mut depth = 0usize;
        for c in rel.components() {
            match c {
                Component::Normal(_) => depth += 1,
                Component::CurDir => {}
                Component::ParentDir => match depth.checked_sub(1) {
                    Some(d) => depth = d,
                    None => return false,
                },
                Component::RootDir | Component::Prefix(_) => return false,
            }
        }
        depth > 0
    }

    fn nasty_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"/".to_vec()),
            Just(b".".to_vec()),
            Just(b"..".to_vec()),
            Just(b"%2e".to_vec()),
            Just(b"%2E".to_vec()),
            Just(b"%2f".to_vec()),
            Just(b"%2F".to_vec()),
            Just(b"%5c".to_vec()),
            Just(b"%00".to_vec()),
            Just(b"%".to_vec()),
            Just(b"\\".to_vec()),
            Just(b"C:".to_vec()),
            Just(b"?".to_vec()),
            Just(b"#".to_vec()),
            Just(b"a".to_vec()),
            Just("é".as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    fn benign_component() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 _.é日本-]{1,20}"
            .prop_filter("not a dot component or a drive", |s| s != "." && s != ".." && !is_drive(s.as_bytes()))
    }

    /// Percent-encodes the bytes of `s` chosen by `mask`, and always `%`, `?`, `#`.
    fn encode(s: &str, mask: &[bool]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, b) in s.bytes().enumerate() {
            let forced = matches!(b, b'%' | b'?' | b'#');
            if forced || mask[i % mask.len()] {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            } else {
                out.push(b);
            }
        }
        out
    }

    proptest! {
        #[test]
        fn never_escapes(input in nasty_bytes()) {
            if let Ok(p) = sanitize(&input) {
                prop_assert!(stays_inside(&p), "{p:?}");
                prop_assert!(p.components().all(|c| matches!(c, Component::Normal(n) if n != ".." && n != ".")));
                let bytes = p.as_os_str().as_bytes();
                prop_assert!(!bytes.contains(&0) && !bytes.contains(&b'\\'));
                prop_assert!(!bytes.is_empty() && bytes.len() <= MAX_PATH_LEN);
                prop_assert!(!is_drive(bytes));
            }
        }

        #[test]
        fn the_one_pass_case_agrees_with_the_rules(input in nasty_bytes()) {
            if let Some(rel) = plain(&input) {
                let full = sanitize_in_full(&input).unwrap();
                prop_assert_eq!(full.as_os_str().as_bytes(), rel);
            }
            prop_assert_eq!(format!("{:?}", sanitize(&input)), format!("{:?}", sanitize_in_full(&input)));
        }

        #[test]
        fn the_one_pass_case_agrees_on_plain_names(
            parts in proptest::collection::vec("[a-z0-9._-]{0,12}", 1..5), slashes in 0usize..3,
        ) {
            let mut input = b"/".repeat(slashes);
            input.extend(parts.join("/").bytes());
            prop_assert_eq!(format!("{:?}", sanitize(&input)), format!("{:?}", sanitize_in_full(&input)));
        }

        #[test]
        fn never_escapes_arbitrary(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = sanitize(&input) {
                prop_assert!(stays_inside(&p), "{p:?}");
            }
        }

        #[test]
        fn benign_names_round_trip(
            parts in proptest::collection::vec(benign_component(), 1..5),
            slashes in 1usize..3,
            mask in proptest::collection::vec(any::<bool>(), 1..8),
        ) {
            let joined = parts.join("/");
            let mut input = b"/".repeat(slashes);
            input.extend(encode(&joined, &mask));
            let got = sanitize(&input).unwrap();
            prop_assert_eq!(got.to_str().unwrap(), joined);
        }
    }
}
