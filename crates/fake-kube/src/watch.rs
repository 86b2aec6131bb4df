//! Watch responses: newline-delimited JSON events, replayed history, bookmarks, 410 Expired.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures::stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, Interval};

use crate::resources::ResourceDef;
use crate::selector::Selector;
use crate::status::ApiError;
use crate::store::{Change, ChangeType, Notice, WatchStart};

/// What a watch request asked for.
pub(crate) struct WatchRequest {
    pub def: ResourceDef,
    pub version: String,
    pub namespace: Option<String>,
    pub selector: Selector,
    /// Objects as `PartialObjectMetadata`.
    pub metadata_only: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    pub bookmark_interval: Duration,
    /// `timeoutSeconds`: the stream ends after it.
    pub timeout: Option<Duration>,
}

impl WatchRequest {
    /// The watch event for a change, if this watch sees it. With a label selector, an object
    /// that starts matching is ADDED and one that stops matching is DELETED.
    fn event(&self, change: &Change) -> Option<Value> {
        let key = &change.key;
        if key.group != self.def.group
            || key.plural != self.def.plural
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != key.namespace)
        {
            return None;
        }
        let now = self.selector.matches(&change.object);
        let before = change
            .previous
            .as_ref()
            .is_some_and(|p| self.selector.matches(p));
        let kind = match (change.change, before, now) {
            (ChangeType::Added, _, true) | (ChangeType::Modified, false, true) => "ADDED",
            (ChangeType::Modified, true, true) => "MODIFIED",
            (ChangeType::Modified, true, false) | (ChangeType::Deleted, _, true) => "DELETED",
            _ => return None,
        };
        let object = render(&self.def, &self.version, &change.object, self.metadata_only);
        Some(json!({ "type": kind, "object": object }))
    }

    fn bookmark(&self, resource_version: u64) -> Value {
        let (api_version, kind) = if self.metadata_only {
            (
                "meta.k8s.io/v1".to_owned(),
                "PartialObjectMetadata".to_owned(),
            )
        } else {
            (self.def.api_version(&self.version), self.def.kind.clone())
        };
        json!({
            "type": "BOOKMARK",
            "object": {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": { "resourceVersion": resource_version.to_string() },
            },
        })
    }
}

/// An object as served at `version`: its `apiVersion` and `kind`, or only its metadata.
pub(crate) fn render(
    def: &ResourceDef,
    version: &str,
    object: &Value,
    metadata_only: bool,
) -> Value {
    if metadata_only {
        return json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "PartialObjectMetadata",
            "metadata": object["metadata"],
        });
    }
    let mut object = object.clone();
    object["apiVersion"] = json!(def.api_version(version));
    object["kind"] = json!(def.kind);
    object
}

/// One line of a watch response: `type` first, then `object`, the order the API server
/// writes (its `WatchEvent` struct's), which clients reading the object as raw text rely on.
fn event_line(event: &Value) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        type_: &'a Value,
        object: &'a Value,
    }
    let line = Line {
        type_: &event["type"],
        object: &event["object"],
    };
    let mut bytes = serde_json::to_vec(&line).expect("events serialize");
    bytes.push(b'\n');
    bytes
}

fn error_event(error: &ApiError) -> Value {
    json!({ "type": "ERROR", "object": error.to_status() })
}

/// The state of one watch stream.
struct Watch {
    request: WatchRequest,
    pending: VecDeque<Value>,
    notices: broadcast::Receiver<Notice>,
    /// The latest resourceVersion this stream has seen (of any resource): what bookmarks
    /// carry, so a bookmark never runs ahead of events not yet sent.
    seen: u64,
    ticker: Interval,
    deadline: Option<Instant>,
    /// The stream ends once `pending` is drained.
    finished: bool,
}

impl Watch {
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Bytes::from(event_line(&event)));
            }
            if self.finished {
                return None;
            }
            let deadline = self.deadline;
            tokio::select! {
                biased;
                notice = self.notices.recv() => self.on_notice(notice),
                _ = self.ticker.tick(), if self.request.bookmarks => {
                    self.pending.push_back(self.request.bookmark(self.seen));
                }
                () = sleep_until(deadline) => return None,
            }
        }
    }

    fn on_notice(&mut self, notice: Result<Notice, RecvError>) {
        match notice {
            Ok(Notice::Change(change)) => {
                self.seen = self.seen.max(change.rv);
                if let Some(event) = self.request.event(&change) {
                    self.pending.push_back(event);
                }
            }
            Ok(Notice::Uninstalled { group, plural }) => {
                self.finished |=
                    group == self.request.def.group && plural == self.request.def.plural;
            }
            Err(RecvError::Lagged(_)) => {
                let message = format!("too old resource version: {}", self.seen);
                self.pending
                    .push_back(error_event(&ApiError::expired(message)));
                self.finished = true;
            }
            Err(RecvError::Closed) => self.finished = true,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The body of a watch response, starting from `start` at resourceVersion `current`.
pub(crate) fn watch_body(
    request: WatchRequest,
    start: WatchStart,
    notices: broadcast::Receiver<Notice>,
    current: u64,
) -> Body {
    let (pending, finished) = match start {
        WatchStart::Events(events) => {
            let pending = events.iter().filter_map(|c| request.event(c)).collect();
            (pending, false)
        }
        WatchStart::Expired(message) => {
            let events = VecDeque::from([error_event(&ApiError::expired(message))]);
            (events, true)
        }
    };
    let period = request.bookmark_interval.max(Duration::from_millis(10));
    let watch = Watch {
        deadline: request.timeout.map(|t| Instant::now() + t),
        ticker: tokio::time::interval_at(Instant::now() + period, period),
        request,
        pending,
        notices,
        seen: current,
        finished,
    };
    let lines = stream::unfold(watch, |mut watch| async move {
        let line = watch.next_line().await?;
        Some((Ok::<_, std::convert::Infallible>(line), watch))
    });
    Body::from_stream(lines)
}
