//! Finding what to publish: files and directory trees.
//!
//! Each command-line PATH is a file (published under its own name) or a
//! directory (published recursively, entries sorted by byte value, paths
//! relative to it). Symbolic links are followed only when they resolve inside
//! the directory being published; any other link is skipped with a warning, so
//! nothing outside the tree is ever sent.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One file to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where it is on disk.
    pub file: PathBuf,
    /// Its path in the session (`dir/file.txt`, `/`-separated, no leading slash).
    pub path: String,
    /// Its size when listed; `None` when the listing did not `stat` it (see
    /// [`list_unstamped`]).
    pub len: Option<u64>,
    /// Its modification time when listed (`None` also when not `stat`ed).
    pub modified: Option<SystemTime>,
}

impl Entry {
    /// Its length and modification time when listed, if the listing looked
    /// (what [`crate::prefetch::Prefetch::take`] checks a read-ahead against).
    pub fn stamp(&self) -> Option<crate::prefetch::Stamp> {
        self.len.map(|len| (len, self.modified))
    }
}

/// Why listing failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A PATH could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A PATH has a name that is not UTF-8.
    #[error("{0}: file names must be UTF-8")]
    NotUtf8(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io { path: path.to_owned(), source }
}

/// Glob patterns of names never published (`--ignore`): `*` matches any run of
/// characters, `?` any one character, anything else itself. A pattern matches a
/// whole name (one path component), never across a `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ignore {
    patterns: Vec<String>,
}

/// The names `--watch` ignores by default: hidden files and the temporary names
/// encoders write before renaming a segment into place.
pub const DEFAULT_IGNORE: [&str; 4] = [".*", "*.tmp", "*.part", "*~"];

impl Ignore {
    /// Ignores nothing.
    pub fn none() -> Self {
        Ignore::default()
    }

    /// Ignores names matching any of `patterns` (empty patterns are dropped).
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(patterns: I) -> Self {
        Ignore { patterns: patterns.into_iter().map(Into::into).filter(|p: &String| !p.is_empty()).collect() }
    }

    /// Whether the name `name` (one path component) is ignored.
    pub fn matches_name(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| glob(p.as_bytes(), name.as_bytes()))
    }

    /// Whether any component of the `/`-separated relative path `path` is ignored.
    pub fn matches_path(&self, path: &str) -> bool {
        path.split('/').any(|c| self.matches_name(c))
    }
}

/// `*`/`?` glob match of a whole name, by bytes (iterative, linear backtracking
/// on the last `*`).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Lists every file under `roots`, in order; warnings (skipped links, unreadable
/// entries) go to `warnings`.
pub fn list(roots: &[PathBuf], warnings: &mut Vec<String>) -> Result<Vec<Entry>, TreeError> {
    list_filtered(roots, &Ignore::none(), warnings)
}

/// [`list`], leaving out every file and directory inside a directory PATH whose
/// name `ignore` matches (a file named on the command line is always listed).
pub fn list_filtered(roots: &[PathBuf], ignore: &Ignore, warnings: &mut Vec<String>) -> Result<Vec<Entry>, TreeError> {
    list_with(roots, ignore, warnings, Stat::Every)
}

/// [`list_filtered`] without a `stat` of each plain file found in a
/// directory: what it is comes from the directory entry itself, and its
/// length and modification time are left unknown (`None`). For a run that
/// sends each file once and reads it then (the reader stats it): a tree of
/// 1000 small files lists in a fraction of the time. Links, and entries
/// whose type the file system does not report, are still looked at.
pub fn list_unstamped(roots: &[PathBuf], ignore: &Ignore, warnings: &mut Vec<String>) -> Result<Vec<Entry>, TreeError> {
    list_with(roots, ignore, warnings, Stat::OnlyWhenNeeded)
}

/// Whether the walk `stat`s every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stat {
    Every,
    OnlyWhenNeeded,
}

