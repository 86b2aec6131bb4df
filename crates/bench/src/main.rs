//! `bowline-bench-e2e`: runs the end-to-end scenarios against a `bowline` binary and prints a
//! markdown table row per scenario (see `scripts/bench-e2e` and `docs/BENCHMARKS.md`).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{collections::BTreeMap, path::PathBuf, time::Duration, time::Instant};

use bowline_bench::{
    ads::Protocol,
    members::Mode,
    run::{self, Baseline, Options, Outcome, Scenario},
    scenario::Size,
    stats::{mib, ms, percentile},
};
use clap::Parser;

/// End-to-end benchmark of `bowline run`. Without size flags both 10×100×100 and 10×1000×10
/// run; a size flag alone picks one size with the other dimensions of 10×100×100.
#[derive(Parser, Debug)]
struct Args {
    /// Members (M).
    #[arg(long)]
    members: Option<usize>,
    /// Services per member (S).
    #[arg(long)]
    services: Option<usize>,
    /// Endpoints per service and member (E).
    #[arg(long)]
    endpoints: Option<usize>,
    /// Stream counts (N), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    streams: Vec<usize>,
    /// Member modes, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Mode::Manifest, Mode::Kube])]
    mode: Vec<Mode>,
    /// ADS protocols, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Protocol::Sotw, Protocol::Delta])]
    protocol: Vec<Protocol>,
    /// Changes per scenario (cycling add, remove, readiness flip).
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Pause after each change has reached every stream.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Streams per HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    per_connection: usize,
    /// Longest wait for the cold start or one change to reach every stream.
    #[arg(long, default_value = "300s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// CPU share (of one CPU, over a second) under which bowline counts as quiet after its
    /// start (its MCS resync keeps it busy even when nothing changes).
    #[arg(long, default_value_t = 0.3)]
    quiet: f64,
    /// The bowline binary (default: `bowline` next to this one).
    #[arg(long)]
    bowline: Option<PathBuf>,
    /// Keep each run's directory (members, bowline.yaml, bowline.log).
    #[arg(long)]
    keep: bool,
}

impl Args {
    fn sizes(&self) -> Vec<Size> {
        if self.members.is_none() && self.services.is_none() && self.endpoints.is_none() {
            return vec![
                Size {
                    members: 10,
                    services: 100,
                    endpoints: 100,
                },
                Size {
                    members: 10,
                    services: 1000,
                    endpoints: 10,
                },
            ];
        }
        vec![Size {
            members: self.members.unwrap_or(10),
            services: self.services.unwrap_or(100),
            endpoints: self.endpoints.unwrap_or(100),
        }]
    }
}

fn header() {
    println!(
        "| mode | M×S×E | protocol | N | cold start: all N served | quiet after | RSS synced, no stream | \
         RSS with N | change → each stream p50 / p99 / max | change → last stream p50 / max | \
         CPU s per change | idle CPU s/s | driver CPU s per change |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

fn seconds(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

fn row(scenario: &Scenario, baseline: Option<&Baseline>, outcome: &Outcome) {
    let mut each = outcome.per_stream.clone();
    let mut last = outcome.last_stream.clone();
    let p = |v: &mut Vec<Duration>, q| percentile(v, q).map_or("-".into(), ms);
    println!(
        "| {:?} | {} | {:?} | {} | {} | {} | {} | {} MiB | {} / {} / {} ms | {} / {} ms | {:.3} | {:.3} | {:.3} |",
        scenario.mode,
        scenario.size,
        scenario.protocol,
        scenario.streams,
        seconds(Some(outcome.cold_start)),
        seconds(outcome.quiet),
        baseline.map_or("-".into(), |b| format!("{} MiB", mib(b.rss_kib))),
        mib(outcome.rss_kib),
        p(&mut each, 0.5),
        p(&mut each, 0.99),
        p(&mut each, 1.0),
        p(&mut last, 0.5),
        p(&mut last, 1.0),
        outcome.cpu_per_change,
        outcome.idle_cpu,
        outcome.driver_cpu_per_change,
    );
}

async fn main_async(args: Args) -> anyhow::Result<()> {
    let bowline = match &args.bowline {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("bowline"),
    };
    let options = Options {
        bowline,
        changes: args.changes,
        settle: args.settle,
        per_connection: args.per_connection,
        timeout: args.timeout,
        keep: args.keep,
        quiet: args.quiet,
    };
    let all = Instant::now();
    let mut baselines: BTreeMap<(String, String), Baseline> = BTreeMap::new();
    header();
    for &mode in &args.mode {
        for size in args.sizes() {
            let key = (format!("{mode:?}"), size.to_string());
            match run::baseline(mode, size, &options).await {
                Ok(b) => {
                    eprintln!(
                        "baseline {mode:?} {size}: one stream served after {}, quiet after {}, \
                         RSS {} MiB",
                        seconds(Some(b.first_served)),
                        seconds(b.quiet),
                        mib(b.rss_kib)
                    );
                    baselines.insert(key.clone(), b);
                }
                Err(e) => eprintln!("baseline {mode:?} {size}: {e:#}"),
            }
            for &streams in &args.streams {
                for &protocol in &args.protocol {
                    let scenario = Scenario {
                        mode,
                        size,
                        streams,
                        protocol,
                    };
                    let started = Instant::now();
                    match run::measure(scenario, &options).await {
                        Ok(outcome) => row(&scenario, baselines.get(&key), &outcome),
                        Err(e) => println!(
                            "| {mode:?} | {size} | {protocol:?} | {streams} | failed: {e:#} |"
                        ),
                    }
                    eprintln!(
                        "{mode:?} {size} {protocol:?} N={streams}: {:.0} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }
    eprintln!("all scenarios: {:.0} s", all.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(main_async(args))
}
