//! Loading: defaults, then the file, then the environment, then validation.

use std::path::Path;

use toml::Table;

use crate::error::{ConfigError, KeyError};
use crate::read::{Report, Section};
use crate::{env, kafka, Config};

/// Reads and checks a configuration. `extra` holds problems found before this point
/// (environment variables that are not UTF-8), reported with the rest.
pub(crate) fn load(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
    extra: Vec<KeyError>,
) -> Result<Config, ConfigError> {
    let tree = match file {
        Some(path) => parse(&read_file(path)?, Some(path))?,
        None => Table::new(),
    };
    build(file, tree, vars, extra)
}

pub(crate) fn from_text(text: &str) -> Result<Config, ConfigError> {
    let tree = parse(text, None)?;
    build(None, tree, Vec::new(), Vec::new())
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ConfigError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

fn parse(text: &str, file: Option<&Path>) -> Result<Table, ConfigError> {
    text.parse::<Table>().map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        let (line, column) = line_and_column(text, offset);
        ConfigError::Syntax {
            file: file.map(Path::to_path_buf),
            line,
            column,
            message: error.message().trim().to_owned(),
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn build(
    file: Option<&Path>,
    mut tree: Table,
    vars: impl IntoIterator<Item = (String, String)>,
    extra: Vec<KeyError>,
) -> Result<Config, ConfigError> {
    let mut report = Report::new(file.map(Path::to_path_buf), Table::new());
    for error in extra {
        report.push(error);
    }
    kafka::flatten_properties(&mut tree, &mut report);
    report.set_file_tree(tree.clone());
    env::apply(&mut tree, vars, &mut report);
    let config = Config::read(Section::root(&mut report, tree));
    config.check(&mut report);
    report.into_result(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = x\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        assert_eq!(line_and_column(text, 10), (2, 4));
        assert_eq!(line_and_column(text, 1_000), (3, 1));
    }
}
