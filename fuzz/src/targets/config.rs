//! The config target: configuration documents and environment overrides through the
//! configuration reader.
//!
//! A case is one of the shipped documents (the reference file listing every key, the Kafka
//! and Neo4j examples) with secrets planted where secrets go (`graph.password`, the
//! password of `graph.uri`, secret Kafka properties, also typed wrongly, and the same from
//! the environment), left valid or mutated: lines deleted, duplicated (duplicate keys),
//! moved, values replaced by extreme or mistyped ones, settings out of range, BOM, CRLF,
//! truncation, byte flips. The reader must give a configuration or an error; a planted
//! secret must appear in no error, and a configured one in no printed configuration; a
//! configuration that loads must validate and print as TOML that loads back the same.

use std::path::PathBuf;

use rand::RngExt;

use riskstream_config::{is_secret_property, Config, ConfigError};

use super::{Case, Checked, Target, TargetKind};
use crate::mutate::{self, pick, Rng};
use crate::HarnessError;

const REFERENCE: &str = include_str!("../../../config/riskstream.toml");
const KAFKA: &str = include_str!("../../../config/kafka.toml");
const NEO4J: &str = include_str!("../../../config/neo4j.toml");

/// Every planted text secret starts with this, so that a replay finds them again.
const TOKEN_PREFIX: &str = "fzS3cr3t";
/// Every planted numeric secret starts with these digits.
const DIGITS_PREFIX: &str = "98765";

/// Lines that set a key to a value out of range or of the wrong kind (each found to
/// crash or confuse a run once), or that break the document's structure.
const INTERESTING_LINES: &[&str] = &[
    "batch_size = 10000000000",
    "batch_size = 0",
    "workers = 100000",
    "windows = [\"1ms\", \"1h\"]",
    "windows = [\"1m\", \"36500d\"]",
    "windows = []",
    "windows = [\"1h\", \"1m\"]",
    "distinct_window = \"1ms\"",
    "events = 0",
    "accounts = 5",
    "accounts = 1e8",
    "start = \"9999-01-01T00:00:00Z\"",
    "start = \"0001-01-01T00:00:00Z\"",
    "start = 1979-05-27T07:32:00Z",
    "max_hops = -1",
    "max_hops = 1000",
    "max_event_bytes = 0",
    "max_event_bytes = 18446744073709551615",
    "interval = \"0s\"",
    "interval = \"99999999999999999999d\"",
    "max_future_skew = \"-1s\"",
    "review_threshold = nan",
    "block_threshold = inf",
    "review_threshold = 0.9",
    "block_threshold = 0.1",
    "listen = \"[::1]:99999\"",
    "keys = [\"account\", \"account\"]",
    "keys = []",
    "kind = \"carrier-pigeon\"",
    "[unknown]",
    "[graph]",
    "[kafka.properties]",
    "\"bootstrap.servers\" = \"x:1\"",
    "\"enable.auto.offset.store\" = \"true\"",
    "a.b.c.d.e = 1",
    "= 1",
    "[[source]]",
];

/// Values that a `key = value` line may be given instead of its own.
const INTERESTING_VALUES: &[&str] = &[
    "1e308",
    "-1e308",
    "-0",
    "-0.0",
    "nan",
    "+inf",
    "-inf",
    "\"NaN\"",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "0x7fffffff",
    "0o777",
    "0b1",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "\"\"",
    "\" \"",
    "[]",
    "[[]]",
    "{}",
    "{ a = 1 }",
    "true",
    "\"1h30m\"",
    "\"99999999999d\"",
    "\"-1s\"",
    "\"1.5s\"",
    "\"1e3ms\"",
    "\"\\u0000\"",
    "\"😀\"",
    "'literal'",
    "\"\"\"multi\nline\"\"\"",
];

pub struct ConfigDocs {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl ConfigDocs {
    pub fn new() -> Result<ConfigDocs, HarnessError> {
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Setup {
            target: "config",
            message: format!("temporary directory: {e}"),
        })?;
        let file = dir.path().join("riskstream.toml");
        Ok(ConfigDocs { _dir: dir, file })
    }

