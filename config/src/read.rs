//! Walking a parsed TOML tree against the known keys.
//!
//! Each section's `read` takes its keys out of a [`Section`] one by one; what is left at the
//! end is unknown. Every problem is recorded in the [`Report`] with the full key path (and
//! the environment variable, when the value came from one) and reading goes on with the
//! default, so that one pass reports every problem instead of the first.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value};

use crate::document::Document;
use crate::duration::{format_duration, parse_duration};
use crate::env::EnvOverride;
use crate::error::{ConfigError, KeyError};
use crate::suggest::closest;
use crate::Config;

/// A key's position in the configuration tree, such as `graph.max_hops` or
/// `kafka.properties."sasl.password"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct KeyPath(Vec<String>);

impl KeyPath {
    /// A path of plain segments, written with dots (`"source.generator.seed"`).
    pub(crate) fn of(dotted: &str) -> KeyPath {
        KeyPath(dotted.split('.').map(str::to_owned).collect())
    }

    pub(crate) fn from_segments(segments: Vec<String>) -> KeyPath {
        KeyPath(segments)
    }

    pub(crate) fn child(&self, segment: &str) -> KeyPath {
        let mut segments = self.0.clone();
        segments.push(segment.to_owned());
        KeyPath(segments)
    }

    pub(crate) fn segments(&self) -> &[String] {
        &self.0
    }

    pub(crate) fn last(&self) -> &str {
        self.0.last().map(String::as_str).unwrap_or("")
    }

    pub(crate) fn parent(&self) -> KeyPath {
        KeyPath(self.0[..self.0.len().saturating_sub(1)].to_vec())
    }

    pub(crate) fn starts_with(&self, prefix: &KeyPath) -> bool {
        self.0.starts_with(&prefix.0)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The environment variable that sets this key. A segment with dots (a Kafka property
    /// name) contributes one `__`-separated part per dotted part.
    pub(crate) fn env_var(&self) -> String {
        let mut name = crate::env::PREFIX.to_owned();
        let parts = self.0.iter().flat_map(|segment| segment.split('.'));
        for (i, part) in parts.enumerate() {
            if i > 0 {
                name.push_str("__");
            }
            name.push_str(&part.to_ascii_uppercase());
        }
        name
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(&toml_key(segment))?;
        }
        Ok(())
    }
}

/// A key as TOML spells it: bare when it can be, quoted otherwise.
pub(crate) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

/// Describes a value the way the user wrote it, for "found ..." in messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("a string ({s:?})"),
        Value::Integer(i) => format!("a whole number ({i})"),
        Value::Float(f) => format!("a number ({f})"),
        Value::Boolean(b) => format!("a boolean ({b})"),
        Value::Datetime(d) => format!("a date-time ({d})"),
        Value::Array(_) => "a list".to_owned(),
        Value::Table(_) => "a section (table)".to_owned(),
    }
}

/// The type of a value, without the value, for messages about secrets.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "a whole number",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "a list",
        Value::Table(_) => "a section (table)",
    }
}

/// Everything known about where values came from, and the problems found so far.
pub(crate) struct Report {
    file: Option<PathBuf>,
    /// The tree as the file (or text) had it, before environment overrides, to tell
    /// whether an unknown key was written in the file or set by a variable.
    file_tree: Table,
    env: Vec<EnvOverride>,
    errors: Vec<KeyError>,
}

