//! Percentiles of latencies, and what `/proc` says about a process (RSS, CPU time).

use std::time::Duration;

/// The `p`-th percentile (0 < p ≤ 1) by nearest rank of `samples`, which it sorts; `None`
/// when there are none.
pub fn percentile(samples: &mut [Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    // Nearest rank: the smallest value with at least p·n samples at or below it.
    let rank = (p * samples.len() as f64).ceil() as usize;
    Some(samples[rank.clamp(1, samples.len()) - 1])
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User plus system CPU time of `pid` in clock ticks (`utime` + `stime` of `/proc/<pid>/stat`).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_ticks(&stat)
}

fn parse_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 when it cannot be asked).
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Milliseconds with one decimal, for the table.
pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

/// A size in KiB as MiB with one decimal, for the table.
pub fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut hundred: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(
            percentile(&mut hundred, 0.5),
            Some(Duration::from_millis(50))
        );
        assert_eq!(
            percentile(&mut hundred, 0.99),
            Some(Duration::from_millis(99))
        );
        assert_eq!(
            percentile(&mut hundred, 1.0),
            Some(Duration::from_millis(100))
        );
        let mut twenty: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(
            percentile(&mut twenty, 0.5),
            Some(Duration::from_millis(10))
        );
        assert_eq!(
            percentile(&mut twenty, 0.99),
            Some(Duration::from_millis(20))
        );
        let mut one = vec![Duration::from_millis(7)];
        assert_eq!(percentile(&mut one, 0.01), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&mut [], 0.5), None);
    }

    #[test]
    fn proc_fields() {
        let stat = "4242 (bowline (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    731 129 0 0 20 0 9 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(parse_ticks(stat), Some(731 + 129));
        let status = "Name:\tbowline\nVmPeak:\t  200 kB\nVmRSS:\t   123456 kB\nThreads: 9\n";
        assert_eq!(parse_rss(status), Some(123_456));
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