fn list_with(
    roots: &[PathBuf],
    ignore: &Ignore,
    warnings: &mut Vec<String>,
    stat: Stat,
) -> Result<Vec<Entry>, TreeError> {
    let mut out = Vec::new();
    for root in roots {
        let meta = std::fs::metadata(root).map_err(io(root))?;
        if meta.is_dir() {
            let canonical = root.canonicalize().map_err(io(root))?;
            walk(&canonical, &canonical, "", ignore, stat, &mut out, warnings)?;
        } else {
            let name = root.file_name().and_then(|n| n.to_str()).ok_or_else(|| TreeError::NotUtf8(root.clone()))?;
            out.push(Entry {
                file: root.clone(),
                path: name.to_owned(),
                len: Some(meta.len()),
                modified: meta.modified().ok(),
            });
        }
    }
    Ok(out)
}

/// What a name in a directory is, by the rules of the walk.
enum Found {
    /// A file to publish.
    File(Entry),
    /// A directory to descend into (its real path).
    Dir(PathBuf),
    /// Neither (skipped, with any warning pushed).
    Skip,
}

/// Classifies `file` (at session path `path`) inside the tree whose real path
/// is `root`: links are followed only when they resolve inside it.
fn classify(root: &Path, file: PathBuf, path: String, warnings: &mut Vec<String>) -> Found {
    let Ok(lmeta) = std::fs::symlink_metadata(&file) else {
        warnings.push(format!("skipped {}: unreadable", file.display()));
        return Found::Skip;
    };
    let is_link = lmeta.file_type().is_symlink();
    let (meta, target) = if is_link {
        match file.canonicalize() {
            Ok(t) if t.starts_with(root) => match std::fs::metadata(&t) {
                Ok(m) => (m, t),
                Err(_) => return Found::Skip,
            },
            _ => {
                warnings.push(format!("skipped {}: symbolic link leads outside the tree", file.display()));
                return Found::Skip;
            }
        }
    } else {
        (lmeta, file.clone())
    };
    if meta.is_dir() {
        if is_link {
            // A link to a directory inside the tree: its files are published there already.
            warnings.push(format!("skipped {}: link to a directory", file.display()));
            return Found::Skip;
        }
        Found::Dir(target)
    } else if meta.is_file() {
        Found::File(Entry { file: target, path, len: Some(meta.len()), modified: meta.modified().ok() })
    } else {
        Found::Skip
    }
}

