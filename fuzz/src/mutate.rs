//! Mutations shared by every target: on JSON values (field deletions, type swaps, extreme
//! numbers and strings) and on bytes (BOM, CRLF, truncation, flips, splices, random bytes).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Number, Value};

/// The random number generator of one case.
pub type Rng = ChaCha8Rng;

/// The UTF-8 byte order mark.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One element of `items`, chosen uniformly.
pub fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Numbers that break arithmetic: the largest and smallest doubles, subnormals, negative
/// zero, integers past 2^53 and 2^64. (JSON has no NaN or infinity; those arrive as text.)
pub const EXTREME_NUMBERS: &[&str] = &[
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "5e-324",
    "-5e-324",
    "2.2250738585072014e-308",
    "-0",
    "-0.0",
    "0",
    "0.0",
    "1e-400",
    "1e309",
    "-1e309",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999999999999999999",
    "3.4028235e38",
    "3.4028236e38",
    "-1",
    "1",
    "0.1",
    "4294967296",
    "1E2",
    "1e+2",
    "0e0",
];

/// Strings that name numbers JSON cannot carry, and other texts that look numeric.
pub const NUMERIC_STRINGS: &[&str] = &[
    "NaN",
    "nan",
    "-NaN",
    "Infinity",
    "-Infinity",
    "inf",
    "-inf",
    "1e308",
    "0x10",
    "1_000",
    "١٢٣",
    "",
    " 1",
];

/// Texts that are hard on whatever stores or prints them.
pub const STRANGE_STRINGS: &[&str] = &[
    "",
    " ",
    "\t",
    "\u{0}",
    "\u{7f}",
    "\u{1b}[31mred\u{1b}[0m",
    "\r\n",
    "\n",
    "é",
    "e\u{301}",
    "\u{202e}lanigiro",
    "\u{feff}",
    "\u{fffd}",
    "😀👨‍👩‍👧",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\u{10ffff}",
    "ＡＢＣ",
    "ß",
    "İ",
    "\"quoted\"",
    "back\\slash",
    "null",
    "true",
    "{}",
    "[]",
    "${HOME}",
    "%s%n",
    "' OR 1=1 --",
    "MATCH (n) DETACH DELETE n",
    "../../etc/passwd",
    "A-1",
];

/// A string of one of the strange kinds: short and odd, empty, or very long.
pub fn strange_string(rng: &mut Rng) -> String {
    match rng.random_range(0..6) {
        0 => {
            let unit = pick(rng, STRANGE_STRINGS).to_string();
            let n = rng.random_range(1..64);
            unit.repeat(n)
        }
        1 => "x".repeat(rng.random_range(1_000..20_000)),
        2 => {
            let len = rng.random_range(0..40);
            random_unicode(rng, len)
        }
        _ => pick(rng, STRANGE_STRINGS).to_string(),
    }
}

/// Random Unicode scalar values, any plane.
pub fn random_unicode(rng: &mut Rng, len: usize) -> String {
    let mut out = String::new();
    while out.chars().count() < len {
        let c = match rng.random_range(0..4) {
            0 => rng.random_range(0u32..0x80),
            1 => rng.random_range(0x80u32..0x800),
            2 => rng.random_range(0x800u32..0x10000),
            _ => rng.random_range(0x10000u32..0x110000),
        };
        if let Some(c) = char::from_u32(c) {
            out.push(c);
        }
    }
    out
}

/// Random bytes, sometimes biased towards JSON or TOML punctuation.
pub fn random_bytes(rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let len = rng.random_range(0..=max_len);
    let alphabet: &[u8] = b"{}[]\":,.0123456789eE+-tfnul\\ \t\r\n=#'abcxyz";
    let biased = rng.random_bool(0.5);
    (0..len)
        .map(|_| {
            if biased {
                *pick(rng, alphabet)
            } else {
                rng.random()
            }
        })
        .collect()
}

/// A JSON value of a random type other than what it replaces, sometimes an extreme one.
pub fn other_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.random_range(0..12) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => Value::Number(Number::from(rng.random::<i64>())),
        3 => Number::from_f64(rng.random::<f64>() * 1e6)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        4 => Value::String(pick(rng, NUMERIC_STRINGS).to_string()),
        5 => Value::String(strange_string(rng)),
        6 if depth < 3 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| other_value(rng, depth + 1))
                .collect(),
        ),
        7 if depth < 3 => {
            let mut map = Map::new();
            for _ in 0..rng.random_range(0..3) {
                map.insert(strange_string(rng), other_value(rng, depth + 1));
            }
            Value::Object(map)
        }
        8 => Value::String(pick(rng, EXTREME_NUMBERS).to_string()),
        _ => extreme_number(rng),
    }
}