impl Report {
    pub(crate) fn new(file: Option<PathBuf>, file_tree: Table) -> Report {
        Report {
            file,
            file_tree,
            env: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                file: self.file,
                errors: self.errors,
            })
        }
    }

    pub(crate) fn set_file_tree(&mut self, tree: Table) {
        self.file_tree = tree;
    }

    pub(crate) fn record_env(&mut self, applied: EnvOverride) {
        self.env.push(applied);
    }

    /// The override that set exactly this key; the last one wins, as when applying.
    pub(crate) fn env_for(&self, path: &KeyPath) -> Option<&EnvOverride> {
        self.env.iter().rev().find(|o| &o.path == path)
    }

    pub(crate) fn push(&mut self, error: KeyError) {
        self.errors.push(error);
    }

    /// Records a problem with the value at `path` (element `index` of a list, if given).
    /// `problem` is the text after "`key`: " and should end with the fix.
    pub(crate) fn invalid(&mut self, path: &KeyPath, index: Option<usize>, problem: &str) {
        let key = match index {
            Some(i) => format!("{path}[{i}]"),
            None => path.to_string(),
        };
        let env_var = self.env_for(path).map(|o| o.var.clone());
        let by = match &env_var {
            Some(var) => format!(" (set by `{var}`)"),
            None => String::new(),
        };
        let message = format!("`{key}`{by}: {problem}");
        self.errors.push(KeyError {
            key,
            env_var,
            message,
        });
    }

    /// "set it like `max_hops = 3`", or the variable form when the value came from one.
    pub(crate) fn set_it_like(&self, path: &KeyPath, example: &Value) -> String {
        match self.env_for(path) {
            Some(o) => {
                let text = match example {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                format!("set it like `{}={text}`", o.var)
            }
            None => format!("set it like `{} = {example}`", toml_key(path.last())),
        }
    }

    /// Validation in one line: unless `ok`, reports "`key`: must be {requirement}, found
    /// {found}; set it like `key = {example}`".
    pub(crate) fn require(
        &mut self,
        ok: bool,
        dotted_key: &str,
        requirement: &str,
        found: impl fmt::Display,
        example: impl Into<Value>,
    ) {
        if ok {
            return;
        }
        let path = KeyPath::of(dotted_key);
        let fix = self.set_it_like(&path, &example.into());
        self.invalid(
            &path,
            None,
            &format!("must be {requirement}, found {found}; {fix}"),
        );
    }

    /// [`Report::require`] for durations that must be longer than zero.
    pub(crate) fn require_positive(
        &mut self,
        duration: Duration,
        dotted_key: &str,
        example: Duration,
    ) {
        self.require(
            !duration.is_zero(),
            dotted_key,
            "longer than zero",
            format!("{:?}", format_duration(duration)),
            format_duration(example),
        );
    }

    /// Reports a key that no section knows: as a file key, as one or more environment
    /// overrides, or both, each with the closest known key when there is one.
    fn unknown(&mut self, path: &KeyPath, value: &Value) {
        let schema = Config::default().document(false);
        let overrides: Vec<EnvOverride> = self
            .env
            .iter()
            .filter(|o| o.path.starts_with(path))
            .cloned()
            .collect();
        for o in &overrides {
            let wanted = o.path.to_string();
            let known: Vec<KeyPath> = schema.leaf_paths();
            let names: Vec<String> = known.iter().map(KeyPath::to_string).collect();
            let hint = match closest(&wanted, names.iter().map(String::as_str)) {
                Some(i) => format!("; did you mean `{}`?", known[i].env_var()),
                None => "; remove it or see riskstream.toml for the known keys".to_owned(),
            };
            self.errors.push(KeyError {
                key: wanted.clone(),
                env_var: Some(o.var.clone()),
                message: format!(
                    "unknown environment override `{}`: there is no key `{wanted}`{hint}",
                    o.var
                ),
            });
        }
        if overrides.is_empty() || lookup(&self.file_tree, path).is_some() {
            let message = self.unknown_file_key(path, value, &schema);
            self.errors.push(KeyError {
                key: path.to_string(),
                env_var: None,
                message,
            });
        }
    }

    fn unknown_file_key(&self, path: &KeyPath, value: &Value, schema: &Document) -> String {
        let parent = path.parent();
        let is_section = matches!(value, Value::Table(_));
        let (what, shown) = if is_section {
            ("section", format!("[{path}]"))
        } else {
            ("key", path.to_string())
        };
        let place = match &self.file {
            Some(file) => format!(" in {}", file.display()),
            None => String::new(),
        };
        let siblings = schema.children(&parent);
        let suggestion = closest(path.last(), siblings.iter().map(String::as_str))
            .map(|i| parent.child(&siblings[i]))
            .or_else(|| {
                // The right key in the wrong section, such as `seed` under `[graph]`.
                schema
                    .leaf_paths()
                    .into_iter()
                    .find(|known| known.last() == path.last())
            });
        match suggestion {
            Some(known) if schema.is_section(&known) => {
                format!("unknown {what} `{shown}`{place} (did you mean `[{known}]`?)")
            }
            Some(known) => format!("unknown {what} `{shown}`{place} (did you mean `{known}`?)"),
            None if parent.is_root() => format!(
                "unknown {what} `{shown}`{place}; the sections are: {}",
                siblings.join(", ")
            ),
            None => format!(
                "unknown {what} `{shown}`{place}; remove it (the keys of [{parent}] are: {})",
                siblings.join(", ")
            ),
        }
    }
}