    fn load(&self, case: &Case) -> Result<Result<Config, ConfigError>, String> {
        let text = std::str::from_utf8(&case.bytes).ok();
        match text {
            Some(text) if case.env.is_empty() && case.bytes.len() % 2 == 0 => {
                Ok(Config::from_toml_str(text))
            }
            _ => {
                std::fs::write(&self.file, &case.bytes)
                    .map_err(|e| format!("harness: cannot write {}: {e}", self.file.display()))?;
                Ok(Config::load_from(Some(&self.file), case.env.clone()))
            }
        }
    }
}

impl Target for ConfigDocs {
    fn generate(&mut self, rng: &mut Rng, _case: u64) -> Case {
        if rng.random_bool(0.05) {
            let mut case = Case::new(TargetKind::Config, mutate::random_bytes(rng, 400));
            case.secrets = planted_secrets(&case.bytes, &case.env);
            return case;
        }
        let base = match rng.random_range(0..10) {
            0 | 1 => KAFKA,
            2 | 3 => NEO4J,
            4 => "",
            _ => REFERENCE,
        };
        let mut lines: Vec<String> = base
            .lines()
            .filter(|l| {
                let key = l.trim_start();
                !(key.starts_with("password") || key.starts_with("uri"))
            })
            .map(str::to_owned)
            .collect();
        let mut env = Vec::new();
        let mut valid = true;
        let mut graph_lines = Vec::new();
        let mut kafka_lines = Vec::new();
        for _ in 0..rng.random_range(1..=4) {
            let token = token(rng);
            let digits = digits(rng);
            match rng.random_range(0..16) {
                0 => graph_lines.push(format!("password = \"{token}\"")),
                1 => graph_lines.push(format!("password = '{token}'")),
                2 => {
                    graph_lines.push(format!("password = {digits}"));
                    valid = false;
                }
                3 => {
                    let wrong = pick(
                        rng,
                        &[
                            format!("[\"{token}\"]"),
                            format!("{{ value = \"{token}\" }}"),
                            format!("\"\"\"{token}\"\"\""),
                            format!("{digits}.5"),
                            token.clone(),
                        ],
                    )
                    .clone();
                    graph_lines.push(format!("password = {wrong}"));
                    valid = false;
                }
                4 => graph_lines.push(format!("uri = \"bolt://neo4j:{token}@db.example:7687\"")),
                5 => kafka_lines.push(format!("\"sasl.password\" = \"{token}\"")),
                6 => kafka_lines.push(format!(
                    "\"sasl.jaas.config\" = \"org.apache.kafka.common.security.plain.PlainLoginModule required username=\\\"u\\\" password=\\\"{token}\\\";\""
                )),
                7 => kafka_lines.push(format!(
                    "\"sasl.oauthbearer.config\" = \"clientId=x clientSecret={token} scope=read\""
                )),
                8 => kafka_lines.push(format!("\"sasl.pasword\" = \"{token}\"")),
                9 => {
                    kafka_lines.push(format!("\"ssl.key.password\" = {digits}"));
                    valid = false;
                }
                10 => {
                    kafka_lines.push(format!("\"sasl.password\" = [\"{token}\"]"));
                    valid = false;
                }
                11 => env.push(("RISKSTREAM__GRAPH__PASSWORD".into(), token)),
                12 => env.push((
                    "RISKSTREAM__KAFKA__PROPERTIES__SASL__PASSWORD".into(),
                    token,
                )),
                13 => env.push((
                    "RISKSTREAM__GRAPH__URI".into(),
                    format!("bolt://u:{token}@h:7687"),
                )),
                14 => {
                    env.push((
                        "RISKSTREAM__GRAPH__PASSWORD".into(),
                        pick(rng, &[digits.clone(), format!("[\"{token}\"]"), format!("{{a=\"{token}\"}}")])
                            .clone(),
                    ));
                    valid = false;
                }
                _ => kafka_lines.push(format!("\"sasl.oauthbearer.client.secret\" = \"{token}\"")),
            }
        }
        insert_under(&mut lines, "[graph]", graph_lines);
        insert_under(&mut lines, "[kafka.properties]", kafka_lines);
        // Duplicate plants of one key are a duplicate-key error, not a valid document.
        let mut keys: Vec<String> = lines
            .iter()
            .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim().to_owned()))
            .filter(|k| k == "password" || k == "uri" || k.starts_with('"'))
            .collect();
        let before = keys.len();
        keys.sort();
        keys.dedup();
        if keys.len() != before {
            valid = false;
        }
        if rng.random_bool(0.7) {
            valid = false;
            for _ in 0..rng.random_range(1..=4) {
                mutate_lines(rng, &mut lines);
            }
        }
        if rng.random_bool(0.15) {
            valid = false;
            env.extend(random_env(rng));
        }
        let crlf = rng.random_bool(0.1);
        let mut bytes = lines.join(if crlf { "\r\n" } else { "\n" }).into_bytes();
        bytes.push(b'\n');
        if !valid && rng.random_bool(0.35) {
            for _ in 0..rng.random_range(1..=3) {
                mutate::mutate_bytes(rng, &mut bytes);
            }
        }
        if rng.random_bool(0.05) {
            bytes.splice(0..0, mutate::BOM.iter().copied());
            valid = false;
        }
        let mut case = Case::new(TargetKind::Config, bytes);
        case.secrets = planted_secrets(&case.bytes, &env);
        case.env = env;
        case.valid = valid;
        case
    }

    fn check(&mut self, case: &Case) -> Result<Checked, String> {
        let mut checked = Checked::default();
        match self.load(case)? {
            Err(e) => {
                if case.valid {
                    return Err(format!("a valid document was refused: {e}"));
                }
                let mut texts = vec![e.to_string(), format!("{e:?}")];
                texts.extend(e.key_errors().iter().map(|k| k.to_string()));
                if texts[0].trim().is_empty() {
                    return Err("an error with an empty message".into());
                }
                for key in e.key_errors() {
                    if key.key.is_empty() && !key.message.contains("RISKSTREAM__") {
                        return Err(format!("a key error that names no key: {}", key.message));
                    }
                }
                leaks("an error", &texts, &case.secrets)?;
                checked.refused += 1;
            }
            Ok(config) => {
                if let Err(e) = config.validate() {
                    return Err(format!("a loaded configuration does not validate: {e}"));
                }
                let configured = configured_secrets(&config, &case.secrets);
                let redacted = config.to_redacted_toml();
                leaks(
                    "the printed configuration",
                    &[redacted.clone(), format!("{config:?}")],
                    &configured,
                )?;
                // What a client library may echo: the configured values themselves.
                let mut values = vec![config.graph.password.expose().to_owned()];
                values.extend(
                    config
                        .kafka
                        .properties
                        .iter()
                        .filter(|(name, _)| is_secret_property(name))
                        .map(|(_, value)| value.clone()),
                );
                if riskstream_config::redacted_uri(&config.graph.uri) != config.graph.uri {
                    values.push(config.graph.uri.clone());
                }
                let echoed = config.scrub_secrets(&format!("client said: {}", values.join(" ")));
                leaks("a scrubbed client message", &[echoed], &configured)?;
                match Config::from_toml_str(&redacted) {
                    Ok(again) if again.to_redacted_toml() == redacted => {}
                    Ok(again) => {
                        return Err(format!(
                            "the printed configuration loads back differently:\n{redacted}\n--- prints as ---\n{}",
                            again.to_redacted_toml()
                        ))
                    }
                    Err(e) => {
                        return Err(format!(
                            "the printed configuration does not load back ({e}):\n{redacted}"
                        ))
                    }
                }
                checked.accepted += 1;
            }
        }
        Ok(checked)
    }

    fn reset(&mut self) {}
}

