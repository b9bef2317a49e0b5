//! `report.html`: the report for people, as one self-contained file (inline CSS, SVG and a
//! few lines of script; nothing fetched), so it can be mailed or attached to an incident
//! ticket and opened anywhere. Charts are drawn here as SVG, so the page needs no chart
//! library and renders the same everywhere.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::decode::parse_ts;
use crate::enrich::GraphStatus;
use crate::result::{Decision, Reason, RecordDecision};

use super::report::{EventReport, Report};

/// Most rows a table shows; the full list is in report.json.
const MAX_ROWS: usize = 500;
/// Bars of the time chart.
const TIME_BUCKETS: i64 = 48;
/// Bins of the score histograms.
const SCORE_BINS: usize = 20;

const ALLOW: &str = "#4c9f70";
const REVIEW: &str = "#e0a030";
const BLOCK: &str = "#d0463c";
const PUBLISHED: &str = "#7a8ca5";
const REPLAYED: &str = "#2f6fd0";

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn score_text(score: f32) -> String {
    if score.is_finite() {
        format!("{score:.4}")
    } else {
        "–".to_string()
    }
}

fn decision_color(decision: Option<Decision>) -> &'static str {
    match decision {
        Some(Decision::Block) => BLOCK,
        Some(Decision::Review) => REVIEW,
        _ => ALLOW,
    }
}

fn is_block(decision: &RecordDecision) -> bool {
    decision.decision() == Some(Decision::Block)
}

/// Renders the whole page.
pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(64 * 1024 + report.events.len() * 64);
    let s = &report.summary;
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>riskstream replay {from} – {to}</title>
<style>{CSS}</style></head><body>
<header><h1>riskstream replay</h1>
<p class="range">{from} → {to} <span class="muted">(warm-up from {warm})</span></p>
<p class="muted">events: {input} · published results: {results} · model {model} (review ≥ {review}, block ≥ {block}) · graph: {graph}{accounts}</p></header>
<section class="cards">
{cards}
</section>
"#,
        from = esc(&report.range.from),
        to = esc(&report.range.to),
        warm = esc(&report.range.warm_up_from),
        input = esc(&report.input.events),
        results = esc(report.input.results.as_deref().unwrap_or("none")),
        model = esc(&report.input.model_version),
        review = report.input.thresholds[0],
        block = report.input.thresholds[1],
        graph = esc(&report.input.graph),
        accounts = if report.range.accounts.is_empty() {
            String::new()
        } else {
            format!(" · accounts: {}", esc(&report.range.accounts.join(", ")))
        },
        cards = cards(report),
    );
    let _ = write!(
        page,
        r#"<section class="grid">
<div class="panel"><h2>Decisions before and after</h2>{decisions}</div>
<div class="panel"><h2>Score distribution <span class="muted">(log scale; dashed: thresholds)</span></h2>{scores}</div>
<div class="panel"><h2>Top accounts by blocks</h2>{accounts}</div>
<div class="panel wide"><h2>Events and decisions over time <span class="muted">(replayed; dashed line: published blocks)</span></h2>{time}</div>
</section>
"#,
        decisions = decisions_table(report),
        time = time_chart(report),
        scores = score_chart(report),
        accounts = accounts_chart(report),
    );
    let changed: Vec<&EventReport> = report
        .events
        .iter()
        .filter(|e| e.differs.contains(&"decision"))
        .collect();
    let _ = write!(
        page,
        r#"<section class="panel"><h2>Changed decisions <span class="muted">({n})</span></h2>
<input class="filter" type="search" placeholder="filter by event, account or decision" data-table="changed">
{table}</section>
"#,
        n = s.changed_decisions,
        table = changed_table(&changed),
    );
    let blocked: Vec<&EventReport> = report
        .events
        .iter()
        .filter(|e| is_block(&e.replayed.decision))
        .collect();
    let _ = write!(
        page,
        r#"<section class="panel"><h2>Blocked events and their graph paths <span class="muted">({n}; path from the event's entity to the flagged one)</span></h2>
<input class="filter" type="search" placeholder="filter by event, account or entity" data-table="blocked">
{list}</section>
"#,
        n = blocked.len(),
        list = blocked_list(&blocked),
    );
    if !report.dead_letters.is_empty() {
        let mut rows = String::new();
        for d in report.dead_letters.iter().take(MAX_ROWS) {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                d.partition,
                d.offset,
                esc(d.kind),
                esc(&d.reason)
            );
        }
        let _ = write!(
            page,
            r#"<section class="panel"><h2>Dead letters <span class="muted">({})</span></h2>
<table><thead><tr><th>partition</th><th>offset</th><th>kind</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table></section>
"#,
            report.dead_letters.len()
        );
    }
    let _ = write!(
        page,
        "<footer class=\"muted\">Full details per event in report.json (schema {}).</footer>\n<script>{SCRIPT}</script>\n</body></html>\n",
        report.schema_version
    );
    page
}