fn lookup<'t>(table: &'t Table, path: &KeyPath) -> Option<&'t Value> {
    let (first, rest) = path.segments().split_first()?;
    let mut value = table.get(first)?;
    for segment in rest {
        value = value.as_table()?.get(segment)?;
    }
    Some(value)
}

/// An enum whose values are written as fixed names in the configuration.
pub(crate) trait Choice: Copy + PartialEq + 'static {
    fn all() -> &'static [Self];
    fn name(self) -> &'static str;
}

/// Whole-number key types, with their range for messages.
pub(crate) trait WholeNumber: Copy + TryFrom<i64> {
    const LOW: i128;
    const HIGH: i128;
    fn wide(self) -> i128;
}

macro_rules! whole_number {
    ($($t:ty),*) => {$(
        impl WholeNumber for $t {
            const LOW: i128 = <$t>::MIN as i128;
            const HIGH: i128 = <$t>::MAX as i128;
            fn wide(self) -> i128 {
                self as i128
            }
        }
    )*};
}
whole_number!(u32, u64, i32, usize);

/// Converts a whole number for writing; numbers beyond TOML's range are written as text so
/// that reading them back fails loudly instead of silently changing them.
pub(crate) fn whole_value<T: WholeNumber>(value: T) -> Value {
    let wide = value.wide();
    match i64::try_from(wide) {
        Ok(small) => Value::Integer(small),
        Err(_) => Value::String(wide.to_string()),
    }
}

/// One table of the configuration being read; see the module documentation.
pub(crate) struct Section<'r> {
    report: &'r mut Report,
    path: KeyPath,
    table: Table,
}

impl<'r> Section<'r> {
    pub(crate) fn root(report: &'r mut Report, table: Table) -> Section<'r> {
        Section {
            report,
            path: KeyPath::default(),
            table,
        }
    }

    /// The sub-table `key`; absent means all its keys take their defaults.
    pub(crate) fn section(&mut self, key: &str) -> Section<'_> {
        let path = self.path.child(key);
        let table = match self.table.remove(key) {
            None => Table::new(),
            Some(Value::Table(table)) => table,
            Some(other) => {
                let problem = format!(
                    "expected a section, found {}; write it as a `[{path}]` table with its keys below",
                    describe(&other)
                );
                self.report.invalid(&path, None, &problem);
                Table::new()
            }
        };
        Section {
            report: self.report,
            path,
            table,
        }
    }

    /// Reports every key nobody took.
    pub(crate) fn finish(self) {
        for (key, value) in &self.table {
            self.report.unknown(&self.path.child(key), value);
        }
    }

    /// Takes `key` and converts it; on failure reports "`key`: {problem}; set it like ..."
    /// and keeps the default.
    fn scalar<T>(
        &mut self,
        key: &str,
        default: T,
        convert: impl FnOnce(&Value) -> Result<T, (String, Value)>,
    ) -> T {
        let path = self.path.child(key);
        let Some(value) = self.table.remove(key) else {
            return default;
        };
        match convert(&value) {
            Ok(converted) => converted,
            Err((problem, example)) => {
                let fix = self.report.set_it_like(&path, &example);
                self.report
                    .invalid(&path, None, &format!("{problem}; {fix}"));
                default
            }
        }
    }

    /// Environment values are read as TOML when they parse, so `RISKSTREAM__KAFKA__GROUP_ID=7`
    /// arrives as a number; for keys that hold text the variable's own text is what was meant.
    fn as_text(&self, key: &str) -> Option<Value> {
        let path = self.path.child(key);
        let value = self.table.get(key)?;
        match (value, self.report.env_for(&path)) {
            (Value::String(_), _) | (_, None) => Some(value.clone()),
            (_, Some(o)) => Some(Value::String(o.raw.clone())),
        }
    }

    fn take_text(&mut self, key: &str) {
        if let Some(text) = self.as_text(key) {
            self.table.insert(key.to_owned(), text);
        }
    }

    pub(crate) fn string(&mut self, key: &str, default: String) -> String {
        self.take_text(key);
        self.scalar(key, default, |value| match value {
            Value::String(s) => Ok(s.clone()),
            other => {
                let example = match other {
                    Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {
                        Value::String(other.to_string())
                    }
                    _ => Value::String("...".to_owned()),
                };
                Err((
                    format!("expected text in quotes, found {}", describe(other)),
                    example,
                ))
            }
        })
    }