/// Fails when any of `texts` shows one of `secrets`.
fn leaks(what: &str, texts: &[String], secrets: &[String]) -> Result<(), String> {
    for secret in secrets {
        if let Some(text) = texts.iter().find(|t| t.contains(secret.as_str())) {
            return Err(format!("{what} shows the secret {secret:?}: {text}"));
        }
    }
    Ok(())
}

/// The planted secrets that the loaded configuration holds where secrets go.
fn configured_secrets(config: &Config, planted: &[String]) -> Vec<String> {
    planted
        .iter()
        .filter(|s| {
            config.graph.password.expose().contains(s.as_str())
                || riskstream_config::redacted_uri(&config.graph.uri) != config.graph.uri
                    && config.graph.uri.contains(s.as_str())
                || config
                    .kafka
                    .properties
                    .iter()
                    .any(|(name, value)| is_secret_property(name) && value.contains(s.as_str()))
        })
        .cloned()
        .collect()
}

/// Letters and digits after [`TOKEN_PREFIX`] in a planted text secret.
const TOKEN_TAIL: usize = 10;
/// Digits after [`DIGITS_PREFIX`] in a planted numeric secret.
const DIGITS_TAIL: usize = 7;

/// The planted secrets still whole in a document and its environment: every run of letters
/// and digits made of [`TOKEN_PREFIX`] and [`TOKEN_TAIL`] more, and every run of digits
/// made of [`DIGITS_PREFIX`] and [`DIGITS_TAIL`] more. (A mutation that joins a cut
/// secret to a key name makes a longer run: a key name, no secret.)
pub fn planted_secrets(bytes: &[u8], env: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut scan = |text: &str| {
        for (prefix, tail, more) in [
            (
                TOKEN_PREFIX,
                TOKEN_TAIL,
                (|c: char| c.is_ascii_alphanumeric()) as fn(char) -> bool,
            ),
            (DIGITS_PREFIX, DIGITS_TAIL, |c: char| c.is_ascii_digit()),
        ] {
            for (at, _) in text.match_indices(prefix) {
                let before = text[..at].chars().next_back();
                let rest = &text[at + prefix.len()..];
                let len = rest.find(|c: char| !more(c)).unwrap_or(rest.len());
                if len == tail && !before.is_some_and(more) {
                    found.push(text[at..at + prefix.len() + len].to_owned());
                }
            }
        }
    };
    scan(&String::from_utf8_lossy(bytes));
    for (_, value) in env {
        scan(value);
    }
    found.sort();
    found.dedup();
    found
}

