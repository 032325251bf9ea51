//! The outside world a config load depends on: environment variables and files. Abstracted so
//! tests (and `airlock check` against a fixture) load configs without touching the process.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

pub trait EnvLookup {
    /// The value of an environment variable, `None` when unset (or not valid UTF-8).
    fn var(&self, name: &str) -> Option<String>;
    /// The whole content of a file, as text.
    fn read_file(&self, path: &Path) -> io::Result<String>;
    /// Whether `path` names an existing regular file.
    fn is_file(&self, path: &Path) -> bool;
}

/// The real process environment and file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEnv;

impl EnvLookup for SystemEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }
}

/// A fixed set of variables and files, for tests and dry runs.
#[derive(Debug, Clone, Default)]
pub struct StaticEnv {
    pub vars: HashMap<String, String>,
    pub files: HashMap<PathBuf, String>,
}

impl StaticEnv {
    pub fn new() -> Self {
        StaticEnv::default()
    }

    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    pub fn with_file(mut self, path: impl Into<PathBuf>, content: impl Into<String>) -> Self {
        self.files.insert(path.into(), content.into());
        self
    }
}

impl EnvLookup for StaticEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn read_file(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
}
