//! Loading as a whole: layers, error messages and redaction, as a user of the job sees them.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use super::*;

const EXAMPLE: &str = include_str!("../riskstream.toml");

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("a temporary file can be created in tests");
    file.write_all(text.as_bytes())
        .expect("a temporary file can be written in tests");
    file
}

/// The messages of a load that must fail.
fn problems(result: Result<Config, ConfigError>) -> Vec<String> {
    match result {
        Ok(config) => panic!("expected the configuration to be rejected, got {config:?}"),
        Err(error) => {
            let listed: Vec<String> = error
                .key_errors()
                .iter()
                .map(|e| e.message.clone())
                .collect();
            if listed.is_empty() {
                vec![error.to_string()]
            } else {
                listed
            }
        }
    }
}

fn only_problem(result: Result<Config, ConfigError>) -> String {
    let all = problems(result);
    assert_eq!(all.len(), 1, "expected exactly one problem, got {all:#?}");
    all.into_iter().next().unwrap_or_default()
}

#[test]
fn defaults_are_valid_and_match_the_documented_values() {
    let config = Config::default();
    assert!(config.validate().is_ok());
    assert_eq!(config.source.kind, SourceKind::Generator);
    assert_eq!(config.source.max_event_bytes, 1_048_576);
    assert_eq!(config.source.generator.seed, 42);
    assert_eq!(config.pipeline.batch_timeout, Duration::from_millis(5));
    assert_eq!(config.aggregate.keys.len(), 4);
    assert_eq!(config.graph.max_hops, 3);
    assert_eq!(config.graph.cache_ttl, Duration::from_secs(60));
    assert_eq!(config.model.review_threshold, None);
    assert_eq!(config.kafka.input_topics, vec!["events".to_owned()]);
}