fn cards(report: &Report) -> String {
    let s = &report.summary;
    let card = |label: &str, value: String, alert: bool| {
        format!(
            "<div class=\"card{}\"><div class=\"value\">{}</div><div class=\"label\">{}</div></div>",
            if alert { " alert" } else { "" },
            esc(&value),
            esc(label)
        )
    };
    [
        card("events replayed", s.events.to_string(), false),
        card("warm-up events", s.warm_up_events.to_string(), false),
        card(
            "changed decisions",
            s.changed_decisions.to_string(),
            s.changed_decisions > 0,
        ),
        card("changed scores", s.changed_scores.to_string(), false),
        card(
            "no published result",
            s.no_published_result.to_string(),
            s.no_published_result > 0,
        ),
        card(
            "dead letters",
            s.dead_letters.to_string(),
            s.dead_letters > 0,
        ),
    ]
    .join("\n")
}

fn decisions_table(report: &Report) -> String {
    let s = &report.summary;
    let mut out = String::from(
        "<table class=\"decisions\"><thead><tr><th></th><th>published</th><th>replayed</th></tr></thead><tbody>",
    );
    for (decision, before, after) in [
        (Decision::Allow, s.published.allow, s.replayed.allow),
        (Decision::Review, s.published.review, s.replayed.review),
        (Decision::Block, s.published.block, s.replayed.block),
    ] {
        let _ = write!(
            out,
            "<tr><th><span class=\"dot\" style=\"background:{}\"></span>{}</th><td>{before}</td><td>{after}</td></tr>",
            decision_color(Some(decision)),
            decision.as_str()
        );
    }
    out.push_str("</tbody></table>");
    if !s.transitions.is_empty() {
        out.push_str("<p class=\"muted\">changes: ");
        let parts: Vec<String> = s
            .transitions
            .iter()
            .map(|(k, n)| format!("{} {n}", esc(k)))
            .collect();
        out.push_str(&parts.join(" · "));
        out.push_str("</p>");
    }
    out
}

