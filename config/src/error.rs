//! Errors of loading a configuration. Every message names the file, key path or
//! environment variable it is about and says what to do, because the person reading it is
//! usually deploying the job, not reading its source.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given with `--config` does not exist.
    #[error("config file `{}` not found; pass an existing file or leave --config out to use the defaults", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The file exists but could not be read (permissions, a directory, not UTF-8, ...).
    #[error("cannot read config file `{}`: {source}; check that it is a readable UTF-8 text file", path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("TOML syntax error in {} at line {line}, column {column}: {message}; fix the syntax there", origin_name(file.as_ref()))]
    Syntax {
        /// The file, or `None` when the text did not come from a file.
        file: Option<PathBuf>,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// What the TOML parser reported.
        message: String,
    },
    /// The TOML parsed but one or more keys are unknown, mistyped or out of range. All
    /// problems found are listed, so one `config check` run shows everything to fix.
    #[error("{}", Problems { file: file.as_ref(), errors })]
    Invalid {
        /// The file the keys were read from, if any.
        file: Option<PathBuf>,
        /// Every problem found, in the order of the configuration sections.
        errors: Vec<KeyError>,
    },
}

impl ConfigError {
    /// The individual key problems: several for [`ConfigError::Invalid`], none otherwise.
    pub fn key_errors(&self) -> &[KeyError] {
        match self {
            ConfigError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// One problem with one key: its full path (`aggregate.windows[1]`), the environment
/// variable that set it when it came from the environment, and a complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key path as written in TOML, with an index for list elements.
    pub key: String,
    /// The `RISKSTREAM__...` variable the value came from, if it came from the environment.
    pub env_var: Option<String>,
    /// The full message, naming the key (and variable) and the fix.
    pub message: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for KeyError {}

fn origin_name(file: Option<&PathBuf>) -> String {
    match file {
        Some(path) => format!("`{}`", path.display()),
        None => "the configuration text".to_owned(),
    }
}

/// Renders the problem list: a single problem on one line, several as a bulleted list.
struct Problems<'a> {
    file: Option<&'a PathBuf>,
    errors: &'a [KeyError],
}

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whence = match self.file {
            Some(path) => format!(" (file `{}` and environment)", path.display()),
            None => String::new(),
        };
        match self.errors {
            [] => write!(f, "invalid configuration{whence}"),
            [only] => write!(f, "invalid configuration{whence}: {only}"),
            many => {
                write!(f, "invalid configuration{whence}, {} problems:", many.len())?;
                for error in many {
                    write!(f, "\n  - {error}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_error(message: &str) -> KeyError {
        KeyError {
            key: "graph.max_hops".to_owned(),
            env_var: None,
            message: message.to_owned(),
        }
    }

    #[test]
    fn several_problems_are_listed_one_per_line() {
        let error = ConfigError::Invalid {
            file: Some(PathBuf::from("riskstream.toml")),
            errors: vec![key_error("first problem"), key_error("second problem")],
        };
        let text = error.to_string();
        assert!(
            text.starts_with(
                "invalid configuration (file `riskstream.toml` and environment), 2 problems:"
            ),
            "{text}"
        );
        assert!(
            text.contains("\n  - first problem\n  - second problem"),
            "{text}"
        );
        assert_eq!(error.key_errors().len(), 2);
    }

    #[test]
    fn a_single_problem_reads_as_one_line() {
        let error = ConfigError::Invalid {
            file: None,
            errors: vec![key_error("only problem")],
        };
        assert_eq!(error.to_string(), "invalid configuration: only problem");
    }
}
