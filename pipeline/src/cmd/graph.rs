//! `riskstream graph load`: writes a graph file into Neo4j (constraint, batched idempotent
//! `MERGE`s), with a progress line (on a terminal) and a summary of what was created.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use riskstream_config::Config;
use riskstream_graph::load::{GraphFile, LoadOptions, LoadProgress, LoadSummary, Neo4jLoader};
use riskstream_graph::{BreakerOptions, Neo4jOptions};
use riskstream_pipeline::progress::{Progress, Unit};

/// `riskstream graph ...`: graph database tools.
#[derive(Debug, clap::Subcommand)]
pub enum GraphCommand {
    /// Load a graph file (as written by `riskstream gen`) into Neo4j. Idempotent: loading
    /// the same file again creates nothing. The password comes from
    /// RISKSTREAM__GRAPH__PASSWORD or the configuration file, never from the command line.
    Load(LoadArgs),
}

/// Options of `riskstream graph load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Graph file (JSONL).
    #[arg(long)]
    pub file: PathBuf,
    /// Bolt URI of the server (default: graph.uri).
    #[arg(long)]
    pub uri: Option<String>,
    /// Neo4j user (default: graph.user).
    #[arg(long)]
    pub user: Option<String>,
    /// Configuration file (TOML) for graph.uri, graph.user and graph.password.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Delete every entity node (label Entity) and its relationships before loading.
    #[arg(long)]
    pub wipe: bool,
    /// Nodes or relationships written per query.
    #[arg(long, default_value_t = LoadOptions::default().batch_size)]
    pub batch_size: usize,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

pub async fn run(command: GraphCommand) -> anyhow::Result<()> {
    match command {
        GraphCommand::Load(args) => load(args).await.map(|_| ()),
    }
}

/// Loads the file and prints the summary; returns it for tests and scripts.
pub async fn load(args: LoadArgs) -> anyhow::Result<LoadSummary> {
    let config = Config::load(args.config.as_deref())
        .map_err(anyhow::Error::from)
        .context("invalid configuration")?;
    let graph = &config.graph;
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let password = graph.password.expose().to_owned();
    if password.is_empty() {
        bail!(
            "no Neo4j password: set RISKSTREAM__GRAPH__PASSWORD in the environment (or graph.password \
             in the file given with --config); it is never taken from the command line"
        );
    }
    let options = Neo4jOptions {
        uri: args.uri.clone().unwrap_or_else(|| graph.uri.clone()),
        user: args.user.clone().unwrap_or_else(|| graph.user.clone()),
        password,
        max_hops: graph.max_hops,
        pool_size: 1,
        query_timeout: Duration::from_secs(10),
        breaker: BreakerOptions::default(),
    };

    let started = Instant::now();
    let file = GraphFile::read(&args.file)
        .with_context(|| format!("cannot read the graph file `{}`", args.file.display()))?;
    let loader = Neo4jLoader::connect(&options)
        .with_context(|| format!("cannot connect to Neo4j at {}", options.uri))?;
    loader.ping(options.query_timeout).await.with_context(|| {
        format!(
            "cannot reach Neo4j at {} as user {:?}; is it running (scripts/neo4j.sh start) and is \
             the password right?",
            options.uri, options.user
        )
    })?;
    eprintln!(
        "loading {} ({} nodes, {} relationships) into {}{}",
        args.file.display(),
        file.nodes.len(),
        file.edges.len(),
        options.uri,
        if args.wipe {
            " after deleting every entity node"
        } else {
            ""
        }
    );
    let total = (file.nodes.len() + file.edges.len()) as u64;
    let progress = Progress::stderr("loading", Some(total), Unit::Count("items"), args.quiet);
    let load_options = LoadOptions {
        batch_size: args.batch_size,
        wipe: args.wipe,
        ..LoadOptions::default()
    };
    let summary = loader
        .load(&file, &load_options, |p: &LoadProgress| {
            progress.set_total((p.nodes_total + p.relationships_total) as u64);
            progress.set_message(format!(
                "nodes {}/{} | relationships {}/{}",
                p.nodes_done, p.nodes_total, p.relationships_done, p.relationships_total
            ));
            progress.set((p.nodes_done + p.relationships_done) as u64);
        })
        .await
        .with_context(|| {
            format!(
                "loading `{}` into {} failed",
                args.file.display(),
                options.uri
            )
        })?;
    progress.finish();
    eprintln!(
        "riskstream graph load finished in {:.2} s\n  file           {}\n  nodes          {} in file, {} created\n  relationships  {} in file, {} created{}",
        started.elapsed().as_secs_f64(),
        args.file.display(),
        summary.nodes,
        summary.nodes_created,
        summary.relationships,
        summary.relationships_created,
        if args.wipe {
            format!("\n  deleted first  {} entity nodes", summary.nodes_deleted)
        } else {
            String::new()
        }
    );
    Ok(summary)
}
