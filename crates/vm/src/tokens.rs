//! Registration tokens: bearer tokens scoped to one WorkloadGroup in one namespace, issued by
//! `bowline vm token` and stored hashed, and the rule deciding who may register what.
//!
//! A token reads `bwl.<id>.<secret>`: `id` is 16 hex digits naming the record, `secret` 32
//! random bytes (base64url). The store, `<dataDir>/vm-tokens.json`, holds per token its id,
//! scope, issue and expiry times and the SHA-256 of the secret, never the secret itself.
//! The file is written atomically and re-read when it changes, so a running server sees
//! tokens issued later by the command line. With replicas on Kubernetes the same text is kept
//! in a Secret instead: the composition root reads it and pushes it into a
//! [`TokenStore::pushed`], and writers store [`add_record`]'s result.

use std::{
    fmt, fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jiff::Timestamp;
use parking_lot::Mutex;
use ring::{
    digest::{SHA256, digest},
    rand::{SecureRandom, SystemRandom},
};
use serde::{Deserialize, Serialize};

/// The store's file name, in the data directory.
pub const STORE_FILE: &str = "vm-tokens.json";
/// The prefix of every token.
const PREFIX: &str = "bwl";

/// What a token allows: registering VMs of one group in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The token's id (safe to log).
    pub id: String,
    /// The WorkloadGroup.
    pub group: String,
    /// Its namespace.
    pub namespace: String,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token {} (group {:?} in namespace {:?})",
            self.id, self.group, self.namespace
        )
    }
}

/// One issued token, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRecord {
    /// Id: the token's middle part.
    pub id: String,
    /// WorkloadGroup it may register.
    pub group: String,
    /// Namespace of that group.
    pub namespace: String,
    /// When it was issued.
    pub issued: Timestamp,
    /// When it stops being accepted.
    pub expires: Timestamp,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    tokens: Vec<TokenRecord>,
}

/// Why a token is not accepted, or cannot be issued.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `bwl.<id>.<secret>`.
    #[error("the bearer token is malformed (expected bwl.<id>.<secret> from `bowline vm token`)")]
    Malformed,
    /// No such token (or its secret does not match).
    #[error("the bearer token is unknown to this control plane (id {id})")]
    Unknown {
        /// The id presented.
        id: String,
    },
    /// The token expired.
    #[error("the bearer token {id} expired at {expired}")]
    Expired {
        /// Its id.
        id: String,
        /// When.
        expired: Timestamp,
    },
    /// The scope cannot be used.
    #[error("{0}")]
    Scope(String),
    /// The store cannot be read or written.
    #[error("{store}: {message}")]
    Store {
        /// The store: its file, or the Secret and key.
        store: String,
        /// What went wrong.
        message: String,
    },
}

/// A new token for `group` in `namespace`, valid for `ttl` from `now`: the token to give
/// the VM, and the record to store.
pub fn issue(
    group: &str,
    namespace: &str,
    ttl: Duration,
    now: Timestamp,
) -> Result<(String, TokenRecord), TokenError> {
    for (what, value) in [("group", group), ("namespace", namespace)] {
        if value.is_empty() {
            return Err(TokenError::Scope(format!("the {what} must not be empty")));
        }
    }
    let rng = SystemRandom::new();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    let random = |buf: &mut [u8]| {
        rng.fill(buf)
            .map_err(|_| TokenError::Scope("no randomness".into()))
    };
    random(&mut id)?;
    random(&mut secret)?;
    let id = hex(&id);
    let expires = now
        .checked_add(
            jiff::SignedDuration::try_from(ttl).map_err(|e| TokenError::Scope(e.to_string()))?,
        )
        .map_err(|e| TokenError::Scope(format!("ttl {ttl:?}: {e}")))?;
    let token = format!("{PREFIX}.{id}.{}", URL_SAFE_NO_PAD.encode(secret));
    let record = TokenRecord {
        id,
        group: group.to_string(),
        namespace: namespace.to_string(),
        issued: now,
        expires,
        secret_sha256: hex(digest(&SHA256, &secret).as_ref()),
    };
    Ok((token, record))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The records of a token store file's text (`{"tokens": [...]}`).
pub fn parse_store(text: &str) -> Result<Vec<TokenRecord>, String> {
    serde_json::from_str::<StoreFile>(text)
        .map(|file| file.tokens)
        .map_err(|e| format!("not a token store: {e}"))
}

/// The text of a token store holding `tokens` (pretty JSON, ending with a newline).
pub fn render_store(tokens: Vec<TokenRecord>) -> String {
    let mut text =
        serde_json::to_string_pretty(&StoreFile { tokens }).expect("token records serialize");
    text.push('\n');
    text
}

/// A store's text (`None`: no store yet) with `record` added and the records expired
/// before `now` dropped: what a writer stores next.
pub fn add_record(
    text: Option<&str>,
    record: TokenRecord,
    now: Timestamp,
) -> Result<String, String> {
    let mut tokens = text.map(parse_store).transpose()?.unwrap_or_default();
    tokens.retain(|r| r.expires > now && r.id != record.id);
    tokens.push(record);
    Ok(render_store(tokens))
}

/// A token store, cached in memory: a file of the data directory re-read when it changes
/// (its modification time, length or inode), or records pushed by whoever reads a store
/// kept elsewhere (a Kubernetes Secret, read by the composition root: [`TokenStore::pushed`]).
pub struct TokenStore {
    backend: Backend,
    /// The records last read (or the error reading them) and the file's stamp then; a lock
    /// because `verify` runs on every registering stream and the store may change under it.
    cache: Mutex<Cached>,
}

enum Backend {
    File(PathBuf),
    Pushed {
        name: String,
        /// Called when a presented token's id is unknown: the reader may look again sooner.
        on_unknown: Box<dyn Fn() + Send + Sync>,
    },
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("store", &self.describe())
            .finish_non_exhaustive()
    }
}