    /// Text that is a secret: like [`Section::string`], but a value of the wrong type is
    /// described by its type only, since an unquoted password is still the password.
    pub(crate) fn secret(&mut self, key: &str) -> String {
        self.take_text(key);
        self.scalar(key, String::new(), |value| match value {
            Value::String(s) => Ok(s.clone()),
            other => Err((
                format!(
                    "expected text in quotes, found {} (value not shown: it is a secret); put the value in quotes",
                    kind_of(other)
                ),
                Value::String("...".to_owned()),
            )),
        })
    }

    pub(crate) fn whole<T: WholeNumber>(&mut self, key: &str, default: T) -> T {
        let example = whole_value(default);
        self.scalar(key, default, |value| match value {
            Value::Integer(i) => T::try_from(*i).map_err(|_| {
                (
                    format!(
                        "expected a whole number from {} to {}, found {i}",
                        T::LOW,
                        T::HIGH
                    ),
                    example,
                )
            }),
            other => Err((
                format!("expected a whole number, found {}", describe(other)),
                example,
            )),
        })
    }

    pub(crate) fn number(&mut self, key: &str, default: f64) -> f64 {
        self.scalar(key, default, |value| match value {
            Value::Float(f) => Ok(*f),
            Value::Integer(i) => Ok(*i as f64),
            other => Err((
                format!("expected a number, found {}", describe(other)),
                Value::Float(default),
            )),
        })
    }

    /// A number, or the text `unset_word` meaning "not set here" (`None`).
    pub(crate) fn optional_number(
        &mut self,
        key: &str,
        default: Option<f64>,
        unset_word: &str,
        example: f64,
    ) -> Option<f64> {
        self.scalar(key, default, |value| match value {
            Value::Float(f) => Ok(Some(*f)),
            Value::Integer(i) => Ok(Some(*i as f64)),
            Value::String(s) if s.eq_ignore_ascii_case(unset_word) => Ok(None),
            other => Err((
                format!(
                    "expected a number or \"{unset_word}\", found {}",
                    describe(other)
                ),
                Value::Float(example),
            )),
        })
    }

    pub(crate) fn boolean(&mut self, key: &str, default: bool) -> bool {
        self.scalar(key, default, |value| match value {
            Value::Boolean(b) => Ok(*b),
            other => Err((
                format!("expected true or false, found {}", describe(other)),
                Value::Boolean(default),
            )),
        })
    }

    pub(crate) fn duration(&mut self, key: &str, default: Duration) -> Duration {
        self.take_text(key);
        let example = Value::String(format_duration(default));
        self.scalar(key, default, |value| {
            read_duration(value).map_err(|p| (p, example))
        })
    }

    pub(crate) fn choice<C: Choice>(&mut self, key: &str, default: C) -> C {
        self.take_text(key);
        let example = Value::String(default.name().to_owned());
        self.scalar(key, default, |value| {
            read_choice(value).map_err(|p| (p, example))
        })
    }

    /// A socket address (`"127.0.0.1:9898"`, `"[::1]:9898"`), or `""` for none (a
    /// listener turned off).
    pub(crate) fn listen_address(
        &mut self,
        key: &str,
        default: Option<std::net::SocketAddr>,
    ) -> Option<std::net::SocketAddr> {
        self.take_text(key);
        let example = Value::String(crate::admin::listen_text(default));
        self.scalar(key, default, |value| match value {
            Value::String(s) if s.trim().is_empty() => Ok(None),
            Value::String(s) => s.trim().parse().map(Some).map_err(|_| {
                (
                    format!(
                        "expected an IP address and port such as \"127.0.0.1:9898\" or \"[::]:9898\", or \"\" to turn it off, found {s:?}"
                    ),
                    example,
                )
            }),
            other => Err((
                format!(
                    "expected an address and port in quotes such as \"127.0.0.1:9898\", found {}",
                    describe(other)
                ),
                example,
            )),
        })
    }

    /// An RFC 3339 timestamp with a time zone, written as text or as a bare TOML
    /// date-time; kept as its canonical text.
    pub(crate) fn timestamp(&mut self, key: &str, default: String) -> String {
        let example = Value::String(default.clone());
        self.scalar(key, default, |value| {
            let parsed = match value {
                Value::Datetime(d) => Some(*d),
                Value::String(s) => s.trim().parse::<toml::value::Datetime>().ok(),
                _ => None,
            };
            match parsed {
                Some(d) if d.date.is_some() && d.time.is_some() && d.offset.is_some() => {
                    Ok(d.to_string())
                }
                _ => Err((
                    format!(
                        "expected an RFC 3339 timestamp with a time zone, found {}",
                        describe(value)
                    ),
                    example,
                )),
            }
        })
    }

