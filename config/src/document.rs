//! The configuration as an ordered list of TOML sections.
//!
//! Writing goes through this one structure so that the printed configuration, the list of
//! known keys (for "did you mean") and the example-file test all agree on the same keys in
//! the same order.

use toml::Value;

use crate::read::{toml_key, KeyPath};

/// Ordered sections, each with ordered `key = value` entries.
#[derive(Debug, Default)]
pub(crate) struct Document {
    sections: Vec<DocSection>,
}

/// One `[section]` and its entries.
#[derive(Debug)]
pub(crate) struct DocSection {
    path: KeyPath,
    entries: Vec<(String, Value)>,
}

impl DocSection {
    pub(crate) fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.entries.push((key.to_owned(), value.into()));
    }
}

impl Document {
    /// Starts a new section; sections are written in the order they are started.
    pub(crate) fn section(&mut self, dotted: &str) -> &mut DocSection {
        self.sections.push(DocSection {
            path: KeyPath::of(dotted),
            entries: Vec::new(),
        });
        let last = self.sections.len() - 1;
        &mut self.sections[last]
    }

    /// Every key, as full paths, in document order.
    pub(crate) fn leaf_paths(&self) -> Vec<KeyPath> {
        self.sections
            .iter()
            .flat_map(|s| s.entries.iter().map(|(key, _)| s.path.child(key)))
            .collect()
    }

    /// Every section path, in document order.
    #[cfg(test)]
    pub(crate) fn section_paths(&self) -> Vec<KeyPath> {
        self.sections.iter().map(|s| s.path.clone()).collect()
    }

    pub(crate) fn is_section(&self, path: &KeyPath) -> bool {
        self.sections.iter().any(|s| &s.path == path)
    }

    /// Names directly under `parent`: its keys, then its sub-sections.
    pub(crate) fn children(&self, parent: &KeyPath) -> Vec<String> {
        let mut names: Vec<String> = self
            .sections
            .iter()
            .filter(|s| &s.path == parent)
            .flat_map(|s| s.entries.iter().map(|(key, _)| key.clone()))
            .collect();
        for section in &self.sections {
            if section.path.parent() == *parent && !section.path.is_root() {
                names.push(section.path.last().to_owned());
            }
        }
        names
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for (i, section) in self.sections.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("[{}]\n", section.path));
            for (key, value) in &section.entries {
                out.push_str(&format!("{} = {value}\n", toml_key(key)));
            }
        }
        out
    }
}
