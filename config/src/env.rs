//! Environment overrides: `RISKSTREAM__SECTION__KEY=value`.
//!
//! The part after `RISKSTREAM__` is split at double underscores and lower-cased, so
//! `RISKSTREAM__SOURCE__GENERATOR__SEED=7` sets `source.generator.seed`; single underscores
//! stay part of the key name (`MAX_HOPS` is `max_hops`). Below `RISKSTREAM__KAFKA__PROPERTIES__`
//! every double underscore becomes a dot, because Kafka client property names are dotted:
//! `RISKSTREAM__KAFKA__PROPERTIES__SASL__PASSWORD` sets the property `sasl.password` and
//! `RISKSTREAM__KAFKA__PROPERTIES__SSL__KEY__PASSWORD` sets `ssl.key.password`.
//!
//! A value is read as a TOML value when it is one (`7`, `true`, `0.5`, `["1m", "1h"]`) and
//! as text otherwise (`1m`, `events`). Keys that hold text take the variable's text as is,
//! list keys also accept comma-separated words (`events,payments`), and Kafka property
//! values are always taken as text. Overrides are applied after the file, so they win.

use toml::{Table, Value};

use crate::error::KeyError;
use crate::read::{KeyPath, Report};
use crate::Config;

/// Variables that start with this are configuration overrides; others are ignored.
pub(crate) const PREFIX: &str = "RISKSTREAM__";

/// One applied override, kept to name the variable in messages about its key.
#[derive(Debug, Clone)]
pub(crate) struct EnvOverride {
    pub(crate) var: String,
    pub(crate) path: KeyPath,
    pub(crate) raw: String,
}

/// Merges every `RISKSTREAM__...` variable into `tree`, in name order so the result does
/// not depend on the order the environment lists them.
pub(crate) fn apply(
    tree: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
    report: &mut Report,
) {
    let mut ours: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX))
        .collect();
    ours.sort();
    let schema = Config::default().document(false);
    let leaves = schema.leaf_paths();
    for (var, raw) in ours {
        let Some(path) = key_path(&var) else {
            report.push(env_error(
                &var,
                format!(
                    "environment variable `{var}` has an empty key segment; separate the section and key names with exactly two underscores, like `RISKSTREAM__GRAPH__MAX_HOPS`"
                ),
            ));
            continue;
        };
        if schema.is_section(&path) {
            let example = schema
                .children(&path)
                .first()
                .map(|key| path.child(key).env_var())
                .unwrap_or_else(|| path.child("key").env_var());
            report.push(env_error(
                &var,
                format!(
                    "environment variable `{var}` names the section [{path}], not a key; set one of its keys instead, like `{example}`"
                ),
            ));
            continue;
        }
        if let Some(leaf) = leaves
            .iter()
            .find(|leaf| path.starts_with(leaf) && **leaf != path)
        {
            report.push(env_error(
                &var,
                format!(
                    "environment variable `{var}` goes below `{leaf}`, which holds a single value; set `{}` instead",
                    leaf.env_var()
                ),
            ));
            continue;
        }
        let value = if is_kafka_property(&path) {
            Value::String(raw.clone())
        } else {
            toml_or_text(&raw)
        };
        if let Err(blocker) = insert(tree, path.segments(), value) {
            report.push(env_error(
                &var,
                format!(
                    "environment variable `{var}` cannot set `{path}`: `{blocker}` holds a single value in the file, not a section"
                ),
            ));
            continue;
        }
        report.record_env(EnvOverride { var, path, raw });
    }
}

fn env_error(var: &str, message: String) -> KeyError {
    KeyError {
        key: var.to_owned(),
        env_var: Some(var.to_owned()),
        message,
    }
}

/// The key path a variable sets, or `None` when a segment is empty (`A____B`, trailing `__`).
fn key_path(var: &str) -> Option<KeyPath> {
    let rest = var.strip_prefix(PREFIX)?;
    let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if segments.iter().any(String::is_empty) {
        return None;
    }
    if segments.len() > 2 && segments[0] == "kafka" && segments[1] == "properties" {
        let property = segments[2..].join(".");
        return Some(KeyPath::from_segments(vec![
            "kafka".to_owned(),
            "properties".to_owned(),
            property,
        ]));
    }
    Some(KeyPath::from_segments(segments))
}

fn is_kafka_property(path: &KeyPath) -> bool {
    matches!(path.segments(), [kafka, properties, _] if kafka == "kafka" && properties == "properties")
}

/// A TOML value when the text is one, else the text itself. Date-times stay text, since
/// the one timestamp key reads text and users write them without TOML in mind.
fn toml_or_text(raw: &str) -> Value {
    match raw.parse::<Value>() {
        Ok(Value::Datetime(_)) | Err(_) => Value::String(raw.to_owned()),
        Ok(value) => value,
    }
}

/// Sets `path` in `tree`, creating sections on the way. Fails with the path of a value that
/// sits where a section is needed.
fn insert(tree: &mut Table, path: &[String], value: Value) -> Result<(), KeyPath> {
    let Some((leaf, parents)) = path.split_last() else {
        return Ok(());
    };
    let mut table = tree;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = table
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        match entry {
            Value::Table(inner) => table = inner,
            _ => return Err(KeyPath::from_segments(path[..=depth].to_vec())),
        }
    }
    table.insert(leaf.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_underscores_separate_sections_and_single_ones_stay_in_names() {
        assert_eq!(
            key_path("RISKSTREAM__GRAPH__MAX_HOPS"),
            Some(KeyPath::of("graph.max_hops"))
        );
        assert_eq!(
            key_path("RISKSTREAM__SOURCE__GENERATOR__SEED"),
            Some(KeyPath::of("source.generator.seed"))
        );
        assert_eq!(key_path("RISKSTREAM__GRAPH____MAX_HOPS"), None);
        assert_eq!(key_path("RISKSTREAM__GRAPH__"), None);
    }

    #[test]
    fn kafka_property_variables_map_to_dotted_property_names() {
        let path = key_path("RISKSTREAM__KAFKA__PROPERTIES__SSL__KEY__PASSWORD").unwrap();
        assert_eq!(path.segments(), ["kafka", "properties", "ssl.key.password"]);
        assert_eq!(
            path.env_var(),
            "RISKSTREAM__KAFKA__PROPERTIES__SSL__KEY__PASSWORD"
        );
    }

    #[test]
    fn values_read_as_toml_when_they_are_toml_and_as_text_otherwise() {
        assert_eq!(toml_or_text("7"), Value::Integer(7));
        assert_eq!(toml_or_text("true"), Value::Boolean(true));
        assert_eq!(toml_or_text("1m"), Value::String("1m".to_owned()));
        assert_eq!(toml_or_text("events"), Value::String("events".to_owned()));
        assert_eq!(
            toml_or_text("2026-11-01T00:00:00Z"),
            Value::String("2026-11-01T00:00:00Z".to_owned())
        );
        assert_eq!(
            toml_or_text(r#"["1m", "1h"]"#),
            Value::Array(vec![Value::from("1m"), Value::from("1h")])
        );
    }
}
