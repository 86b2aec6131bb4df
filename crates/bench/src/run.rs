//! One run: members generated, `bowline run` spawned on them, streams connected, changes
//! made and timed, `/proc` read.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    ads::{self, Protocol, Report, Target},
    members::{Members, Mode, Ports},
    scenario::{Seen, Size, Variant, changes},
    stats::{cpu_ticks, rss_kib, ticks_per_second},
};

/// What is measured: members, their size, streams and protocol.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// How members are served.
    pub mode: Mode,
    /// M × S × E.
    pub size: Size,
    /// N.
    pub streams: usize,
    /// SotW or delta.
    pub protocol: Protocol,
}

/// How it is measured.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `bowline` binary.
    pub bowline: PathBuf,
    /// Changes per run.
    pub changes: usize,
    /// Pause after each change has reached every stream.
    pub settle: Duration,
    /// Streams per HTTP/2 connection.
    pub per_connection: usize,
    /// Longest wait for one change (or the cold start) to reach every stream.
    pub timeout: Duration,
    /// The CPU share (of one CPU, over a second) under which the process counts as quiet
    /// after its start: the MCS resync keeps it above zero.
    pub quiet: f64,
    /// Keep the run directories (printed on stderr) instead of deleting them.
    pub keep: bool,
}

/// The figures of a run without streams.
#[derive(Clone, Copy, Debug)]
pub struct Baseline {
    /// From spawn until one stream got the full assignment.
    pub first_served: Duration,
    /// From spawn until the process went quiet (`None`: it never did).
    pub quiet: Option<Duration>,
    /// RSS once quiet, the one stream closed.
    pub rss_kib: u64,
}

/// The figures of a run with N streams.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// From spawn until every stream got the full assignment.
    pub cold_start: Duration,
    /// From spawn until the process went quiet (`None`: it never did).
    pub quiet: Option<Duration>,
    /// RSS with the N streams connected, once quiet.
    pub rss_kib: u64,
    /// Change to reception, every (change, stream).
    pub per_stream: Vec<Duration>,
    /// Change to reception by the last stream, per change.
    pub last_stream: Vec<Duration>,
    /// CPU seconds of the process over the change rounds (settle pauses included) per change.
    pub cpu_per_change: f64,
    /// CPU seconds this driver used per change (its N streams decoding what they receive,
    /// and the fake API servers in kube mode): it shares the machine with Bowline.
    pub driver_cpu_per_change: f64,
    /// CPU seconds per second of the quiet process before the changes.
    pub idle_cpu: f64,
}

/// The spawned `bowline run`; killed when dropped.
struct Bowline {
    child: Child,
    log: PathBuf,
}

impl Bowline {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("bowline exited ({status}); see {}", self.log.display());
        }
        Ok(())
    }
}

impl Drop for Bowline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Members, configuration and the spawned process of one run.
struct Started {
    /// Dropped (killed) first, before its members go away.
    bowline: Bowline,
    members: Members,
    ports: Ports,
    spawned: Instant,
    /// Deleted when dropped (after the process, which is dropped first).
    _dir: tempfile::TempDir,
}

impl Started {
    /// Ends the run: the process killed, then the members and the directory gone, all before
    /// returning (a drop would leave the fake API servers' teardown to their tasks, running
    /// on the driver's threads during the next run's cold start).
    async fn finish(self) {
        let Self {
            bowline,
            members,
            _dir: dir,
            ..
        } = self;
        drop(bowline);
        members.stop().await;
        drop(dir);
    }
}

async fn start(mode: Mode, size: Size, options: &Options) -> anyhow::Result<Started> {
    size.check().map_err(anyhow::Error::msg)?;
    let mut dir = tempfile::Builder::new()
        .prefix("bowline-bench-")
        .tempdir()?;
    if options.keep {
        dir.disable_cleanup(true);
        log_line(&format!("run directory kept: {}", dir.path().display()));
    }
    let members = Members::create(mode, size, dir.path()).await?;
    let ports = Ports::free()?;
    let config = members.write_config(dir.path(), &ports)?;
    let log = dir.path().join("bowline.log");
    let out = File::create(&log)?;
    let spawned = Instant::now();
    let child = Command::new(&options.bowline)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("spawning {}", options.bowline.display()))?;
    Ok(Started {
        members,
        bowline: Bowline { child, log },
        ports,
        spawned,
        _dir: dir,
    })
}

#[allow(clippy::print_stderr)]
fn log_line(line: &str) {
    eprintln!("{line}");
}

fn target(size: Size) -> Target {
    Target {
        cluster: size.cluster_name(),
        added: size.added_address(),
        flipped: size.flipped_address(),
    }
}

/// Waits until each of the `n` streams reported `expected` at or after `since`; returns each
/// stream's delay from `since`.
async fn wait_all(
    reports: &mut mpsc::UnboundedReceiver<Report>,
    n: usize,
    expected: Seen,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got: Vec<Option<Duration>> = vec![None; n];
    let mut last: Vec<Option<Seen>> = vec![None; n];
    let mut left = n;
    while left > 0 {
        let report = match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Some(report)) => report,
            Ok(None) => bail!("every stream ended"),
            Err(_) => {
                let missing = got.iter().position(Option::is_none).unwrap_or(0);
                bail!(
                    "{left} of {n} streams did not receive {expected:?} within {timeout:?}; \
                     stream {missing} last saw {:?}",
                    last[missing]
                );
            }
        };
        last[report.stream] = Some(report.seen);
        if report.seen == expected && report.at >= since && got[report.stream].is_none() {
            got[report.stream] = Some(report.at - since);
            left -= 1;
        }
    }
    Ok(got.into_iter().flatten().collect())
}