type Stamp = (SystemTime, u64, u64);
/// A file's stamp when read (none for a pushed store) and its records, or why they are unusable.
type Cached = (Option<Stamp>, Result<Vec<TokenRecord>, String>);

impl TokenStore {
    /// The store of `data_dir` (read lazily).
    pub fn open(data_dir: &Path) -> Self {
        Self {
            backend: Backend::File(data_dir.join(STORE_FILE)),
            cache: Mutex::new((None, Ok(Vec::new()))),
        }
    }

    /// A store whose text is given by [`replace`](Self::replace), named `name` in errors
    /// (e.g. `Secret bowline-system/bowline-vm-tokens key vm-tokens.json`); `on_unknown` is
    /// called when a presented token's id is not among the records (the reader may then
    /// look again before its next periodic read). Empty until the first `replace`.
    pub fn pushed(name: impl Into<String>, on_unknown: impl Fn() + Send + Sync + 'static) -> Self {
        Self {
            backend: Backend::Pushed {
                name: name.into(),
                on_unknown: Box::new(on_unknown),
            },
            cache: Mutex::new((None, Ok(Vec::new()))),
        }
    }

    /// The store's file, when it is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::File(path) => Some(path),
            Backend::Pushed { .. } => None,
        }
    }

    /// The store as errors name it: its file, or the name it was given.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::File(path) => path.display().to_string(),
            Backend::Pushed { name, .. } => name.clone(),
        }
    }

    fn error(&self, message: impl fmt::Display) -> TokenError {
        TokenError::Store {
            store: self.describe(),
            message: message.to_string(),
        }
    }

    /// Replaces the records of a [`pushed`](Self::pushed) store with those of `text`
    /// (`None`: there is no store, so no token). Text that is not a store is kept as the
    /// error every verification then returns, naming the store, until the next replace.
    pub fn replace(&self, text: Option<&str>) -> Result<(), TokenError> {
        let records = text
            .map(parse_store)
            .transpose()
            .map(Option::unwrap_or_default);
        let result = records.as_ref().map(|_| ()).map_err(|e| self.error(e));
        *self.cache.lock() = (None, records);
        result
    }

    /// Every stored record, re-reading a file store if it changed.
    pub fn records(&self) -> Result<Vec<TokenRecord>, TokenError> {
        use std::os::unix::fs::MetadataExt;
        let Backend::File(path) = &self.backend else {
            return self.cache.lock().1.clone().map_err(|e| self.error(e));
        };
        let stamp = match fs::metadata(path) {
            Ok(m) => Some((m.modified().map_err(|e| self.error(e))?, m.len(), m.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.error(e)),
        };
        let mut cache = self.cache.lock();
        if stamp.is_some() && cache.0 == stamp {
            return cache.1.clone().map_err(|e| self.error(e));
        }
        let records = match stamp {
            None => Vec::new(),
            Some(_) => {
                let text = fs::read_to_string(path).map_err(|e| self.error(e))?;
                parse_store(&text).map_err(|e| self.error(e))?
            }
        };
        *cache = (stamp, Ok(records.clone()));
        Ok(records)
    }

    /// Adds a record to a file store, dropping those expired before `now`. (A pushed
    /// store is written by its owner: [`add_record`] gives the text to store.)
    pub fn add(&self, record: TokenRecord, now: Timestamp) -> Result<(), TokenError> {
        let Backend::File(path) = &self.backend else {
            return Err(self.error("this store is written by its owner, not through add"));
        };
        let current = match fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.error(e)),
        };
        let text = add_record(current.as_deref(), record, now).map_err(|e| self.error(e))?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        crate::ca::write_file_atomic(path, text.as_bytes(), 0o600).map_err(|e| self.error(e))
    }

    /// Issues a token ([`issue`]) and stores its record.
    pub fn issue(
        &self,
        group: &str,
        namespace: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<(String, TokenRecord), TokenError> {
        let (token, record) = issue(group, namespace, ttl, now)?;
        self.add(record.clone(), now)?;
        Ok((token, record))
    }

    /// The scope of a presented token, if it is known, matches and has not expired.
    pub fn verify(&self, presented: &str, now: Timestamp) -> Result<Scope, TokenError> {
        let mut parts = presented.trim().splitn(3, '.');
        let (Some(PREFIX), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed);
        }
        let secret = URL_SAFE_NO_PAD
            .decode(secret)
            .map_err(|_| TokenError::Malformed)?;
        let unknown = || TokenError::Unknown { id: id.to_string() };
        let records = self.records()?;
        let Some(record) = records.iter().find(|r| r.id == id) else {
            if let Backend::Pushed { on_unknown, .. } = &self.backend {
                on_unknown();
            }
            return Err(unknown());
        };
        let hash = hex(digest(&SHA256, &secret).as_ref());
        if !same(hash.as_bytes(), record.secret_sha256.as_bytes()) {
            return Err(unknown());
        }
        if record.expires <= now {
            return Err(TokenError::Expired {
                id: record.id.clone(),
                expired: record.expires,
            });
        }
        Ok(Scope {
            id: record.id.clone(),
            group: record.group.clone(),
            namespace: record.namespace.clone(),
        })
    }
}