fn token(rng: &mut Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let tail: String = (0..TOKEN_TAIL).map(|_| *pick(rng, ALNUM) as char).collect();
    format!("{TOKEN_PREFIX}{tail}")
}

fn digits(rng: &mut Rng) -> String {
    format!(
        "{DIGITS_PREFIX}{:07}",
        rng.random_range(1_000_000..10_000_000)
    )
}

/// Inserts `new` right after the `header` line, adding the header at the end if absent.
fn insert_under(lines: &mut Vec<String>, header: &str, new: Vec<String>) {
    if new.is_empty() {
        return;
    }
    let at = match lines.iter().position(|l| l.trim() == header) {
        Some(i) => i + 1,
        None => {
            lines.push(header.to_owned());
            lines.len()
        }
    };
    lines.splice(at..at, new);
}

/// One line-level mutation of a document.
fn mutate_lines(rng: &mut Rng, lines: &mut Vec<String>) {
    if lines.is_empty() {
        lines.push(pick(rng, INTERESTING_LINES).to_string());
        return;
    }
    let i = rng.random_range(0..lines.len());
    match rng.random_range(0..9) {
        0 => {
            lines.remove(i);
        }
        1 => {
            let copy = lines[i].clone();
            lines.insert(i + 1, copy);
        }
        2 => {
            let j = rng.random_range(0..lines.len());
            lines.swap(i, j);
        }
        3 => {
            let line = lines.remove(i);
            let at = rng.random_range(0..=lines.len());
            lines.insert(at, line);
        }
        4 | 5 => lines.insert(i, pick(rng, INTERESTING_LINES).to_string()),
        6 => {
            // A value of another kind, keeping the key.
            let keyed: Vec<usize> = (0..lines.len())
                .filter(|&k| lines[k].contains(" = ") && !lines[k].trim_start().starts_with('#'))
                .collect();
            if let Some(&k) = keyed.get(rng.random_range(0..keyed.len().max(1))) {
                if let Some((key, _)) = lines[k].split_once(" = ") {
                    let value = if rng.random_bool(0.2) {
                        format!("{:?}", mutate::strange_string(rng))
                    } else {
                        pick(rng, INTERESTING_VALUES).to_string()
                    };
                    lines[k] = format!("{key} = {value}");
                }
            }
        }
        7 => {
            // A key of the same section written again with another value.
            if let Some((key, _)) = lines[i].clone().split_once(" = ") {
                let value = pick(rng, INTERESTING_VALUES);
                lines.insert(i + 1, format!("{key} = {value}"));
            }
        }
        _ => {
            let mut bytes = std::mem::take(&mut lines[i]).into_bytes();
            mutate::mutate_bytes(rng, &mut bytes);
            lines[i] = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
}

/// Environment overrides of random keys with odd values, and odd variable names.
fn random_env(rng: &mut Rng) -> Vec<(String, String)> {
    let names = [
        "RISKSTREAM__PIPELINE__BATCH_SIZE",
        "RISKSTREAM__PIPELINE__WORKERS",
        "RISKSTREAM__AGGREGATE__WINDOWS",
        "RISKSTREAM__AGGREGATE__KEYS",
        "RISKSTREAM__GRAPH__MAX_HOPS",
        "RISKSTREAM__GRAPH",
        "RISKSTREAM__",
        "RISKSTREAM____X",
        "RISKSTREAM__GRAPH__PASSWORD__X",
        "RISKSTREAM__KAFKA__PROPERTIES__",
        "RISKSTREAM__KAFKA__PROPERTIES__SASL__PASWORD",
        "RISKSTREAM__SOURCE__GENERATOR__START",
        "RISKSTREAM__UNKNOWN__KEY",
        "riskstream__graph__max_hops",
    ];
    (0..rng.random_range(1..=3))
        .map(|_| {
            let name = pick(rng, &names).to_string();
            let secret_name = name.contains("PASSWORD") || name.contains("PASWORD");
            let value = if secret_name && rng.random_bool(0.5) {
                token(rng)
            } else if rng.random_bool(0.3) {
                mutate::strange_string(rng)
            } else {
                pick(rng, INTERESTING_VALUES).to_string()
            };
            (name, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_secrets_are_found_in_documents_and_the_environment() {
        let env = vec![("X".to_owned(), "bolt://u:fzS3cr3tABCDEFGHIJ@h".to_owned())];
        let doc = b"password = 987651234567\nx = \"fzS3cr3tQQQQQQQQQQ\"\nfzS3cr3tQQQQQuser = 1";
        let found = planted_secrets(doc, &env);
        assert_eq!(
            found,
            ["987651234567", "fzS3cr3tABCDEFGHIJ", "fzS3cr3tQQQQQQQQQQ"],
            "a cut secret joined to a key name is no secret"
        );
    }

    #[test]
    fn the_shipped_documents_with_planted_secrets_load() {
        for base in [REFERENCE, KAFKA, NEO4J] {
            let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
            lines.retain(|l| !l.trim_start().starts_with("password"));
            insert_under(
                &mut lines,
                "[graph]",
                vec!["password = \"fzS3cr3tABCDEF\"".into()],
            );
            let config = Config::from_toml_str(&lines.join("\n")).unwrap();
            assert_eq!(config.graph.password.expose(), "fzS3cr3tABCDEF");
        }
    }
}