/// Stacked bars of replayed decisions per time bucket, with published blocks as a line.
fn time_chart(report: &Report) -> String {
    let (Ok(from), Ok(to)) = (parse_ts(&report.range.from), parse_ts(&report.range.to)) else {
        return String::from("<p class=\"muted\">no time range</p>");
    };
    let span = (to - from).max(1);
    let bucket_ms = (span + TIME_BUCKETS - 1) / TIME_BUCKETS;
    let buckets = ((span + bucket_ms - 1) / bucket_ms).max(1) as usize;
    let mut counts = vec![[0u64; 3]; buckets];
    let mut published_blocks = vec![0u64; buckets];
    for e in &report.events {
        let Ok(ts) = parse_ts(&e.ts) else { continue };
        let b = (((ts - from) / bucket_ms).max(0) as usize).min(buckets - 1);
        let k = match e.replayed.decision.decision() {
            Some(Decision::Block) => 2,
            Some(Decision::Review) => 1,
            _ => 0,
        };
        counts[b][k] += 1;
        if e.published.as_ref().is_some_and(|p| is_block(&p.decision)) {
            published_blocks[b] += 1;
        }
    }
    let max = counts
        .iter()
        .map(|c| c.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1)
        // Four grid lines at whole numbers.
        .div_ceil(4)
        * 4;
    let (w, h, left, bottom, top) = (1100.0, 220.0, 48.0, 28.0, 10.0);
    let plot_h = h - bottom - top;
    let bar_w = (w - left - 10.0) / buckets as f64;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"events per time bucket by decision\">"
    );
    axis_y(&mut svg, left, top, plot_h, w, max as f64);
    for (i, c) in counts.iter().enumerate() {
        let x = left + i as f64 * bar_w;
        let mut y = top + plot_h;
        for (k, color) in [ALLOW, REVIEW, BLOCK].iter().enumerate() {
            let bar = c[k] as f64 / max as f64 * plot_h;
            if bar > 0.0 {
                y -= bar;
                let _ = write!(
                    svg,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"{color}\"><title>{} {}: {}</title></rect>",
                    (bar_w - 1.0).max(0.5),
                    esc(&crate::event::format_ts(from + i as i64 * bucket_ms)),
                    ["allow", "review", "block"][k],
                    c[k]
                );
            }
        }
    }
    let points: Vec<String> = published_blocks
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "{:.1},{:.1}",
                left + (i as f64 + 0.5) * bar_w,
                top + plot_h - *n as f64 / max as f64 * plot_h
            )
        })
        .collect();
    let _ = write!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#222\" stroke-width=\"1.5\" stroke-dasharray=\"4 2\"/>",
        points.join(" ")
    );
    for (i, label) in [(0usize, &report.range.from), (buckets, &report.range.to)] {
        let x = left + i as f64 * bar_w;
        let anchor = if i == 0 { "start" } else { "end" };
        let _ = write!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" class=\"tick\">{}</text>",
            h - 8.0,
            esc(label)
        );
    }
    svg.push_str("</svg>");
    svg.push_str(&legend(&[
        ("allow", ALLOW),
        ("review", REVIEW),
        ("block", BLOCK),
    ]));
    svg
}

fn axis_y(svg: &mut String, left: f64, top: f64, plot_h: f64, w: f64, max: f64) {
    for k in 0..=4 {
        let v = max * f64::from(k) / 4.0;
        let y = top + plot_h - plot_h * f64::from(k) / 4.0;
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"tick\">{}</text>",
            w - 10.0,
            left - 4.0,
            y + 4.0,
            format_count(v)
        );
    }
}