/// Whether `token` is shaped as Bowline's own (`bwl.<id>.<secret>`), rather than another
/// issuer's (a Kubernetes service-account JWT).
pub fn is_bowline_token(token: &str) -> bool {
    token
        .strip_prefix(PREFIX)
        .is_some_and(|rest| rest.starts_with('.'))
}

/// The token of an `authorization` header value `Bearer <token>` (scheme case-insensitive).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Who is asking to register a VM, as far as the connection tells.
#[derive(Debug)]
pub enum Caller {
    /// A connection from a loopback address without a token: trusted with anything.
    Loopback,
    /// A valid token was presented: allowed its scope only.
    Token(Scope),
    /// A workload identity was proved: a client certificate Bowline's CA issued, or a
    /// Kubernetes service-account token a member reviewed (that member's cluster id).
    Workload {
        /// The identity.
        identity: crate::workload::Identity,
        /// The member that reviewed the token; `None` for a certificate.
        cluster: Option<String>,
    },
    /// Neither: refused.
    Anonymous(Anonymous),
}

/// Why a caller is anonymous.
#[derive(Debug)]
pub enum Anonymous {
    /// No token, and not from a loopback address.
    NoToken,
    /// A token was sent over the plaintext port from another host: it is refused, having
    /// crossed the network in the clear.
    PlaintextToken,
    /// The token presented is not accepted.
    BadToken(TokenError),
    /// A service-account token its member did not accept, or a client certificate that
    /// names no workload: why.
    Refused(String),
}

impl fmt::Display for Anonymous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoToken => f.write_str("no bearer token was presented"),
            Self::PlaintextToken => f.write_str(
                "a bearer token was sent in the clear to the plaintext port from another host",
            ),
            Self::BadToken(e) => e.fmt(f),
            Self::Refused(why) => f.write_str(why),
        }
    }
}