/// The file at session path `path` (`/`-separated, relative) in the directory
/// tree whose real path is `root`, by the same rules as [`list_filtered`]:
/// `None` when it is ignored, not a file, gone, or a link out of the tree.
pub fn entry(root: &Path, path: &str, ignore: &Ignore, warnings: &mut Vec<String>) -> Option<Entry> {
    if path.is_empty() || ignore.matches_path(path) || path.split('/').any(|c| c.is_empty() || c == "..") {
        return None;
    }
    // Gone already (renamed or deleted since the event): nothing to say.
    std::fs::symlink_metadata(root.join(path)).ok()?;
    match classify(root, root.join(path), path.to_owned(), warnings) {
        Found::File(e) => Some(e),
        Found::Dir(_) | Found::Skip => None,
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    ignore: &Ignore,
    stat: Stat,
    out: &mut Vec<Entry>,
    warnings: &mut Vec<String>,
) -> Result<(), TreeError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(Result::ok)
        .map(|e| (e.file_name(), e.file_type().ok()))
        .collect();
    names.sort_by(|(a, _), (b, _)| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for (name, kind) in names {
        let file = dir.join(&name);
        let Some(name) = name.to_str() else {
            warnings.push(format!("skipped {}: name is not UTF-8", file.display()));
            continue;
        };
        if ignore.matches_name(name) {
            continue;
        }
        let path = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
        // The directory entry's type is an lstat's: a plain file is no link.
        if stat == Stat::OnlyWhenNeeded && kind.is_some_and(|k| k.is_file()) {
            out.push(Entry { file, path, len: None, modified: None });
            continue;
        }
        match classify(root, file, path.clone(), warnings) {
            Found::File(e) => out.push(e),
            Found::Dir(target) => walk(root, &target, &path, ignore, stat, out, warnings)?,
            Found::Skip => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_sorted_and_refuses_links_out_of_the_tree() {
        let base = std::env::temp_dir().join(format!("h3m-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("b.txt"), b"b").unwrap();
        std::fs::write(root.join("a b.txt"), b"ab").unwrap();
        std::fs::write(root.join("sub/deeper/ü.bin"), b"u").unwrap();
        std::fs::write(base.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), root.join("leak")).unwrap();
        std::os::unix::fs::symlink(root.join("b.txt"), root.join("c-link.txt")).unwrap();
        let mut warnings = Vec::new();
        let got = list(std::slice::from_ref(&root), &mut warnings).unwrap();
        let paths: Vec<_> = got.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a b.txt", "b.txt", "c-link.txt", "sub/deeper/ü.bin"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("leak"));
        let single = list(&[root.join("b.txt")], &mut warnings).unwrap();
        assert_eq!(single[0].path, "b.txt");
        // Without a stat of each plain file: the same files by the same
        // rules, plain files in directories without length or time.
        let mut unstamped_warnings = Vec::new();
        let unstamped = list_unstamped(std::slice::from_ref(&root), &Ignore::none(), &mut unstamped_warnings).unwrap();
        let as_listed = |v: &[Entry]| v.iter().map(|e| (e.file.clone(), e.path.clone())).collect::<Vec<_>>();
        assert_eq!(as_listed(&unstamped), as_listed(&got));
        assert_eq!(unstamped_warnings, warnings[..1]);
        let lens: Vec<_> = unstamped.iter().map(|e| e.len).collect();
        assert_eq!(lens, [None, None, Some(1), None], "the link inside the tree is looked at");
        assert_eq!(got.iter().map(|e| e.len).collect::<Vec<_>>(), [Some(2), Some(1), Some(1), Some(1)]);
        let named = list_unstamped(&[root.join("b.txt")], &Ignore::none(), &mut unstamped_warnings).unwrap();
        assert_eq!((named[0].len, named[0].modified.is_some()), (Some(1), true), "a named file is stat'ed");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn globs_match_whole_names() {
        let ig = Ignore::new(DEFAULT_IGNORE);
        for name in [".seg-1.tmp", ".hidden", "seg-1.m4s.tmp", "a.part", "notes~", "x.tmp"] {
            assert!(ig.matches_name(name), "{name}");
        }
        for name in ["seg-1.m4s", "tmp", "a.tmp.m4s", "part", "~x", "a.partial"] {
            assert!(!ig.matches_name(name), "{name}");
        }
        assert!(ig.matches_path("live/.git/config"));
        assert!(!ig.matches_path("live/seg.m4s"));
        let q = Ignore::new(["seg-?.m4s", "a*b*c", ""]);
        assert!(q.matches_name("seg-1.m4s") && !q.matches_name("seg-10.m4s"));
        assert!(q.matches_name("abc") && q.matches_name("aXbYbZc") && !q.matches_name("aXbY"));
        assert!(!Ignore::new([""]).matches_name(""), "an empty pattern ignores nothing");
    }

    #[test]
    fn filtered_listing_leaves_out_ignored_names_but_not_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("live");
        std::fs::create_dir_all(root.join(".cache")).unwrap();
        for name in [".seg-2.tmp", "seg-1.m4s", "a.part", "b~", ".cache/x", "manifest.mpd"] {
            std::fs::write(root.join(name), b"x").unwrap();
        }
        let ig = Ignore::new(DEFAULT_IGNORE);
        let mut warnings = Vec::new();
        let got = list_filtered(std::slice::from_ref(&root), &ig, &mut warnings).unwrap();
        let paths: Vec<_> = got.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["manifest.mpd", "seg-1.m4s"]);
        let named = list_filtered(&[root.join("a.part")], &ig, &mut warnings).unwrap();
        assert_eq!(named[0].path, "a.part");
        let canonical = root.canonicalize().unwrap();
        assert_eq!(entry(&canonical, "seg-1.m4s", &ig, &mut warnings).map(|e| e.len), Some(Some(1)));
        assert_eq!(entry(&canonical, ".seg-2.tmp", &ig, &mut warnings), None);
        assert_eq!(entry(&canonical, ".cache/x", &ig, &mut warnings), None);
        assert_eq!(entry(&canonical, "../live/seg-1.m4s", &ig, &mut warnings), None);
        assert_eq!(entry(&canonical, "gone.m4s", &ig, &mut warnings), None);
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}