    /// A list. From the environment a list may also be written as comma-separated words
    /// (`RISKSTREAM__KAFKA__INPUT_TOPICS=events,payments`). When any element is wrong every
    /// wrong element is reported and the default is kept.
    fn list<T>(
        &mut self,
        key: &str,
        default: Vec<T>,
        example: Value,
        item: impl Fn(&Value) -> Result<T, String>,
    ) -> Vec<T> {
        let path = self.path.child(key);
        let Some(value) = self.table.remove(key) else {
            return default;
        };
        let items = match (value, self.report.env_for(&path)) {
            (Value::Array(items), _) => items,
            (_, Some(o)) => o
                .raw
                .split(',')
                .map(|part| Value::String(part.trim().to_owned()))
                .collect(),
            (other, None) => {
                let fix = self.report.set_it_like(&path, &example);
                let problem = format!("expected a list, found {}; {fix}", describe(&other));
                self.report.invalid(&path, None, &problem);
                return default;
            }
        };
        let mut converted = Vec::with_capacity(items.len());
        let mut failed = false;
        for (i, element) in items.iter().enumerate() {
            match item(element) {
                Ok(good) => converted.push(good),
                Err(problem) => {
                    failed = true;
                    self.report.invalid(&path, Some(i), &problem);
                }
            }
        }
        if failed {
            default
        } else {
            converted
        }
    }

    pub(crate) fn strings(&mut self, key: &str, default: Vec<String>) -> Vec<String> {
        let example = Value::Array(default.iter().map(|s| Value::from(s.as_str())).collect());
        self.list(key, default, example, |value| match value {
            Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "expected text in quotes, found {}",
                describe(other)
            )),
        })
    }

    pub(crate) fn choices<C: Choice>(&mut self, key: &str, default: Vec<C>) -> Vec<C> {
        let example = Value::Array(default.iter().map(|c| Value::from(c.name())).collect());
        self.list(key, default, example, read_choice)
    }

    pub(crate) fn durations(&mut self, key: &str, default: Vec<Duration>) -> Vec<Duration> {
        let example = Value::Array(
            default
                .iter()
                .map(|d| Value::String(format_duration(*d)))
                .collect(),
        );
        self.list(key, default, example, |value| {
            read_duration(value).map_err(|p| format!("{p}; use a duration such as \"1h\""))
        })
    }

    /// A string-to-string table passed through as is. Numbers and booleans are accepted
    /// and kept as their text, since the consumer takes every value as text.
    pub(crate) fn text_table(&mut self, key: &str) -> std::collections::BTreeMap<String, String> {
        let path = self.path.child(key);
        let mut out = std::collections::BTreeMap::new();
        let table = match self.table.remove(key) {
            None => return out,
            Some(Value::Table(table)) => table,
            Some(other) => {
                let problem = format!(
                    "expected a section of name = \"value\" pairs, found {}; write it as a `[{path}]` table",
                    describe(&other)
                );
                self.report.invalid(&path, None, &problem);
                return out;
            }
        };
        for (name, value) in table {
            let text = match value {
                Value::String(s) => s,
                Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Datetime(_) => {
                    value.to_string()
                }
                Value::Array(_) | Value::Table(_) => {
                    let problem = format!(
                        "expected a single value, found {}; write lists as one comma-separated string such as \"a,b\"",
                        describe(&value)
                    );
                    self.report.invalid(&path.child(&name), None, &problem);
                    continue;
                }
            };
            out.insert(name, text);
        }
        out
    }
}

fn read_duration(value: &Value) -> Result<Duration, String> {
    match value {
        Value::String(s) => {
            parse_duration(s).map_err(|e| format!("cannot read {s:?} as a duration: {e}"))
        }
        other => Err(format!(
            "expected a duration in quotes such as \"2s\", found {}",
            describe(other)
        )),
    }
}

fn read_choice<C: Choice>(value: &Value) -> Result<C, String> {
    let names: Vec<&str> = C::all().iter().map(|c| c.name()).collect();
    let allowed = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    match value {
        Value::String(s) => {
            if let Some(found) = C::all().iter().find(|c| c.name().eq_ignore_ascii_case(s)) {
                return Ok(*found);
            }
            let hint = match closest(&s.to_ascii_lowercase(), names.iter().copied()) {
                Some(i) => format!(" (did you mean \"{}\"?)", names[i]),
                None => String::new(),
            };
            Err(format!("expected one of {allowed}, found {s:?}{hint}"))
        }
        other => Err(format!(
            "expected one of {allowed}, found {}",
            describe(other)
        )),
    }
}