impl Caller {
    /// Classifies a connection: `tls` whether it came over the TLS listener, `peer` its
    /// remote address, `token` the bearer token presented. A presented token always decides
    /// (and is checked against `tokens`), except over plaintext from another host; without
    /// one, only a loopback peer of the plaintext port is trusted. The TLS port is the one
    /// exposed to other hosts, often through a local forwarder (a port-forward, a sidecar)
    /// that makes every remote caller look like loopback, so it always asks for a token.
    pub fn classify(
        tls: bool,
        peer: Option<IpAddr>,
        token: Option<&str>,
        tokens: Option<&TokenStore>,
        now: Timestamp,
    ) -> Self {
        let loopback = peer.is_some_and(|ip| match ip {
            IpAddr::V6(v6) => {
                v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) || v6.is_loopback()
            }
            IpAddr::V4(v4) => v4.is_loopback(),
        });
        match token {
            None if loopback && !tls => Self::Loopback,
            None => Self::Anonymous(Anonymous::NoToken),
            Some(_) if !tls && !loopback => Self::Anonymous(Anonymous::PlaintextToken),
            Some(token) => {
                let Some(tokens) = tokens else {
                    return Self::Anonymous(Anonymous::BadToken(TokenError::Unknown {
                        id: "(no token store)".into(),
                    }));
                };
                match tokens.verify(token, now) {
                    Ok(scope) => Self::Token(scope),
                    Err(e) => Self::Anonymous(Anonymous::BadToken(e)),
                }
            }
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loopback => f.write_str("loopback connection"),
            Self::Token(scope) => scope.fmt(f),
            Self::Workload {
                identity,
                cluster: Some(cluster),
            } => write!(
                f,
                "{identity} (service-account token reviewed by {cluster})"
            ),
            Self::Workload { identity, .. } => write!(f, "{identity} (client certificate)"),
            Self::Anonymous(why) => write!(f, "anonymous ({why})"),
        }
    }
}

/// A registration refused by [`authorize`].
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The caller is not authenticated (gRPC `UNAUTHENTICATED`).
    #[error(
        "registration of group {group:?} in namespace {namespace:?} refused: {why}; registration needs a bearer token from `bowline vm token` on the TLS port, or a loopback connection to the plaintext port"
    )]
    Anonymous {
        /// The group asked for.
        group: String,
        /// The namespace asked for.
        namespace: String,
        /// Why the caller is anonymous.
        why: String,
    },
    /// The caller's workload identity is not the group's (gRPC `PERMISSION_DENIED`).
    #[error(
        "registration of group {group:?} in namespace {namespace:?} refused: the caller is {identity}, and the group's workloads are spiffe://{trust_domain}/ns/{namespace}/sa/{account}"
    )]
    OtherIdentity {
        /// The group asked for.
        group: String,
        /// The namespace asked for.
        namespace: String,
        /// The caller's identity.
        identity: String,
        /// The trust domain.
        trust_domain: String,
        /// The group template's service account.
        account: String,
    },
    /// The caller's token does not cover what it asks (gRPC `PERMISSION_DENIED`).
    #[error(
        "registration of group {group:?} in namespace {namespace:?} refused: the {scope} allows only that group in that namespace"
    )]
    OutOfScope {
        /// The group asked for.
        group: String,
        /// The namespace asked for.
        namespace: String,
        /// The scope held.
        scope: Scope,
    },
}

impl Refusal {
    /// The rule that refused, for logs: `anonymous` or `token-scope`.
    pub fn rule(&self) -> &'static str {
        match self {
            Self::Anonymous { .. } => "anonymous",
            Self::OutOfScope { .. } => "token-scope",
            Self::OtherIdentity { .. } => "workload-identity",
        }
    }
}