fn format_count(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract() == 0.0 || v >= 4.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn legend(items: &[(&str, &str)]) -> String {
    let mut out = String::from("<div class=\"legend\">");
    for (name, color) in items {
        let _ = write!(
            out,
            "<span><span class=\"dot\" style=\"background:{color}\"></span>{}</span>",
            esc(name)
        );
    }
    out.push_str("</div>");
    out
}

/// Published and replayed score histograms side by side, counts on a log scale.
fn score_chart(report: &Report) -> String {
    let mut published = [0u64; SCORE_BINS];
    let mut replayed = [0u64; SCORE_BINS];
    let bin = |score: f64| ((score * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1);
    for e in &report.events {
        if e.replayed.score.is_finite() {
            replayed[bin(f64::from(e.replayed.score).clamp(0.0, 1.0))] += 1;
        }
        if let Some(p) = e.published.as_ref().filter(|p| p.score.is_finite()) {
            published[bin(f64::from(p.score).clamp(0.0, 1.0))] += 1;
        }
    }
    let max = published
        .iter()
        .chain(replayed.iter())
        .copied()
        .max()
        .unwrap_or(0);
    let scale = |n: u64| (1.0 + n as f64).log10() / (1.0 + max as f64).log10().max(1e-9);
    let (w, h, left, bottom, top) = (380.0, 220.0, 30.0, 28.0, 10.0);
    let plot_h = h - bottom - top;
    let bin_w = (w - left - 10.0) / SCORE_BINS as f64;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"score histograms, published and replayed\">"
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"grid\"/>",
        w - 10.0,
        top + plot_h,
        top + plot_h
    );
    for i in 0..SCORE_BINS {
        for (k, (counts, color)) in [(&published, PUBLISHED), (&replayed, REPLAYED)]
            .iter()
            .enumerate()
        {
            let n = counts[i];
            if n == 0 {
                continue;
            }
            let bar = scale(n) * plot_h;
            let x = left + i as f64 * bin_w + k as f64 * bin_w / 2.0;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"{color}\"><title>{} {:.2}–{:.2}: {n}</title></rect>",
                top + plot_h - bar,
                (bin_w / 2.0 - 0.5).max(0.5),
                if k == 0 { "published" } else { "replayed" },
                i as f64 / SCORE_BINS as f64,
                (i + 1) as f64 / SCORE_BINS as f64,
            );
        }
    }
    for t in [0.0, 0.5, 1.0] {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"tick\">{t}</text>",
            left + t * (w - left - 10.0),
            h - 8.0
        );
    }
    for (t, decision) in [
        (report.input.thresholds[0], Decision::Review),
        (report.input.thresholds[1], Decision::Block),
    ] {
        let class = decision.as_str();
        let x = left + f64::from(t).clamp(0.0, 1.0) * (w - left - 10.0);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"{}\" stroke-dasharray=\"3 3\"><title>{class} threshold {t}</title></line>",
            top + plot_h,
            decision_color(Some(decision))
        );
    }
    svg.push_str("</svg>");
    svg.push_str(&legend(&[("published", PUBLISHED), ("replayed", REPLAYED)]));
    svg
}

/// The ten accounts with the most replayed blocks, with their published blocks.
fn accounts_chart(report: &Report) -> String {
    let mut blocks: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for e in &report.events {
        let replayed = is_block(&e.replayed.decision);
        let published = e.published.as_ref().is_some_and(|p| is_block(&p.decision));
        if replayed || published {
            let entry = blocks.entry(&e.account_id).or_default();
            entry.0 += u64::from(published);
            entry.1 += u64::from(replayed);
        }
    }
    let mut top: Vec<(&str, (u64, u64))> = blocks.into_iter().collect();
    top.sort_by(|a, b| {
        (b.1 .1.max(b.1 .0))
            .cmp(&a.1 .1.max(a.1 .0))
            .then(a.0.cmp(b.0))
    });
    top.truncate(10);
    if top.is_empty() {
        return String::from("<p class=\"muted\">no blocked events</p>");
    }
    let max = top
        .iter()
        .map(|(_, (p, r))| *p.max(r))
        .max()
        .unwrap_or(1)
        .max(1);
    let (w, row, left) = (380.0, 22.0, 110.0);
    let h = row * top.len() as f64 + 6.0;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"accounts with the most blocks\">"
    );
    for (i, (account, (published, replayed))) in top.iter().enumerate() {
        let y = i as f64 * row + 3.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" class=\"tick\">{}</text>",
            left - 6.0,
            y + 14.0,
            esc(account)
        );
        for (k, (n, color)) in [(*published, PUBLISHED), (*replayed, BLOCK)]
            .iter()
            .enumerate()
        {
            let len = *n as f64 / max as f64 * (w - left - 40.0);
            let _ = write!(
                svg,
                "<rect x=\"{left}\" y=\"{:.1}\" width=\"{len:.1}\" height=\"8\" fill=\"{color}\"><title>{} {}: {n}</title></rect>",
                y + 2.0 + k as f64 * 9.0,
                esc(account),
                if k == 0 { "published blocks" } else { "replayed blocks" },
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\">{replayed}</text>",
            left + *replayed.max(published) as f64 / max as f64 * (w - left - 40.0) + 4.0,
            y + 14.0
        );
    }
    svg.push_str("</svg>");
    svg.push_str(&legend(&[
        ("published blocks", PUBLISHED),
        ("replayed blocks", BLOCK),
    ]));
    svg
}

