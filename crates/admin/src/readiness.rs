//! Readiness: every member synced once, or reported once the sync timeout has passed.

use std::time::Duration;

use bowline_views::MemberStatus;
use tokio::time::Instant;

/// Decides `/readyz`.
#[derive(Clone, Debug)]
pub struct Readiness {
    started: Instant,
    timeout: Duration,
}

/// The answer of `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Ready to serve.
    pub ready: bool,
    /// What to tell the caller.
    pub text: String,
}

impl Readiness {
    /// Starts the clock: members have `timeout` to complete their first sync.
    pub fn new(timeout: Duration) -> Self {
        Self {
            started: Instant::now(),
            timeout,
        }
    }

    /// Ready once every member completed its first sync. A member still unsynced after the
    /// timeout no longer holds readiness back; it is named in the answer instead.
    pub fn check(&self, members: &[MemberStatus]) -> Report {
        let waiting: Vec<String> = members
            .iter()
            .filter(|m| !m.synced)
            .map(|m| match &m.source_error {
                Some(e) => format!("{} ({e})", m.name),
                None => m.name.to_string(),
            })
            .collect();
        if waiting.is_empty() {
            return Report {
                ready: true,
                text: "ready\n".into(),
            };
        }
        let elapsed = self.started.elapsed();
        if elapsed >= self.timeout {
            Report {
                ready: true,
                text: format!(
                    "ready; members not synced after the {}s sync timeout: {}\n",
                    self.timeout.as_secs(),
                    waiting.join(", ")
                ),
            }
        } else {
            Report {
                ready: false,
                text: format!("waiting for the first sync of: {}\n", waiting.join(", ")),
            }
        }
    }
}