/// An extreme number that `serde_json` can hold (the others are written as text by
/// [`raw_number_splice`]).
pub fn extreme_number(rng: &mut Rng) -> Value {
    let candidates = [
        1e308,
        -1e308,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
        -0.0,
        0.0,
        9007199254740993.0,
        f32::MAX as f64,
        -1.0,
    ];
    Number::from_f64(*pick(rng, &candidates))
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Applies one structural mutation to a JSON object: deletes a field, swaps a field's
/// type, sets it to an extreme number or string, adds an unknown field, nests it deeply.
pub fn mutate_object(rng: &mut Rng, object: &mut Map<String, Value>) {
    let keys: Vec<String> = object.keys().cloned().collect();
    if keys.is_empty() {
        object.insert(strange_string(rng), other_value(rng, 0));
        return;
    }
    let key = pick(rng, &keys).clone();
    match rng.random_range(0..8) {
        0 | 1 => {
            object.remove(&key);
        }
        2 | 3 => {
            object.insert(key, other_value(rng, 0));
        }
        4 => {
            object.insert(key, extreme_number(rng));
        }
        5 => {
            object.insert(key, Value::String(strange_string(rng)));
        }
        6 => {
            object.insert(strange_string(rng), other_value(rng, 0));
        }
        _ => {
            // Deep nesting: past serde_json's recursion limit now and then.
            let mut value = object.remove(&key).unwrap_or(Value::Null);
            for _ in 0..rng.random_range(1..200) {
                value = Value::Array(vec![value]);
            }
            object.insert(key, value);
        }
    }
}

/// Replaces the value of `"key":` in a JSON text with a raw number token that
/// `serde_json::Value` could not hold (`1e309`, `-0`, 20-digit integers): such tokens are
/// only reachable as text.
pub fn raw_number_splice(rng: &mut Rng, text: &mut Vec<u8>, key: &str) {
    let needle = format!("\"{key}\":");
    let Some(at) = find(text, needle.as_bytes()) else {
        return;
    };
    let start = at + needle.len();
    let end = value_end(text, start);
    let number = pick(rng, EXTREME_NUMBERS).as_bytes();
    text.splice(start..end, number.iter().copied());
}

/// Where the JSON value starting at `start` ends, roughly (good enough for flat objects).
fn value_end(text: &[u8], start: usize) -> usize {
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in text.iter().enumerate().skip(start) {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth > 0 => depth -= 1,
            b',' | b'}' | b']' if depth == 0 => return i,
            _ => {}
        }
    }
    text.len()
}

/// The first position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Applies one byte-level mutation: truncation, a flipped bit, a replaced, inserted or
/// deleted byte, a duplicated or removed range, interesting bytes, a BOM, CRLF endings.
pub fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match rng.random_range(0..12) {
        0 if len > 0 => bytes.truncate(rng.random_range(0..len)),
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            bytes[i] ^= 1 << rng.random_range(0..8);
        }
        2 if len > 0 => {
            let i = rng.random_range(0..len);
            bytes[i] = rng.random();
        }
        3 => {
            let i = rng.random_range(0..=len);
            let interesting: &[&[u8]] = &[
                b"\xff",
                b"\xc0\x80",
                b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80",
                b"\0",
                b"\"",
                b"\\",
                b"\\u0000",
                b"\\ud800",
                b"{",
                b"}",
                b",",
                b"\r",
                b"\n",
                b"\r\n",
                BOM,
                b"1e308",
                b"NaN",
            ];
            let insert = pick(rng, interesting);
            bytes.splice(i..i, insert.iter().copied());
        }
        4 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(16));
            bytes.drain(i..i + n);
        }
        5 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(64));
            let copy: Vec<u8> = bytes[i..i + n].to_vec();
            let at = rng.random_range(0..=len);
            bytes.splice(at..at, copy);
        }
        6 => bytes.splice(0..0, BOM.iter().copied()).for_each(drop),
        7 => {
            let crlf: Vec<u8> = bytes
                .iter()
                .flat_map(|&b| {
                    if b == b'\n' {
                        vec![b'\r', b'\n']
                    } else {
                        vec![b]
                    }
                })
                .collect();
            *bytes = crlf;
        }
        8 => {
            let at = rng.random_range(0..=len);
            let noise = random_bytes(rng, 16);
            bytes.splice(at..at, noise);
        }
        9 if len > 1 => {
            let i = rng.random_range(0..len);
            let j = rng.random_range(0..len);
            bytes.swap(i, j);
        }
        10 => {
            let pad = [b' ', b'\t', b'\r', b'\n'];
            let n = rng.random_range(1..8);
            for _ in 0..n {
                let b = *pick(rng, &pad);
                if rng.random() {
                    bytes.push(b);
                } else {
                    bytes.insert(0, b);
                }
            }
        }
        _ => {
            let i = rng.random_range(0..=len);
            bytes.insert(i, rng.random());
        }
    }
}

/// Duplicates the first `"key":value` member of a flat JSON object text, with another
/// value, so that the text names the key twice.
pub fn duplicate_key(rng: &mut Rng, text: &mut Vec<u8>, key: &str) {
    let needle = format!("\"{key}\":");
    if find(text, needle.as_bytes()).is_none() {
        return;
    }
    let value = serde_json::to_string(&other_value(rng, 0)).unwrap_or_default();
    let member = format!("{needle}{value},");
    if text.first() == Some(&b'{') {
        text.splice(1..1, member.bytes());
    }
}