/// Whether `caller` may register VMs of `group` in `namespace`, whose template's service
/// account is `account` (`default` when it names none): a workload identity must be that one.
pub fn authorize(
    caller: &Caller,
    group: &str,
    namespace: &str,
    account: &str,
) -> Result<(), Refusal> {
    match caller {
        Caller::Loopback => Ok(()),
        Caller::Workload { identity, .. }
            if identity.namespace == namespace && identity.service_account == account =>
        {
            Ok(())
        }
        Caller::Workload { identity, .. } => Err(Refusal::OtherIdentity {
            group: group.into(),
            namespace: namespace.into(),
            identity: identity.spiffe(),
            trust_domain: identity.trust_domain.clone(),
            account: account.into(),
        }),
        Caller::Token(scope) if scope.group == group && scope.namespace == namespace => Ok(()),
        Caller::Token(scope) => Err(Refusal::OutOfScope {
            group: group.into(),
            namespace: namespace.into(),
            scope: scope.clone(),
        }),
        Caller::Anonymous(why) => Err(Refusal::Anonymous {
            group: group.into(),
            namespace: namespace.into(),
            why: why.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::open(dir.path());
        (dir, store)
    }

    #[test]
    fn issued_token_verifies_to_its_scope_until_expiry() {
        let (_dir, store) = store();
        let now = t("2026-01-01T00:00:00Z");
        let (token, record) = store.issue("web", "shop", HOUR, now).unwrap();
        assert_eq!(record.expires, t("2026-01-01T01:00:00Z"));
        let scope = store.verify(&token, t("2026-01-01T00:59:59Z")).unwrap();
        assert_eq!(
            scope,
            Scope {
                id: record.id.clone(),
                group: "web".into(),
                namespace: "shop".into()
            }
        );
        let text = fs::read_to_string(store.path().unwrap()).unwrap();
        assert!(
            !text.contains(token.rsplit('.').next().unwrap()),
            "secret stored: {text}"
        );
        let err = store.verify(&token, t("2026-01-01T01:00:00Z")).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "the bearer token {} expired at 2026-01-01T01:00:00Z",
                record.id
            )
        );
    }

    #[test]
    fn malformed_and_unknown_tokens_are_refused() {
        let (_dir, store) = store();
        let now = t("2026-01-01T00:00:00Z");
        let (token, record) = store.issue("web", "shop", HOUR, now).unwrap();
        for bad in [
            "",
            "bwl",
            "xyz.0123456789abcdef.AAAA",
            "bwl.0123.AAAA",
            "bwl.0123456789abcdef.!!",
        ] {
            assert!(
                matches!(store.verify(bad, now), Err(TokenError::Malformed)),
                "{bad}"
            );
        }
        let other = format!("bwl.{}.{}", record.id, URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert_eq!(
            store.verify(&other, now).unwrap_err().to_string(),
            format!(
                "the bearer token is unknown to this control plane (id {})",
                record.id
            )
        );
        let stranger = TokenStore::open(tempfile::tempdir().unwrap().path());
        assert!(matches!(
            stranger.verify(&token, now),
            Err(TokenError::Unknown { .. })
        ));
    }

    #[test]
    fn a_second_store_handle_sees_tokens_issued_later() {
        let (dir, server) = store();
        let now = t("2026-01-01T00:00:00Z");
        assert!(server.records().unwrap().is_empty());
        let cli = TokenStore::open(dir.path());
        let (first, _) = cli.issue("web", "shop", HOUR, now).unwrap();
        server.verify(&first, now).unwrap();
        let (second, _) = cli.issue("db", "shop", HOUR, now).unwrap();
        assert_eq!(server.verify(&second, now).unwrap().group, "db");
        assert_eq!(server.records().unwrap().len(), 2);
    }

    #[test]
    fn expired_records_are_dropped_when_issuing() {
        let (_dir, store) = store();
        store
            .issue("web", "shop", HOUR, t("2026-01-01T00:00:00Z"))
            .unwrap();
        store
            .issue("web", "shop", HOUR, t("2026-01-01T02:00:00Z"))
            .unwrap();
        assert_eq!(store.records().unwrap().len(), 1);
    }

    #[test]
    fn corrupt_store_is_an_error_naming_it() {
        let (_dir, store) = store();
        fs::write(store.path().unwrap(), "{").unwrap();
        let err = store
            .verify("bwl.0123456789abcdef.AAAA", Timestamp::UNIX_EPOCH)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: not a token store", store.describe())),
            "{err}"
        );
    }

    #[test]
    fn a_pushed_store_verifies_what_was_pushed_and_asks_again_for_unknown_ids() {
        use std::sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        };
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let name = "Secret ns/bowline-vm-tokens key vm-tokens.json";
        let store = TokenStore::pushed(name, move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let now = t("2026-01-01T00:00:00Z");
        let (token, record) = issue("web", "shop", HOUR, now).unwrap();
        assert!(matches!(
            store.verify(&token, now),
            Err(TokenError::Unknown { .. })
        ));
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        // What a writer stores: the record added to the current text.
        let text = add_record(None, record.clone(), now).unwrap();
        store.replace(Some(&text)).unwrap();
        assert_eq!(store.verify(&token, now).unwrap().id, record.id);
        let (second, record2) = issue("db", "shop", HOUR, now).unwrap();
        let text = add_record(Some(&text), record2, now).unwrap();
        assert_eq!(parse_store(&text).unwrap().len(), 2);
        store.replace(Some(&text)).unwrap();
        assert_eq!(store.verify(&second, now).unwrap().group, "db");
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        // Corrupt text: every verification names the store, until the next replace.
        let err = store.replace(Some("{")).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{name}: not a token store")),
            "{err}"
        );
        let err = store.verify(&token, now).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{name}: not a token store")),
            "{err}"
        );
        store.replace(None).unwrap();
        assert!(store.records().unwrap().is_empty());
        assert!(store.path().is_none());
        assert!(store.add(record, now).is_err());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn classification() {
        let (_dir, store) = store();
        let now = t("2026-01-01T00:00:00Z");
        let (token, _) = store.issue("web", "shop", HOUR, now).unwrap();
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.0.0.5".parse().unwrap();
        let c = |tls, peer, tok| Caller::classify(tls, Some(peer), tok, Some(&store), now);
        assert!(matches!(c(false, local, None), Caller::Loopback));
        assert!(matches!(c(false, mapped, None), Caller::Loopback));
        assert!(matches!(
            c(false, "::1".parse().unwrap(), None),
            Caller::Loopback
        ));
        assert!(matches!(
            c(false, remote, None),
            Caller::Anonymous(Anonymous::NoToken)
        ));
        assert!(matches!(
            c(true, remote, None),
            Caller::Anonymous(Anonymous::NoToken)
        ));
        assert!(
            matches!(c(true, local, None), Caller::Anonymous(Anonymous::NoToken)),
            "the TLS port trusts no loopback peer"
        );
        assert!(matches!(
            c(false, remote, Some(&token)),
            Caller::Anonymous(Anonymous::PlaintextToken)
        ));
        assert!(matches!(c(true, remote, Some(&token)), Caller::Token(_)));
        assert!(matches!(c(true, local, Some(&token)), Caller::Token(_)));
        assert!(matches!(
            c(true, remote, Some("bwl.x.y")),
            Caller::Anonymous(Anonymous::BadToken(TokenError::Malformed))
        ));
    }

    #[test]
    fn authorization_rule() {
        let scope = Scope {
            id: "0123456789abcdef".into(),
            group: "web".into(),
            namespace: "shop".into(),
        };
        assert!(authorize(&Caller::Loopback, "any", "thing", "default").is_ok());
        assert!(authorize(&Caller::Token(scope.clone()), "web", "shop", "default").is_ok());
        let refused = |caller: &Caller, group, ns| {
            let r = authorize(caller, group, ns, "web").unwrap_err();
            (r.rule(), r.to_string())
        };
        // A workload identity registers only into a group whose workloads it is.
        let workload = Caller::Workload {
            identity: crate::workload::Identity {
                trust_domain: "cluster.local".into(),
                namespace: "shop".into(),
                service_account: "web".into(),
            },
            cluster: None,
        };
        assert!(authorize(&workload, "web", "shop", "web").is_ok());
        assert_eq!(
            refused(&workload, "web", "other"),
            (
                "workload-identity",
                "registration of group \"web\" in namespace \"other\" refused: the caller is spiffe://cluster.local/ns/shop/sa/web, and the group's workloads are spiffe://cluster.local/ns/other/sa/web".into()
            )
        );
        assert!(authorize(&workload, "db", "shop", "db").is_err());
        assert_eq!(
            refused(&Caller::Token(scope.clone()), "web", "other"),
            (
                "token-scope",
                "registration of group \"web\" in namespace \"other\" refused: the token 0123456789abcdef (group \"web\" in namespace \"shop\") allows only that group in that namespace".into()
            )
        );
        assert_eq!(
            refused(&Caller::Token(scope), "db", "shop").0,
            "token-scope"
        );
        assert_eq!(
            refused(&Caller::Anonymous(Anonymous::NoToken), "web", "shop"),
            (
                "anonymous",
                "registration of group \"web\" in namespace \"shop\" refused: no bearer token was presented; registration needs a bearer token from `bowline vm token` on the TLS port, or a loopback connection to the plaintext port".into()
            )
        );
        assert!(
            refused(&Caller::Anonymous(Anonymous::PlaintextToken), "web", "shop")
                .1
                .contains("sent in the clear to the plaintext port")
        );
        let expired = Caller::Anonymous(Anonymous::BadToken(TokenError::Expired {
            id: "0123456789abcdef".into(),
            expired: t("2026-01-01T01:00:00Z"),
        }));
        assert!(refused(&expired, "web", "shop").1.contains(
            "refused: the bearer token 0123456789abcdef expired at 2026-01-01T01:00:00Z;"
        ));
    }
}
