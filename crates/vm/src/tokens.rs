//! Registration tokens: bearer tokens scoped to one WorkloadGroup in one namespace, issued by
//! `bowline vm token` and stored hashed, and the rule deciding who may register what.
//!
//! A token reads `bwl.<id>.<secret>`: `id` is 16 hex digits naming the record, `secret` 32
//! random bytes (base64url). The store, `<dataDir>/vm-tokens.json`, holds per token its id,
//! scope, issue and expiry times and the SHA-256 of the secret, never the secret itself.
//! The file is written atomically and re-read when it changes, so a running server sees
//! tokens issued later by the command line.

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
    #[error("{}: {message}", path.display())]
    Store {
        /// The store file.
        path: PathBuf,
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

/// The token store file of a data directory, cached in memory and re-read when the file
/// changes (its modification time, length or inode).
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    /// The records last read and the file's stamp then; a lock because `verify` runs on
    /// every registering stream and the file may change under it.
    cache: Mutex<(Option<Stamp>, Vec<TokenRecord>)>,
}

type Stamp = (SystemTime, u64, u64);

impl TokenStore {
    /// The store of `data_dir` (read lazily).
    pub fn open(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(STORE_FILE),
            cache: Mutex::new((None, Vec::new())),
        }
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl fmt::Display) -> TokenError {
        TokenError::Store {
            path: self.path.clone(),
            message: message.to_string(),
        }
    }

    /// Every stored record, re-reading the file if it changed.
    pub fn records(&self) -> Result<Vec<TokenRecord>, TokenError> {
        use std::os::unix::fs::MetadataExt;
        let stamp = match fs::metadata(&self.path) {
            Ok(m) => Some((m.modified().map_err(|e| self.error(e))?, m.len(), m.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.error(e)),
        };
        let mut cache = self.cache.lock();
        if stamp.is_some() && cache.0 == stamp {
            return Ok(cache.1.clone());
        }
        let records = match stamp {
            None => Vec::new(),
            Some(_) => {
                let text = fs::read_to_string(&self.path).map_err(|e| self.error(e))?;
                let file: StoreFile = serde_json::from_str(&text)
                    .map_err(|e| self.error(format!("not a token store: {e}")))?;
                file.tokens
            }
        };
        *cache = (stamp, records.clone());
        Ok(records)
    }

    /// Adds a record, dropping those expired before `now`.
    pub fn add(&self, record: TokenRecord, now: Timestamp) -> Result<(), TokenError> {
        let mut tokens = self.records()?;
        tokens.retain(|r| r.expires > now && r.id != record.id);
        tokens.push(record);
        let mut text =
            serde_json::to_string_pretty(&StoreFile { tokens }).map_err(|e| self.error(e))?;
        text.push('\n');
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        crate::ca::write_file_atomic(&self.path, text.as_bytes(), 0o600).map_err(|e| self.error(e))
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
        let record = records.iter().find(|r| r.id == id).ok_or_else(unknown)?;
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
}

impl fmt::Display for Anonymous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoToken => f.write_str("no bearer token was presented"),
            Self::PlaintextToken => f.write_str(
                "a bearer token was sent in the clear to the plaintext port from another host",
            ),
            Self::BadToken(e) => e.fmt(f),
        }
    }
}

impl Caller {
    /// Classifies a connection: `tls` whether it came over the TLS listener, `peer` its
    /// remote address, `token` the bearer token presented. A presented token always decides
    /// (and is checked against `tokens`), except over plaintext from another host; without
    /// one, a loopback peer is trusted on either port.
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
            None if loopback => Self::Loopback,
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
            Self::Anonymous(why) => write!(f, "anonymous ({why})"),
        }
    }
}

/// A registration refused by [`authorize`].
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The caller is not authenticated (gRPC `UNAUTHENTICATED`).
    #[error(
        "registration of group {group:?} in namespace {namespace:?} refused: {why}; registration needs a bearer token from `bowline vm token` on the TLS port, or a loopback connection"
    )]
    Anonymous {
        /// The group asked for.
        group: String,
        /// The namespace asked for.
        namespace: String,
        /// Why the caller is anonymous.
        why: String,
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
        }
    }
}

/// Whether `caller` may register VMs of `group` in `namespace`.
pub fn authorize(caller: &Caller, group: &str, namespace: &str) -> Result<(), Refusal> {
    match caller {
        Caller::Loopback => Ok(()),
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
        let text = fs::read_to_string(store.path()).unwrap();
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
        fs::write(store.path(), "{").unwrap();
        let err = store
            .verify("bwl.0123456789abcdef.AAAA", Timestamp::UNIX_EPOCH)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: not a token store", store.path().display())),
            "{err}"
        );
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
        assert!(authorize(&Caller::Loopback, "any", "thing").is_ok());
        assert!(authorize(&Caller::Token(scope.clone()), "web", "shop").is_ok());
        let refused = |caller: &Caller, group, ns| {
            let r = authorize(caller, group, ns).unwrap_err();
            (r.rule(), r.to_string())
        };
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
                "registration of group \"web\" in namespace \"shop\" refused: no bearer token was presented; registration needs a bearer token from `bowline vm token` on the TLS port, or a loopback connection".into()
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
