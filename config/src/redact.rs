//! Keeping configured secrets out of printed text: passwords inside URIs, and any
//! configured secret value that a client library echoes back in an error.

use crate::secret::REDACTED;
use crate::suggest::edit_distance;

/// Parts of a property name that mark its value as a secret.
const SECRET_MARKERS: [&str; 9] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "jaas",
    "oauthbearer.config",
    "key.pem",
    "token",
    "credential",
];

/// Words that a mistyped secret name is close to (`sasl.pasword`), with the most edits
/// that still count as that word.
const SECRET_WORDS: [(&str, usize); 3] = [("password", 2), ("secret", 1), ("token", 1)];

/// Whether a name (a Kafka property, or a key inside a property value such as
/// `clientSecret=`) holds a secret: it contains `password`, `secret`, `jaas`,
/// `oauthbearer.config`, `key.pem`, `token` or `credential`, or one of its parts is a
/// near miss of `password`, `secret` or `token`.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if SECRET_MARKERS.iter().any(|marker| name.contains(marker)) {
        return true;
    }
    name.split(['.', '_', '-']).any(|part| {
        SECRET_WORDS
            .iter()
            .any(|(word, edits)| edit_distance(part, word) <= *edits)
    })
}

/// The URI with the password of its user information replaced by `***`
/// (`bolt://neo4j:***@host:7687`); a URI without a password comes back unchanged.
pub fn redacted_uri(uri: &str) -> String {
    match uri_password(uri) {
        Some((start, end)) => format!("{}{REDACTED}{}", &uri[..start], &uri[end..]),
        None => uri.to_owned(),
    }
}

/// The byte range of the password in `scheme://user:password@host...`, if there is one.
pub(crate) fn uri_password(uri: &str) -> Option<(usize, usize)> {
    let authority_start = uri.find("://")? + 3;
    let rest = &uri[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    (colon + 1 < at).then_some((authority_start + colon + 1, authority_start + at))
}

/// The values inside a secret property's value that are secrets on their own: the values
/// of `name=value` pairs with a secret-looking name, as in
/// `sasl.jaas.config = "... username=\"u\" password=\"p\";"` or
/// `sasl.oauthbearer.config = "clientId=x clientSecret=y"`.
pub(crate) fn embedded_secrets(value: &str) -> Vec<String> {
    value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| is_secret_name(name))
        .map(|(_, secret)| {
            secret
                .trim_end_matches(';')
                .trim_matches(|c| c == '"' || c == '\'')
                .to_owned()
        })
        .filter(|secret| !secret.is_empty())
        .collect()
}

/// Secrets shorter than this are hidden by name only in printed configurations: a secret
/// of one to three characters would also be cut out of numbers, names and keywords.
pub const MIN_SCRUBBED_LEN: usize = 4;

/// Whether a printed configuration hides `secret` wherever it stands: when it has at least
/// [`MIN_SCRUBBED_LEN`] characters and is not a number or a boolean, which ordinary keys
/// print bare (cutting them out would leave a file that does not load).
pub(crate) fn is_scrubbed_by_value(secret: &str) -> bool {
    secret.chars().count() >= MIN_SCRUBBED_LEN
        && secret.parse::<bool>().is_err()
        && secret.parse::<f64>().is_err()
        && secret.replace('_', "").parse::<i64>().is_err()
}

/// `text` with every quoted string that is exactly one of `secrets` (`"1234"`) replaced by
/// `"***"`: for secrets too short or too number-like to cut out of other text.
pub(crate) fn scrub_whole_strings(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        let quoted = format!("{secret:?}");
        if out.contains(quoted.as_str()) {
            out = out.replace(quoted.as_str(), "\"***\"");
        }
    }
    out
}

/// Like [`scrub`], for text that quotes values as TOML or `Debug` strings do: a secret is
/// also found in its escaped form (a `"` or `\\` in it written `\\"`, `\\\\`).
pub(crate) fn scrub_quoted(text: &str, secrets: Vec<String>) -> String {
    let mut all = Vec::with_capacity(secrets.len() * 2);
    for secret in secrets {
        let escaped: String = format!("{secret:?}");
        let escaped = escaped[1..escaped.len() - 1].to_owned();
        if escaped != secret {
            all.push(escaped);
        }
        all.push(secret);
    }
    scrub(text, all)
}

/// `text` with every occurrence of every non-empty value in `secrets` replaced by `***`,
/// longest first so that a secret containing another is replaced whole.
pub(crate) fn scrub(text: &str, mut secrets: Vec<String>) -> String {
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let mut out = text.to_owned();
    for secret in &secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_uri_is_replaced_and_the_rest_kept() {
        assert_eq!(
            redacted_uri("bolt://neo4j:S3cr3t@db.example:7687"),
            "bolt://neo4j:***@db.example:7687"
        );
        assert_eq!(
            redacted_uri("neo4j+s://u:p%40ss@h/db?x=1"),
            "neo4j+s://u:***@h/db?x=1"
        );
        assert_eq!(
            redacted_uri("bolt://127.0.0.1:7687"),
            "bolt://127.0.0.1:7687"
        );
        assert_eq!(redacted_uri("bolt://neo4j@h:7687"), "bolt://neo4j@h:7687");
        assert_eq!(redacted_uri("not a uri"), "not a uri");
    }

    #[test]
    fn secret_names_include_near_misses_but_not_ordinary_properties() {
        for name in [
            "sasl.password",
            "sasl.pasword",
            "sasl.passwrd",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.jaas.config",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "SASL.PASSWORD",
            "clientSecret",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "security.protocol",
            "sasl.mechanisms",
            "sasl.username",
            "linger.ms",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn secrets_inside_a_jaas_or_oauth_value_are_found() {
        assert_eq!(
            embedded_secrets(
                "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"S3cr3t\";"
            ),
            ["S3cr3t"]
        );
        assert_eq!(
            embedded_secrets("principal=admin clientSecret=xyz scope=read"),
            ["xyz"]
        );
    }

    #[test]
    fn every_secret_is_scrubbed_longest_first() {
        let text = scrub(
            "bad value `password=abc123` and abc again",
            vec![
                "abc".to_owned(),
                "password=abc123".to_owned(),
                String::new(),
            ],
        );
        assert_eq!(text, "bad value `***` and *** again");
    }
}