/// Waits (at most two minutes from `since`) until the process used less than `threshold` of
/// a CPU over a second; returns when, from `since`.
async fn quiet(pid: u32, since: Instant, threshold: f64) -> Option<Duration> {
    let ticks = ticks_per_second() as f64;
    let mut before = cpu_ticks(pid)?;
    while since.elapsed() < Duration::from_secs(120) {
        let window = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = cpu_ticks(pid)?;
        if ((now - before) as f64 / ticks) < threshold * window.elapsed().as_secs_f64() {
            return Some(since.elapsed());
        }
        before = now;
    }
    None
}

fn drain(reports: &mut mpsc::UnboundedReceiver<Report>) {
    while reports.try_recv().is_ok() {}
}

fn close(streams: Vec<JoinHandle<()>>) {
    for stream in streams {
        stream.abort();
    }
}

/// Spawns Bowline with one stream: when it is first served, when it goes quiet, and its RSS
/// then with the stream closed.
pub async fn baseline(mode: Mode, size: Size, options: &Options) -> anyhow::Result<Baseline> {
    let mut started = start(mode, size, options).await?;
    let (tx, mut reports) = mpsc::unbounded_channel();
    let target = target(size);
    let streams = ads::open(&started.ports.xds, 1, 1, Protocol::Sotw, &target, tx).await?;
    let expected = size.expected(Variant::default());
    let first = wait_all(&mut reports, 1, expected, started.spawned, options.timeout).await;
    let first_served = first.context("cold start")?[0];
    close(streams);
    let pid = started.bowline.pid();
    let quiet = quiet(pid, started.spawned, options.quiet).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    started.bowline.alive()?;
    let rss_kib = rss_kib(pid).unwrap_or(0);
    started.finish().await;
    Ok(Baseline {
        first_served,
        quiet,
        rss_kib,
    })
}

/// Spawns Bowline, connects the streams from the start, then makes and times the changes.
pub async fn measure(scenario: Scenario, options: &Options) -> anyhow::Result<Outcome> {
    let Scenario {
        mode,
        size,
        streams: n,
        protocol,
    } = scenario;
    let begun = Instant::now();
    let mut started = start(mode, size, options).await?;
    log_line(&format!(
        "members generated in {:.1} s",
        (started.spawned - begun).as_secs_f64()
    ));
    let pid = started.bowline.pid();
    let (tx, mut reports) = mpsc::unbounded_channel();
    let target = target(size);
    let xds = started.ports.xds.clone();
    let streams = ads::open(&xds, n, options.per_connection, protocol, &target, tx).await?;
    let initial = size.expected(Variant::default());
    let served = wait_all(&mut reports, n, initial, started.spawned, options.timeout)
        .await
        .context("cold start")?;
    let cold_start = served.into_iter().max().unwrap_or_default();
    let quiet = quiet(pid, started.spawned, options.quiet).await;
    started.bowline.alive()?;
    let rss = rss_kib(pid).unwrap_or(0);
    let ticks = ticks_per_second() as f64;
    let idle_from = (cpu_ticks(pid).unwrap_or(0), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_ticks = cpu_ticks(pid).unwrap_or(0) - idle_from.0;
    let idle_cpu = idle_ticks as f64 / ticks / idle_from.1.elapsed().as_secs_f64();

    let (mut per_stream, mut last_stream) = (Vec::new(), Vec::new());
    let cpu_before = cpu_ticks(pid).unwrap_or(0);
    let driver_before = cpu_ticks(std::process::id()).unwrap_or(0);
    for (i, (change, variant)) in changes(options.changes).into_iter().enumerate() {
        drain(&mut reports);
        let at = started.members.change(size, variant)?;
        let delays = wait_all(&mut reports, n, size.expected(variant), at, options.timeout)
            .await
            .with_context(|| format!("change {i} ({change:?})"))?;
        last_stream.push(delays.iter().copied().max().unwrap_or_default());
        per_stream.extend(delays);
        tokio::time::sleep(options.settle).await;
    }
    let cpu = (cpu_ticks(pid).unwrap_or(0) - cpu_before) as f64 / ticks;
    let driver_cpu = (cpu_ticks(std::process::id()).unwrap_or(0) - driver_before) as f64 / ticks;
    log_line(&format!(
        "changes done {:.1} s after the spawn",
        started.spawned.elapsed().as_secs_f64()
    ));
    started.bowline.alive()?;
    close(streams);
    started.finish().await;
    Ok(Outcome {
        cold_start,
        quiet,
        rss_kib: rss,
        per_stream,
        last_stream,
        cpu_per_change: cpu / options.changes.max(1) as f64,
        driver_cpu_per_change: driver_cpu / options.changes.max(1) as f64,
        idle_cpu,
    })
}