fn top_reason(reasons: &[Reason<'_>]) -> String {
    reasons.first().map_or_else(String::new, |r| {
        if r.name.is_empty() {
            r.feature.to_string()
        } else {
            r.name.to_string()
        }
    })
}

fn changed_table(changed: &[&EventReport]) -> String {
    if changed.is_empty() {
        return String::from("<p class=\"ok\">Every published decision was reproduced.</p>");
    }
    let mut out = String::from(
        "<table id=\"changed\"><thead><tr><th>time</th><th>event</th><th>account</th><th>published</th><th>replayed</th><th>top reason now</th></tr></thead><tbody>",
    );
    for e in changed.iter().take(MAX_ROWS) {
        let Some(p) = &e.published else { continue };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"tag {}\">{}</span> {}</td><td><span class=\"tag {}\">{}</span> {}</td><td>{}</td></tr>",
            esc(&e.ts),
            esc(&e.event_id),
            esc(&e.account_id),
            esc(&p.decision.shown()),
            esc(&p.decision.shown()),
            score_text(p.score),
            esc(&e.replayed.decision.shown()),
            esc(&e.replayed.decision.shown()),
            score_text(e.replayed.score),
            esc(&top_reason(&e.replayed.reasons)),
        );
    }
    out.push_str("</tbody></table>");
    if changed.len() > MAX_ROWS {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more in report.json</p>",
            changed.len() - MAX_ROWS
        );
    }
    out
}

/// Each blocked event with its path to the flagged entity, drawn as a chain of nodes.
fn blocked_list(blocked: &[&EventReport]) -> String {
    if blocked.is_empty() {
        return String::from("<p class=\"muted\">No event was blocked.</p>");
    }
    let mut out = String::from(
        "<table id=\"blocked\"><thead><tr><th>time</th><th>event</th><th>account</th><th>score</th><th>graph path</th></tr></thead><tbody>",
    );
    for e in blocked.iter().take(MAX_ROWS) {
        let graph = &e.replayed.graph;
        let path: Vec<&str> = graph.path.iter().map(|id| id.as_ref()).collect();
        let status = match graph.status {
            GraphStatus::Ok => "ok",
            GraphStatus::Unavailable => "unavailable",
            GraphStatus::Skipped => "skipped",
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.ts),
            esc(&e.event_id),
            esc(&e.account_id),
            score_text(e.replayed.score),
            path_svg(&path, status),
        );
    }
    out.push_str("</tbody></table>");
    if blocked.len() > MAX_ROWS {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more in report.json</p>",
            blocked.len() - MAX_ROWS
        );
    }
    out
}

