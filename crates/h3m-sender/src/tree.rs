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
    /// Its size when listed.
    pub len: u64,
    /// Its modification time when listed.
    pub modified: Option<SystemTime>,
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

/// Lists every file under `roots`, in order; warnings (skipped links, unreadable
/// entries) go to `warnings`.
pub fn list(roots: &[PathBuf], warnings: &mut Vec<String>) -> Result<Vec<Entry>, TreeError> {
    let mut out = Vec::new();
    for root in roots {
        let meta = std::fs::metadata(root).map_err(io(root))?;
        if meta.is_dir() {
            let canonical = root.canonicalize().map_err(io(root))?;
            walk(&canonical, &canonical, "", &mut out, warnings)?;
        } else {
            let name = root.file_name().and_then(|n| n.to_str()).ok_or_else(|| TreeError::NotUtf8(root.clone()))?;
            out.push(Entry {
                file: root.clone(),
                path: name.to_owned(),
                len: meta.len(),
                modified: meta.modified().ok(),
            });
        }
    }
    Ok(out)
}

fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<Entry>,
    warnings: &mut Vec<String>,
) -> Result<(), TreeError> {
    let mut names: Vec<_> =
        std::fs::read_dir(dir).map_err(io(dir))?.filter_map(Result::ok).map(|e| e.file_name()).collect();
    names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    for name in names {
        let file = dir.join(&name);
        let Some(name) = name.to_str() else {
            warnings.push(format!("skipped {}: name is not UTF-8", file.display()));
            continue;
        };
        let path = if prefix.is_empty() { name.to_owned() } else { format!("{prefix}/{name}") };
        let Ok(lmeta) = std::fs::symlink_metadata(&file) else {
            warnings.push(format!("skipped {}: unreadable", file.display()));
            continue;
        };
        let is_link = lmeta.file_type().is_symlink();
        let (meta, target) = if is_link {
            match file.canonicalize() {
                Ok(t) if t.starts_with(root) => match std::fs::metadata(&t) {
                    Ok(m) => (m, t),
                    Err(_) => continue,
                },
                _ => {
                    warnings.push(format!("skipped {}: symbolic link leads outside the tree", file.display()));
                    continue;
                }
            }
        } else {
            (lmeta, file.clone())
        };
        if meta.is_dir() {
            if is_link {
                // A link to a directory inside the tree: its files are published there already.
                warnings.push(format!("skipped {}: link to a directory", file.display()));
                continue;
            }
            walk(root, &target, &path, out, warnings)?;
        } else if meta.is_file() {
            out.push(Entry { file: target, path, len: meta.len(), modified: meta.modified().ok() });
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
        std::fs::remove_dir_all(&base).unwrap();
    }
}