#[test]
fn no_file_and_no_environment_gives_the_defaults() {
    let config = Config::load_from(None, Vec::new()).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn the_example_file_loads_as_exactly_the_defaults() {
    let config = Config::from_toml_str(EXAMPLE).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn every_key_and_section_of_the_default_config_is_in_the_example_file() {
    let example: toml::Table = EXAMPLE.parse().unwrap();
    let doc = Config::default().document(false);
    for path in doc.leaf_paths().iter().chain(doc.section_paths().iter()) {
        let mut value: Option<&toml::Value> = None;
        let mut table = Some(&example);
        for segment in path.segments() {
            value = table.and_then(|t| t.get(segment));
            table = value.and_then(toml::Value::as_table);
        }
        assert!(value.is_some(), "`{path}` is missing from riskstream.toml");
    }
}

#[test]
fn file_values_override_the_defaults_and_leave_the_rest() {
    let file = file_with(
        r#"
        [source]
        kind = "file"
        path = "events.jsonl"

        [source.generator]
        seed = 7

        [aggregate]
        windows = ["30s", "5m"]

        [graph]
        kind = "neo4j"
        max_hops = 2
        "#,
    );
    let config = Config::load_from(Some(file.path()), Vec::new()).unwrap();
    assert_eq!(config.source.kind, SourceKind::File);
    assert_eq!(config.source.path, "events.jsonl");
    assert_eq!(config.source.generator.seed, 7);
    assert_eq!(
        config.aggregate.windows,
        vec![Duration::from_secs(30), Duration::from_secs(300)]
    );
    assert_eq!(config.graph.kind, GraphKind::Neo4j);
    assert_eq!(config.graph.max_hops, 2);
    assert_eq!(config.graph.uri, "bolt://127.0.0.1:7687");
    assert_eq!(config.sink, SinkConfig::default());
}

#[test]
fn environment_overrides_keys_including_the_nested_generator_seed() {
    let config = Config::load_from(
        None,
        env(&[
            ("RISKSTREAM__GRAPH__MAX_HOPS", "2"),
            ("RISKSTREAM__SOURCE__GENERATOR__SEED", "7"),
            (
                "RISKSTREAM__SOURCE__GENERATOR__START",
                "2026-12-24T18:00:00Z",
            ),
            ("RISKSTREAM__PIPELINE__BATCH_TIMEOUT", "10ms"),
            ("RISKSTREAM__GRAPH__CACHE_ENABLED", "false"),
            ("RISKSTREAM__MODEL__DEVICE", "cuda"),
            ("RISKSTREAM__MODEL__BLOCK_THRESHOLD", "0.95"),
            ("PATH", "/usr/bin"),
            ("RISKSTREAM_LOG", "debug"),
        ]),
    )
    .unwrap();
    assert_eq!(config.graph.max_hops, 2);
    assert_eq!(config.source.generator.seed, 7);
    assert_eq!(config.source.generator.start, "2026-12-24T18:00:00Z");
    assert_eq!(config.pipeline.batch_timeout, Duration::from_millis(10));
    assert!(!config.graph.cache_enabled);
    assert_eq!(config.model.device, ModelDevice::Cuda);
    assert_eq!(config.model.block_threshold, Some(0.95));
}

#[test]
fn environment_sets_kafka_properties_by_dotted_name_as_text() {
    let config = Config::load_from(
        None,
        env(&[
            ("RISKSTREAM__KAFKA__PROPERTIES__SASL__PASSWORD", "12345"),
            (
                "RISKSTREAM__KAFKA__PROPERTIES__SECURITY__PROTOCOL",
                "SASL_SSL",
            ),
        ]),
    )
    .unwrap();
    let expected: BTreeMap<String, String> = [
        ("sasl.password".to_owned(), "12345".to_owned()),
        ("security.protocol".to_owned(), "SASL_SSL".to_owned()),
    ]
    .into();
    assert_eq!(config.kafka.properties, expected);
}

#[test]
fn environment_wins_over_the_file() {
    let file = file_with(
        r#"
        [graph]
        max_hops = 4
        user = "file-user"

        [kafka.properties]
        "sasl.username" = "from-file"
        sasl.password = "from-file"
        "#,
    );
    let config = Config::load_from(
        Some(file.path()),
        env(&[
            ("RISKSTREAM__GRAPH__MAX_HOPS", "1"),
            ("RISKSTREAM__KAFKA__PROPERTIES__SASL__PASSWORD", "from-env"),
        ]),
    )
    .unwrap();
    assert_eq!(config.graph.max_hops, 1);
    assert_eq!(config.graph.user, "file-user");
    assert_eq!(config.kafka.properties["sasl.password"], "from-env");
    assert_eq!(config.kafka.properties["sasl.username"], "from-file");
}

#[test]
fn environment_lists_take_toml_arrays_or_comma_separated_words() {
    let config = Config::load_from(
        None,
        env(&[
            ("RISKSTREAM__AGGREGATE__WINDOWS", "30s, 10m"),
            ("RISKSTREAM__AGGREGATE__KEYS", r#"["account", "ip"]"#),
            ("RISKSTREAM__KAFKA__INPUT_TOPICS", "events,payments"),
        ]),
    )
    .unwrap();
    assert_eq!(
        config.aggregate.windows,
        vec![Duration::from_secs(30), Duration::from_secs(600)]
    );
    assert_eq!(
        config.aggregate.keys,
        vec![AggregateKey::Account, AggregateKey::Ip]
    );
    assert_eq!(config.kafka.input_topics, vec!["events", "payments"]);
}

#[test]
fn text_keys_take_the_variable_text_even_when_it_reads_as_a_number() {
    let config = Config::load_from(
        None,
        env(&[
            ("RISKSTREAM__KAFKA__GROUP_ID", "1234"),
            ("RISKSTREAM__GRAPH__PASSWORD", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(config.kafka.group_id, "1234");
    assert_eq!(config.graph.password.expose(), "true");
}

#[test]
fn unknown_key_names_the_file_and_suggests_the_closest_key() {
    let file = file_with("[graph]\nmax_hop = 2\n");
    let message = only_problem(Config::load_from(Some(file.path()), Vec::new()));
    let expected = format!(
        "unknown key `graph.max_hop` in {} (did you mean `graph.max_hops`?)",
        file.path().display()
    );
    assert_eq!(message, expected);
}

#[test]
fn unknown_section_suggests_the_closest_section() {
    let message = only_problem(Config::from_toml_str("[grpah]\nmax_hops = 2\n"));
    assert_eq!(
        message,
        "unknown section `[grpah]` (did you mean `[graph]`?)"
    );
}

#[test]
fn a_key_in_the_wrong_section_points_to_where_it_belongs() {
    let message = only_problem(Config::from_toml_str("[graph]\nseed = 2\n"));
    assert_eq!(
        message,
        "unknown key `graph.seed` (did you mean `source.generator.seed`?)"
    );
}

#[test]
fn an_unknown_key_with_no_close_match_lists_the_keys_of_its_section() {
    let message = only_problem(Config::from_toml_str("[snapshot]\nfrequency = \"2s\"\n"));
    assert_eq!(
        message,
        "unknown key `snapshot.frequency`; remove it (the keys of [snapshot] are: interval)"
    );
}

#[test]
fn unknown_environment_override_names_the_variable_and_suggests_the_right_one() {
    let error = Config::load_from(None, env(&[("RISKSTREAM__GRAPH__MAX_HOP", "2")])).unwrap_err();
    let [problem] = error.key_errors() else {
        panic!("expected one problem, got {error}");
    };
    assert_eq!(
        problem.env_var.as_deref(),
        Some("RISKSTREAM__GRAPH__MAX_HOP")
    );
    assert_eq!(
        problem.message,
        "unknown environment override `RISKSTREAM__GRAPH__MAX_HOP`: there is no key `graph.max_hop`; did you mean `RISKSTREAM__GRAPH__MAX_HOPS`?"
    );
}

#[test]
fn a_variable_naming_a_whole_section_is_rejected_with_an_example_key() {
    let message = only_problem(Config::load_from(None, env(&[("RISKSTREAM__GRAPH", "x")])));
    assert_eq!(
        message,
        "environment variable `RISKSTREAM__GRAPH` names the section [graph], not a key; set one of its keys instead, like `RISKSTREAM__GRAPH__KIND`"
    );
}

#[test]
fn wrong_type_names_the_key_and_shows_how_to_write_it() {
    let message = only_problem(Config::from_toml_str("[graph]\nmax_hops = \"three\"\n"));
    assert_eq!(
        message,
        "`graph.max_hops`: expected a whole number, found a string (\"three\"); set it like `max_hops = 3`"
    );
}

#[test]
fn wrong_type_from_the_environment_names_the_variable() {
    let message = only_problem(Config::load_from(
        None,
        env(&[("RISKSTREAM__GRAPH__MAX_HOPS", "three")]),
    ));
    assert_eq!(
        message,
        "`graph.max_hops` (set by `RISKSTREAM__GRAPH__MAX_HOPS`): expected a whole number, found a string (\"three\"); set it like `RISKSTREAM__GRAPH__MAX_HOPS=3`"
    );
}

#[test]
fn out_of_range_values_name_the_key_and_the_allowed_range() {
    let message = only_problem(Config::from_toml_str("[graph]\nmax_hops = 9\n"));
    assert_eq!(
        message,
        "`graph.max_hops`: must be between 1 and 6, found 9; set it like `max_hops = 3`"
    );
    let message = only_problem(Config::from_toml_str("[pipeline]\nworkers = -1\n"));
    assert!(
        message.starts_with("`pipeline.workers`: expected a whole number from 0 to "),
        "{message}"
    );
    let message = only_problem(Config::from_toml_str(
        "[source.generator]\nfraud_rate = 0.7\n",
    ));
    assert_eq!(
        message,
        "`source.generator.fraud_rate`: must be between 0 and 0.5, found 0.7; set it like `fraud_rate = 0.02`"
    );
}

#[test]
fn a_misspelt_choice_lists_the_allowed_values_and_suggests_one() {
    let message = only_problem(Config::from_toml_str("[graph]\nkind = \"neo4\"\n"));
    assert_eq!(
        message,
        "`graph.kind`: expected one of \"memory\", \"neo4j\", \"none\", found \"neo4\" (did you mean \"neo4j\"?); set it like `kind = \"memory\"`"
    );
}

#[test]
fn the_graph_unavailable_policy_reads_each_value_from_file_and_environment() {
    assert_eq!(
        Config::default().graph.unavailable_policy,
        UnavailablePolicy::Score
    );
    for policy in UnavailablePolicy::ALL {
        let text = format!("[graph]\nunavailable_policy = \"{policy}\"\n");
        let config = Config::from_toml_str(&text).unwrap();
        assert_eq!(config.graph.unavailable_policy, *policy);
    }
    let config = Config::load_from(
        None,
        env(&[("RISKSTREAM__GRAPH__UNAVAILABLE_POLICY", "allow")]),
    )
    .unwrap();
    assert_eq!(config.graph.unavailable_policy, UnavailablePolicy::Allow);
}

#[test]
fn a_bad_graph_unavailable_policy_names_the_key_and_the_allowed_values() {
    let message = only_problem(Config::from_toml_str(
        "[graph]\nunavailable_policy = \"block\"\n",
    ));
    assert_eq!(
        message,
        "`graph.unavailable_policy`: expected one of \"score\", \"review\", \"allow\", found \"block\"; set it like `unavailable_policy = \"score\"`"
    );
}

#[test]
fn a_zero_window_is_reported_with_its_index() {
    let message = only_problem(Config::from_toml_str(
        "[aggregate]\nwindows = [\"1m\", \"0s\", \"1h\"]\n",
    ));
    assert_eq!(
        message,
        "`aggregate.windows[1]`: window must be from \"8ms\" to \"3650d\" (10 years), found \"0s\"; use a duration such as \"1h\""
    );
}

/// Each of these passed `config check` and was refused (or aborted the process) only when
/// the job started, with a message naming another option or none at all.
#[test]
fn values_the_job_cannot_run_with_are_rejected_naming_their_key() {
    let cases = [
        (
            "[pipeline]\nbatch_size = 10000000000\n",
            "pipeline.batch_size",
        ),
        ("[pipeline]\nbatch_size = 1000001\n", "pipeline.batch_size"),
        (
            "[pipeline]\nchannel_capacity = 100000\n",
            "pipeline.channel_capacity",
        ),
        ("[pipeline]\nworkers = 100000\n", "pipeline.workers"),
        ("[pipeline]\nworkers = 65\n", "pipeline.workers"),
        (
            "[aggregate]\nwindows = [\"1ms\", \"1h\"]\n",
            "aggregate.windows[0]",
        ),
        (
            "[aggregate]\nwindows = [\"1m\", \"36500d\"]\n",
            "aggregate.windows[1]",
        ),
        (
            "[aggregate]\ndistinct_window = \"1ms\"\n",
            "aggregate.distinct_window",
        ),
        (
            "[aggregate]\ndistinct_window = \"36500d\"\n",
            "aggregate.distinct_window",
        ),
        (
            "[source.generator]\nevents = 0\n",
            "source.generator.events",
        ),
        (
            "[source.generator]\naccounts = 5\n",
            "source.generator.accounts",
        ),
        (
            "[source.generator]\naccounts = 99\n",
            "source.generator.accounts",
        ),
        (
            "[source.generator]\naccounts = 100000000\n",
            "source.generator.accounts",
        ),
        (
            "[source.generator]\naccounts = 1e8\n",
            "source.generator.accounts",
        ),
        (
            "[source.generator]\nstart = \"9999-01-01T00:00:00Z\"\n",
            "source.generator.start",
        ),
        (
            "[source.generator]\nstart = \"0001-01-01T00:00:00Z\"\n",
            "source.generator.start",
        ),
        (
            "[source.generator]\nstart = \"1970-01-01T00:30:00+01:00\"\n",
            "source.generator.start",
        ),
    ];
    for (text, key) in cases {
        let error = Config::from_toml_str(text).unwrap_err();
        let keys: Vec<&str> = error.key_errors().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, [key], "{text}");
        let message = &error.key_errors()[0].message;
        assert!(message.starts_with(&format!("`{key}`: ")), "{message}");
        assert!(
            message.contains("set it like") || message.contains("use a duration"),
            "{message}"
        );
    }
}

#[test]
fn the_limits_themselves_are_accepted() {
    let text = "[pipeline]\nbatch_size = 1000000\nchannel_capacity = 1024\nworkers = 64\n\
                [aggregate]\nwindows = [\"8ms\", \"3650d\"]\ndistinct_window = \"8ms\"\n\
                [source.generator]\nevents = 1\naccounts = 100\n\
                start = \"1970-01-01T00:00:00Z\"\n";
    let config = Config::from_toml_str(text).unwrap();
    assert_eq!(config.pipeline.batch_size, MAX_BATCH_SIZE);
    assert_eq!(config.aggregate.windows, vec![MIN_WINDOW, MAX_WINDOW]);
    assert_eq!(config.source.generator.accounts, GENERATOR_MIN_ACCOUNTS);
    let late = "[source.generator]\naccounts = 10000000\nstart = \"8000-01-01T00:00:00Z\"\n";
    assert!(Config::from_toml_str(late).is_ok());
}

#[test]
fn workers_left_to_the_cpu_count_never_exceed_the_limit() {
    let config = PipelineConfig {
        workers: 0,
        ..PipelineConfig::default()
    };
    assert!((1..=MAX_WORKERS).contains(&config.effective_workers()));
}

#[test]
fn windows_that_do_not_increase_are_reported() {
    let message = only_problem(Config::from_toml_str(
        "[aggregate]\nwindows = [\"1h\", \"1m\"]\n",
    ));
    assert!(
        message.starts_with(
            "`aggregate.windows[1]`: windows must be strictly increasing, but \"1m\" follows \"1h\""
        ),
        "{message}"
    );
}

#[test]
fn too_many_windows_are_reported() {
    let windows: Vec<String> = (1..=9).map(|m| format!("\"{m}m\"")).collect();
    let text = format!("[aggregate]\nwindows = [{}]\n", windows.join(", "));
    let message = only_problem(Config::from_toml_str(&text));
    assert!(
        message
            .starts_with("`aggregate.windows`: must be a list of 1 to 8 windows, found 9 windows"),
        "{message}"
    );
}

#[test]
fn unreadable_and_negative_durations_name_the_key() {
    let message = only_problem(Config::from_toml_str(
        "[snapshot]\ninterval = \"2 weeks\"\n",
    ));
    assert!(
        message.starts_with("`snapshot.interval`: cannot read \"2 weeks\" as a duration"),
        "{message}"
    );
    assert!(
        message.ends_with("set it like `interval = \"2s\"`"),
        "{message}"
    );
    let message = only_problem(Config::from_toml_str("[graph]\ncache_ttl = \"-5s\"\n"));
    assert!(
        message.starts_with(
            "`graph.cache_ttl`: cannot read \"-5s\" as a duration: durations cannot be negative"
        ),
        "{message}"
    );
    let message = only_problem(Config::from_toml_str("[snapshot]\ninterval = \"0s\"\n"));
    assert_eq!(
        message,
        "`snapshot.interval`: must be longer than zero, found \"0s\"; set it like `interval = \"2s\"`"
    );
    let message = only_problem(Config::from_toml_str("[snapshot]\ninterval = 2\n"));
    assert!(
        message.starts_with("`snapshot.interval`: expected a duration in quotes"),
        "{message}"
    );
}

#[test]
fn thresholds_out_of_order_are_reported_with_both_values() {
    let message = only_problem(Config::from_toml_str(
        "[model]\nreview_threshold = 0.9\nblock_threshold = 0.5\n",
    ));
    assert!(
        message.starts_with(
            "`model.review_threshold` (0.9) must be lower than `model.block_threshold` (0.5)"
        ),
        "{message}"
    );
}

#[test]
fn thresholds_must_lie_strictly_between_zero_and_one() {
    let message = only_problem(Config::from_toml_str("[model]\nblock_threshold = 1.5\n"));
    assert!(
        message.starts_with("`model.block_threshold`: must be between 0 and 1 (exclusive)"),
        "{message}"
    );
    let config =
        Config::from_toml_str("[model]\nreview_threshold = 0.4\nblock_threshold = \"metadata\"\n")
            .unwrap();
    assert_eq!(config.model.review_threshold, Some(0.4));
    assert_eq!(config.model.block_threshold, None);
}

#[test]
fn a_missing_file_says_how_to_fix_it() {
    let error = Config::load_from(Some(Path::new("x.toml")), Vec::new()).unwrap_err();
    assert!(matches!(error, ConfigError::NotFound { .. }));
    assert_eq!(
        error.to_string(),
        "config file `x.toml` not found; pass an existing file or leave --config out to use the defaults"
    );
}

#[test]
fn a_syntax_error_names_the_file_line_and_column() {
    let file = file_with("[graph]\nmax_hops = 3\nuri = = 1\n");
    let error = Config::load_from(Some(file.path()), Vec::new()).unwrap_err();
    let ConfigError::Syntax { line, column, .. } = &error else {
        panic!("expected a syntax error, got {error}");
    };
    assert_eq!((*line, *column), (3, 7));
    let text = error.to_string();
    let file_name = format!("`{}`", file.path().display());
    assert!(text.contains(&file_name), "{text}");
    assert!(text.contains("line 3, column 7"), "{text}");
}

#[test]
fn several_problems_are_reported_together_in_section_order() {
    let error = Config::load_from(
        None,
        env(&[
            ("RISKSTREAM__GRAPH__MAX_HOPS", "0"),
            ("RISKSTREAM__SOURCE__KIND", "file"),
            ("RISKSTREAM__PIPELINE__BATCH_SIZE", "0"),
        ]),
    )
    .unwrap_err();
    let keys: Vec<&str> = error.key_errors().iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["source.path", "pipeline.batch_size", "graph.max_hops"]
    );
    let text = error.to_string();
    assert!(
        text.starts_with("invalid configuration, 3 problems:"),
        "{text}"
    );
}

#[test]
fn a_file_source_needs_a_path() {
    let message = only_problem(Config::from_toml_str("[source]\nkind = \"file\"\n"));
    assert_eq!(
        message,
        "`source.path`: must be the JSONL file to read when `source.kind` is \"file\", found nothing; set it like `path = \"events.jsonl\"`"
    );
}

#[test]
fn aggregate_keys_must_be_unique_and_include_the_account() {
    let problems = problems(Config::from_toml_str(
        "[aggregate]\nkeys = [\"device\", \"ip\", \"device\"]\n",
    ));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(
        problems[0],
        "`aggregate.keys[2]`: \"device\" is listed twice; list each key once"
    );
    assert!(
        problems[1].starts_with("`aggregate.keys`: must be a list that includes \"account\""),
        "{}",
        problems[1]
    );
}

#[test]
fn kafka_properties_owned_by_typed_keys_are_rejected() {
    let message = only_problem(Config::from_toml_str(
        "[kafka.properties]\n\"bootstrap.servers\" = \"b:9092\"\n",
    ));
    assert_eq!(
        message,
        "`kafka.properties.\"bootstrap.servers\"`: this property cannot be set here: set `kafka.brokers` instead"
    );
}

#[test]
fn partition_alignment_is_on_by_default_and_a_zero_idle_timeout_names_its_key() {
    let config = Config::default();
    assert!(config.kafka.align_partitions);
    assert_eq!(config.kafka.max_partition_skew, Duration::ZERO);
    let message = only_problem(Config::from_toml_str("[kafka]\nidle_timeout = \"0s\"\n"));
    assert_eq!(
        message,
        "`kafka.idle_timeout`: must be more than 0s and at most 1h, found \"0s\"; set it like `idle_timeout = \"2s\"`"
    );
    let message = only_problem(Config::from_toml_str(
        "[kafka]\nmax_partition_skew = \"2h\"\n",
    ));
    assert!(
        message.starts_with("`kafka.max_partition_skew`: must be at most 1h"),
        "{message}"
    );
}

#[test]
fn nested_and_quoted_property_names_mean_the_same_property() {
    let config = Config::from_toml_str(
        "[kafka.properties]\nsasl.mechanisms = \"PLAIN\"\n\"socket.timeout.ms\" = 30000\n",
    )
    .unwrap();
    assert_eq!(config.kafka.properties["sasl.mechanisms"], "PLAIN");
    assert_eq!(config.kafka.properties["socket.timeout.ms"], "30000");
    let message = only_problem(Config::from_toml_str(
        "[kafka.properties]\nsasl.mechanisms = \"PLAIN\"\n\"sasl.mechanisms\" = \"SCRAM\"\n",
    ));
    assert!(
        message.starts_with("`kafka.properties.\"sasl.mechanisms\"`: is set twice"),
        "{message}"
    );
}

#[test]
fn a_bare_toml_date_time_is_accepted_as_the_generator_start() {
    let config =
        Config::from_toml_str("[source.generator]\nstart = 2026-12-01T08:30:00+01:00\n").unwrap();
    assert_eq!(config.source.generator.start, "2026-12-01T08:30:00+01:00");
    let message = only_problem(Config::from_toml_str(
        "[source.generator]\nstart = \"2026-12-01\"\n",
    ));
    assert!(
        message.starts_with(
            "`source.generator.start`: expected an RFC 3339 timestamp with a time zone"
        ),
        "{message}"
    );
}

#[test]
fn validate_checks_a_configuration_changed_in_code() {
    let mut config = Config::default();
    config.aggregate.windows = vec![Duration::from_secs(60), Duration::ZERO];
    let error = config.validate().unwrap_err();
    assert_eq!(error.key_errors()[0].key, "aggregate.windows[1]");
}

#[test]
fn max_future_skew_must_be_longer_than_zero_and_at_most_a_year() {
    for bad in ["0s", "400d"] {
        let file = file_with(&format!("[aggregate]\nmax_future_skew = \"{bad}\"\n"));
        let error = Config::load_from(Some(file.path()), Vec::new()).unwrap_err();
        let keys: Vec<&str> = error.key_errors().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["aggregate.max_future_skew"], "{bad}: {error}");
    }
    let file = file_with("[aggregate]\nmax_future_skew = \"5m\"\n");
    let config = Config::load_from(Some(file.path()), Vec::new()).unwrap();
    assert_eq!(config.aggregate.max_future_skew, Duration::from_secs(300));
}

#[test]
fn idle_key_ttl_shorter_than_the_longest_window_is_refused_by_name() {
    for text in [
        "[aggregate]\nidle_key_ttl = \"23h\"\n",
        "[aggregate]\nwindows = [\"1m\", \"7d\"]\nidle_key_ttl = \"48h\"\n",
        "[aggregate]\ndistinct_window = \"3d\"\nidle_key_ttl = \"48h\"\n",
        "[aggregate]\nidle_key_ttl = \"8000d\"\n",
    ] {
        let file = file_with(text);
        let error = Config::load_from(Some(file.path()), Vec::new()).unwrap_err();
        let keys: Vec<&str> = error.key_errors().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["aggregate.idle_key_ttl"], "{text}: {error}");
    }
    let file = file_with("[aggregate]\nidle_key_ttl = \"24h\"\n");
    let config = Config::load_from(Some(file.path()), Vec::new()).unwrap();
    assert_eq!(config.aggregate.idle_key_ttl, Duration::from_secs(86_400));
}

#[test]
fn the_default_idle_key_ttl_is_the_longest_window_plus_a_day() {
    assert_eq!(
        Config::default().aggregate.idle_key_ttl,
        Duration::from_secs(2 * 86_400)
    );
    let file = file_with("[aggregate]\nwindows = [\"1m\", \"7d\"]\n");
    let config = Config::load_from(Some(file.path()), Vec::new()).unwrap();
    assert_eq!(
        config.aggregate.idle_key_ttl,
        Duration::from_secs(8 * 86_400)
    );
}

fn config_with_secrets() -> Config {
    let mut config = Config::default();
    config.graph.password = Secret::new("neo-pass");
    for (name, value) in [
        ("sasl.password", "kafka-pass"),
        ("sasl.jaas.config", "jaas-secret"),
        ("sasl.oauthbearer.client.secret", "oauth-secret"),
        ("ssl.key.pem", "pem-secret"),
        (
            "sasl.oauthbearer.token.endpoint.url",
            "https://token-secret",
        ),
        ("security.protocol", "SASL_SSL"),
    ] {
        config
            .kafka
            .properties
            .insert(name.to_owned(), value.to_owned());
    }
    config
}

const SECRET_VALUES: [&str; 5] = [
    "neo-pass",
    "kafka-pass",
    "jaas-secret",
    "oauth-secret",
    "pem-secret",
];

#[test]
fn secrets_are_redacted_in_the_printed_toml() {
    let text = config_with_secrets().to_redacted_toml();
    for secret in SECRET_VALUES {
        assert!(!text.contains(secret), "`{secret}` leaked:\n{text}");
    }
    assert!(!text.contains("token-secret"), "{text}");
    assert!(text.contains("password = \"***\""), "{text}");
    assert!(text.contains("\"sasl.password\" = \"***\""), "{text}");
    assert!(
        text.contains("\"security.protocol\" = \"SASL_SSL\""),
        "{text}"
    );
}

#[test]
fn a_secret_value_is_hidden_also_where_an_ordinary_key_holds_it() {
    let config = Config::from_toml_str(
        r#"
[graph]
user = "S3cr3t-value"
password = "S3cr3t-value"

[kafka.properties]
"sasl.password" = "kafka-S3cr3t"
"client.id" = "kafka-S3cr3t"
"x-kafka-S3cr3t" = "odd name"
"#,
    )
    .unwrap();
    let printed = config.to_redacted_toml();
    let debug = format!("{config:?}");
    let pretty = format!("{config:#?}");
    for text in [&printed, &debug, &pretty] {
        for secret in ["S3cr3t-value", "kafka-S3cr3t"] {
            assert!(!text.contains(secret), "`{secret}` leaked:\n{text}");
        }
    }
    assert!(printed.contains("\"client.id\" = \"***\""), "{printed}");
    assert!(printed.contains("user = \"***\""), "{printed}");
}

#[test]
fn a_secret_with_quotes_is_hidden_in_its_escaped_form_too() {
    let mut config = Config::default();
    config.graph.password = Secret::new("pa\"ss\\word".to_owned());
    config.graph.user = "pa\"ss\\word".to_owned();
    let printed = config.to_redacted_toml();
    let debug = format!("{config:?}");
    for text in [&printed, &debug] {
        assert!(!text.contains("pa\\\"ss"), "leaked:\n{text}");
        assert!(!text.contains("pa\"ss"), "leaked:\n{text}");
    }
}

#[test]
fn a_short_numeric_or_boolean_secret_is_hidden_by_name_only_and_the_file_still_loads() {
    // Cut out of every number, `true` and name, these would leave a file that does not load.
    for secret in ["5", "true", "1048576", "0.02"] {
        let mut config = Config::default();
        config.graph.password = Secret::new(secret.to_owned());
        let printed = config.to_redacted_toml();
        assert!(printed.contains("password = \"***\""), "{printed}");
        let mut back = Config::from_toml_str(&printed).unwrap();
        back.graph.password = config.graph.password.clone();
        assert_eq!(back, config, "{secret}");
    }
}

#[test]
fn a_numeric_secret_is_hidden_where_an_ordinary_key_holds_it_as_a_string() {
    let config = Config::from_toml_str(
        r#"
[kafka.properties]
"ssl.key.password" = "987656052175"
"client.id" = "987656052175"
"#,
    )
    .unwrap();
    let printed = config.to_redacted_toml();
    assert!(!printed.contains("987656052175"), "{printed}");
    assert!(printed.contains("\"client.id\" = \"***\""), "{printed}");
    Config::from_toml_str(&printed).unwrap();
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let config = config_with_secrets();
    let debug = format!("{config:?}");
    let pretty = format!("{config:#?}");
    for secret in SECRET_VALUES {
        assert!(!debug.contains(secret), "`{secret}` leaked: {debug}");
        assert!(!pretty.contains(secret), "`{secret}` leaked: {pretty}");
    }
    assert!(debug.contains("SASL_SSL"), "{debug}");
}

#[test]
fn the_printed_toml_loads_back_as_the_same_configuration() {
    let default = Config::default();
    assert_eq!(
        Config::from_toml_str(&default.to_redacted_toml()).unwrap(),
        default
    );

    let changed = Config {
        source: SourceConfig {
            kind: SourceKind::Kafka,
            path: "in.jsonl".to_owned(),
            max_event_bytes: 4096,
            generator: GeneratorConfig {
                seed: 9,
                events: 10,
                accounts: 300,
                fraud_rate: 0.25,
                start: "2027-01-02T03:04:05.5Z".to_owned(),
            },
        },
        sink: SinkConfig {
            kind: SinkKind::Stdout,
            path: "r.jsonl".to_owned(),
        },
        dead_letter: DeadLetterConfig {
            kind: SinkKind::Kafka,
            path: "d.jsonl".to_owned(),
            max_payload_bytes: 0,
        },
        pipeline: PipelineConfig {
            batch_size: 64,
            batch_timeout: Duration::from_micros(1500),
            channel_capacity: 2,
            workers: 3,
        },
        aggregate: AggregateConfig {
            keys: vec![AggregateKey::Merchant, AggregateKey::Account],
            windows: vec![Duration::from_secs(90), Duration::from_secs(2 * 86_400)],
            distinct_window: Duration::from_secs(600),
            max_future_skew: Duration::from_secs(300),
            idle_key_ttl: Duration::from_secs(3 * 86_400),
        },
        snapshot: SnapshotConfig {
            interval: Duration::from_millis(250),
        },
        state: StateConfig {
            dir: "var/state".to_owned(),
            checkpoint_interval: Duration::from_secs(30),
        },
        graph: GraphConfig {
            kind: GraphKind::None,
            path: "graph.jsonl".to_owned(),
            max_hops: 6,
            uri: "neo4j+s://db.example:7687".to_owned(),
            user: "reader".to_owned(),
            password: Secret::default(),
            pool_size: 1,
            query_timeout: Duration::from_secs(1),
            batch_deadline: Duration::from_millis(20),
            cache_enabled: false,
            cache_ttl: Duration::from_secs(5),
            cache_capacity: 0,
            cache_warm_up: false,
            unavailable_policy: UnavailablePolicy::Review,
        },
        model: ModelConfig {
            path: "m".to_owned(),
            device: ModelDevice::Cuda,
            review_threshold: Some(0.3),
            block_threshold: Some(0.8),
            reload_interval: Duration::from_millis(500),
        },
        kafka: KafkaConfig {
            brokers: "a:1,b:2".to_owned(),
            group_id: "g".to_owned(),
            input_topics: vec!["t1".to_owned(), "t.2".to_owned()],
            results_topic: "r".to_owned(),
            dead_letter_topic: "d".to_owned(),
            auto_offset_reset: AutoOffsetReset::Latest,
            create_topics: true,
            partitions: 12,
            replication: 3,
            align_partitions: false,
            max_partition_skew: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(7),
            properties: [("linger.ms".to_owned(), "5".to_owned())].into(),
        },
        admin: AdminConfig {
            listen: Some("[::1]:19898".parse().unwrap()),
        },
        log: LogConfig {
            format: LogFormat::Json,
        },
    };
    assert!(changed.validate().is_ok(), "{:?}", changed.validate());
    let text = changed.to_redacted_toml();
    assert_eq!(Config::from_toml_str(&text).unwrap(), changed, "{text}");
}

#[test]
fn a_zero_checkpoint_interval_is_refused_naming_the_key() {
    let message = only_problem(Config::from_toml_str(
        "[state]\ndir = \"state\"\ncheckpoint_interval = \"0s\"\n",
    ));
    assert!(
        message.starts_with("`state.checkpoint_interval`: must be longer than zero"),
        "{message}"
    );
}

#[test]
fn key_paths_list_every_key_once() {
    let paths = Config::default().key_paths();
    assert_eq!(paths.first().map(String::as_str), Some("source.kind"));
    assert!(paths.contains(&"source.generator.seed".to_owned()));
    assert!(paths.contains(&"kafka.replication".to_owned()));
    let mut unique = paths.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), paths.len());
}

#[test]
fn the_kafka_example_is_a_valid_configuration_reading_and_writing_topics() {
    let config = Config::from_toml_str(include_str!("../kafka.toml")).unwrap();
    assert_eq!(config.source.kind, SourceKind::Kafka);
    assert_eq!(config.sink.kind, SinkKind::Kafka);
    assert_eq!(config.dead_letter.kind, SinkKind::Kafka);
    assert!(config.kafka.create_topics);
}

#[test]
fn the_neo4j_example_is_a_valid_configuration_with_a_cached_neo4j_graph() {
    let config = Config::from_toml_str(include_str!("../neo4j.toml")).unwrap();
    assert_eq!(config.graph.kind, GraphKind::Neo4j);
    assert!(config.graph.cache_enabled);
    assert!(
        config.graph.password.is_empty(),
        "the example must not ship a password"
    );
    assert_eq!(config.source.kind, SourceKind::File);
}

#[test]
fn an_unquoted_password_is_reported_without_its_value() {
    let error = Config::from_toml_str("[graph]\npassword = 98765432\n").unwrap_err();
    let text = error.to_string();
    assert!(!text.contains("98765432"), "{text}");
    assert_eq!(error.key_errors()[0].key, "graph.password");
    assert!(text.contains("put the value in quotes"), "{text}");
    let error = Config::from_toml_str("[graph]\npassword = 12.5e3\n").unwrap_err();
    assert!(!error.to_string().contains("12500"), "{error}");
}

#[test]
fn a_password_in_the_graph_uri_is_redacted_when_printed() {
    let config = Config::from_toml_str(
        "[graph]\nkind = \"neo4j\"\nuri = \"bolt://neo4j:S3cr3t@db.example:7687\"\n",
    )
    .unwrap();
    let printed = config.to_redacted_toml();
    assert!(!printed.contains("S3cr3t"), "{printed}");
    assert!(
        printed.contains("uri = \"bolt://neo4j:***@db.example:7687\""),
        "{printed}"
    );
    assert_eq!(
        config.graph.redacted_uri(),
        "bolt://neo4j:***@db.example:7687"
    );
    assert!(!format!("{config:?}").contains("S3cr3t"));
    assert_eq!(config.graph.uri, "bolt://neo4j:S3cr3t@db.example:7687");
    let error = Config::from_toml_str(
        "[graph]\nkind = \"neo4j\"\nuri = \"http://neo4j:S3cr3t@db.example:7687\"\n",
    )
    .unwrap_err();
    assert!(!error.to_string().contains("S3cr3t"), "{error}");
}

#[test]
fn secret_kafka_properties_and_near_misses_are_redacted_when_printed() {
    let secrets = [
        ("sasl.password", "pw-1111"),
        ("sasl.pasword", "pw-2222"),
        ("ssl.key.password", "pw-3333"),
        ("ssl.keystore.password", "pw-4444"),
        (
            "sasl.jaas.config",
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"pw-5555\";",
        ),
        (
            "sasl.oauthbearer.config",
            "clientId=riskstream clientSecret=pw-6666",
        ),
    ];
    let mut text = String::from("[kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n");
    for (name, value) in secrets {
        text.push_str(&format!("{:?} = {:?}\n", name, value));
    }
    let config = Config::from_toml_str(&text).unwrap();
    let printed = config.to_redacted_toml();
    for (name, value) in secrets {
        assert!(!printed.contains(value), "`{name}` leaked:\n{printed}");
    }
    assert!(printed.contains("\"sasl.pasword\" = \"***\""), "{printed}");
    assert!(printed.contains("SASL_SSL"), "{printed}");
}

#[test]
fn configured_secret_values_are_scrubbed_from_any_text() {
    let config = Config::from_toml_str(
        "[graph]\nuri = \"bolt://neo4j:uri-S3cr3t@h:7687\"\npassword = \"graph-S3cr3t\"\n\
         [kafka.properties]\n\"sasl.jaas.config\" = \"PlainLoginModule required username=\\\"u\\\" password=\\\"jaas-S3cr3t\\\";\"\n\
         \"sasl.pasword\" = \"typo-S3cr3t\"\n\"security.protocol\" = \"SASL_SSL\"\n",
    )
    .unwrap();
    let client_error = "Client creation error: Java JAAS configuration is not supported: \
         PlainLoginModule required username=\"u\" password=\"jaas-S3cr3t\"; (password=\"jaas-S3cr3t\") \
         sasl.pasword=typo-S3cr3t graph-S3cr3t bolt://neo4j:uri-S3cr3t@h security.protocol=SASL_SSL";
    for scrubbed in [
        config.scrub_secrets(client_error),
        config.kafka.scrub_secrets(client_error),
    ] {
        assert!(!scrubbed.contains("jaas-S3cr3t"), "{scrubbed}");
        assert!(!scrubbed.contains("typo-S3cr3t"), "{scrubbed}");
        assert!(scrubbed.contains("Client creation error"), "{scrubbed}");
        assert!(scrubbed.contains("SASL_SSL"), "{scrubbed}");
    }
    let scrubbed = config.scrub_secrets(client_error);
    assert!(!scrubbed.contains("graph-S3cr3t"), "{scrubbed}");
    assert!(!scrubbed.contains("uri-S3cr3t"), "{scrubbed}");
}

#[test]
fn the_admin_endpoint_listens_on_loopback_port_9898_by_default() {
    let config = Config::default();
    assert_eq!(config.admin.listen, Some("127.0.0.1:9898".parse().unwrap()));
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn an_empty_admin_listen_turns_the_endpoint_off_and_prints_back_as_empty() {
    let config = Config::from_toml_str("[admin]\nlisten = \"\"\n").unwrap();
    assert_eq!(config.admin.listen, None);
    let printed = config.to_redacted_toml();
    assert!(printed.contains("listen = \"\""), "{printed}");
    assert_eq!(Config::from_toml_str(&printed).unwrap(), config);
}

#[test]
fn an_admin_listen_that_is_not_an_address_names_the_key_and_the_fix() {
    let message = only_problem(Config::from_toml_str("[admin]\nlisten = \"localhost\"\n"));
    assert!(message.starts_with("`admin.listen`: "), "{message}");
    assert!(message.contains("\"localhost\""), "{message}");
    assert!(message.contains("listen = \"127.0.0.1:9898\""), "{message}");

    let message = only_problem(Config::from_toml_str("[admin]\nlisten = 9898\n"));
    assert!(message.starts_with("`admin.listen`: "), "{message}");
}

#[test]
fn admin_listen_and_log_format_are_set_from_the_environment() {
    let config = Config::load_from(
        None,
        env(&[
            ("RISKSTREAM__ADMIN__LISTEN", "0.0.0.0:9000"),
            ("RISKSTREAM__LOG__FORMAT", "json"),
        ]),
    )
    .unwrap();
    assert_eq!(config.admin.listen, Some("0.0.0.0:9000".parse().unwrap()));
    assert_eq!(config.log.format, LogFormat::Json);

    let message = only_problem(Config::load_from(
        None,
        env(&[("RISKSTREAM__ADMIN__LISTEN", "nowhere")]),
    ));
    assert!(
        message.starts_with("`admin.listen` (set by `RISKSTREAM__ADMIN__LISTEN`)"),
        "{message}"
    );
}

#[test]
fn a_misspelt_log_format_lists_text_and_json() {
    let message = only_problem(Config::from_toml_str("[log]\nformat = \"jsn\"\n"));
    assert!(message.starts_with("`log.format`: "), "{message}");
    assert!(message.contains("\"text\", \"json\""), "{message}");
    assert!(message.contains("did you mean \"json\""), "{message}");
}