fn path_svg(path: &[&str], status: &str) -> String {
    if path.is_empty() {
        let why = match status {
            "ok" => "no flagged entity within reach",
            "unavailable" => "graph unavailable",
            _ => "no graph",
        };
        return format!("<span class=\"muted\">{why}</span>");
    }
    let node_w = 92.0;
    let gap = 22.0;
    let w = path.len() as f64 * (node_w + gap) - gap + 2.0;
    let mut svg = format!(
        "<svg class=\"path\" width=\"{w:.0}\" height=\"26\" viewBox=\"0 0 {w:.0} 26\" role=\"img\" aria-label=\"graph path\">"
    );
    for (i, id) in path.iter().enumerate() {
        let x = 1.0 + i as f64 * (node_w + gap);
        let flagged = i + 1 == path.len();
        if i > 0 {
            let _ = write!(
                svg,
                "<line x1=\"{:.1}\" x2=\"{x:.1}\" y1=\"13\" y2=\"13\" stroke=\"#888\"/>",
                x - gap
            );
        }
        let label: String = if id.chars().count() > 13 {
            id.chars().take(12).chain(std::iter::once('…')).collect()
        } else {
            (*id).to_string()
        };
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"2\" width=\"{node_w}\" height=\"22\" rx=\"11\" fill=\"{}\" stroke=\"{}\"><title>{}{}</title></rect><text x=\"{:.1}\" y=\"17\" text-anchor=\"middle\" class=\"node{}\">{}</text>",
            if flagged { "#fbe3e1" } else { "#eef2f7" },
            if flagged { BLOCK } else { "#9aa8ba" },
            esc(id),
            if flagged { " (flagged)" } else { "" },
            x + node_w / 2.0,
            if flagged { " flagged" } else { "" },
            esc(&label)
        );
    }
    svg.push_str("</svg>");
    svg
}

const CSS: &str = r#"
:root{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2433;background:#f5f7fa}
body{margin:0 auto;max-width:1200px;padding:16px 24px}
h1{margin:0 0 4px;font-size:24px}h2{font-size:15px;margin:0 0 10px}
.range{font-size:17px;margin:2px 0}.muted{color:#6b778a;font-weight:normal;font-size:13px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:14px 0}
.card{background:#fff;border-radius:8px;padding:10px 16px;min-width:130px;box-shadow:0 1px 2px #0002}
.card .value{font-size:24px;font-weight:600}.card .label{color:#6b778a;font-size:12px}
.card.alert .value{color:#d0463c}
.grid{display:grid;grid-template-columns:1fr 1fr 1fr;gap:14px;margin-bottom:14px}
.panel{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px #0002;margin-bottom:14px;overflow-x:auto}
.grid .panel{margin-bottom:0}.panel.wide{grid-column:1 / -1}
svg{width:100%;height:auto}svg.path{width:auto}
.tick{font-size:10px;fill:#6b778a}.grid line,line.grid{stroke:#e3e8ef}
.node{font-size:10px;fill:#1d2433}.node.flagged{fill:#a3261d;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #edf0f4;white-space:nowrap}
thead th{color:#6b778a;font-weight:600}
.decisions td{text-align:right;font-variant-numeric:tabular-nums}
.dot{display:inline-block;width:10px;height:10px;border-radius:5px;margin-right:6px;vertical-align:-1px}
.legend{font-size:12px;color:#6b778a;display:flex;gap:14px;margin-top:4px}
.tag{display:inline-block;border-radius:4px;padding:0 6px;color:#fff;font-size:12px}
.tag.allow{background:#4c9f70}.tag.review{background:#e0a030}.tag.block{background:#d0463c}
.ok{color:#2e7d4f;font-weight:600}
.filter{margin:0 0 8px;padding:4px 8px;width:320px;border:1px solid #cfd6e0;border-radius:4px}
footer{margin:10px 0 30px}
"#;

/// Filters a table's rows by the text typed above it.
const SCRIPT: &str = r#"
document.querySelectorAll('input.filter').forEach(function (input) {
  var table = document.getElementById(input.getAttribute('data-table'));
  if (!table) { return; }
  input.addEventListener('input', function () {
    var needle = input.value.toLowerCase();
    table.querySelectorAll('tbody tr').forEach(function (row) {
      row.style.display = row.textContent.toLowerCase().indexOf(needle) >= 0 ? '' : 'none';
    });
  });
});
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_input_is_escaped() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn a_path_ends_at_the_flagged_entity() {
        let svg = path_svg(&["A-1", "D-7", "A-9"], "ok");
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("A-9 (flagged)"), "{svg}");
        assert!(path_svg(&[], "unavailable").contains("graph unavailable"));
    }
}
