//! Bowline's own state in Secrets of its namespace (the root CA, the VM token store) when it
//! runs as replicas on Kubernetes: read, created once (of two replicas racing, the second gets
//! `409 AlreadyExists` and reads the first one's), and a key rewritten over the
//! `resourceVersion` it was read at (a `409` reads again and retries), so that two writers
//! never lose each other's change. What the keys hold is the caller's business.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Api, api::PostParams};
use tracing::debug;

/// The Secret holding Bowline's root CA (type `kubernetes.io/tls`).
pub const CA_SECRET: &str = "bowline-ca";
/// The Secret holding the VM registration token store (type `Opaque`).
pub const TOKENS_SECRET: &str = "bowline-vm-tokens";
/// The key of [`TOKENS_SECRET`] holding the store's JSON (as the `vm-tokens.json` file).
pub const TOKENS_KEY: &str = "vm-tokens.json";
/// The certificate key of a `kubernetes.io/tls` Secret.
pub const TLS_CRT: &str = "tls.crt";
/// The private key's key of a `kubernetes.io/tls` Secret.
pub const TLS_KEY: &str = "tls.key";
/// The label Bowline's Secrets carry (`app.kubernetes.io/part-of: bowline`).
pub const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "bowline");

/// How many times [`SecretRef::update_key`] reads and writes again after a conflict.
const ATTEMPTS: usize = 5;

/// Why a Secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The API server refused or failed a request.
    #[error("Secret {secret}: cannot {verb} it: {message}")]
    Api {
        /// `<namespace>/<name>`.
        secret: String,
        /// `get`, `create`, `update`.
        verb: &'static str,
        /// The error.
        message: String,
    },
    /// A key is missing or does not hold what it should.
    #[error("Secret {secret} key {key}: {message}")]
    Key {
        /// `<namespace>/<name>`.
        secret: String,
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Another writer kept changing it.
    #[error("Secret {secret}: changed by another writer at each of {ATTEMPTS} attempts; try again")]
    Conflict {
        /// `<namespace>/<name>`.
        secret: String,
    },
}

/// One Secret of Bowline's namespace.
#[derive(Clone)]
pub struct SecretRef {
    api: Api<Secret>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretRef({})", self.id())
    }
}

/// A Secret's data as read, and the `resourceVersion` it was read at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretData {
    /// Its keys and (decoded) values.
    pub data: BTreeMap<String, Vec<u8>>,
    /// Its `resourceVersion`.
    pub resource_version: String,
}

impl SecretRef {
    /// Secret `name` in `namespace`, reached through `client`.
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// `<namespace>/<name>`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn api_error(&self, verb: &'static str, e: kube::Error) -> SecretError {
        SecretError::Api {
            secret: self.id(),
            verb,
            message: e.to_string(),
        }
    }

    /// The error for `key` of this Secret.
    pub fn key_error(&self, key: &str, message: impl Into<String>) -> SecretError {
        SecretError::Key {
            secret: self.id(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The Secret's data, or `None` when it does not exist.
    pub async fn read(&self) -> Result<Option<SecretData>, SecretError> {
        let secret = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_error("get", e))?;
        Ok(secret.map(|s| SecretData {
            data: s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
            resource_version: s.metadata.resource_version.unwrap_or_default(),
        }))
    }

    /// The text (UTF-8) of `key` in `data`; `None` when the key is absent.
    pub fn text<'a>(
        &self,
        data: &'a SecretData,
        key: &str,
    ) -> Result<Option<&'a str>, SecretError> {
        data.data
            .get(key)
            .map(|bytes| {
                std::str::from_utf8(bytes)
                    .map_err(|e| self.key_error(key, format!("not text: {e}")))
            })
            .transpose()
    }

    fn object(&self, type_: &str, data: BTreeMap<String, String>, rv: Option<String>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some([(PART_OF.0.to_string(), PART_OF.1.to_string())].into()),
                resource_version: rv,
                ..ObjectMeta::default()
            },
            type_: Some(type_.into()),
            data: Some(
                data.into_iter()
                    .map(|(k, v)| (k, ByteString(v.into_bytes())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    /// The Secret's data, creating it (of type `type_`, with the data `make` gives) when it
    /// does not exist; `true` when this call created it. When another writer creates it
    /// first (`409 AlreadyExists`), that one is read and returned.
    pub async fn get_or_create<E: std::fmt::Display>(
        &self,
        type_: &str,
        make: impl FnOnce() -> Result<BTreeMap<String, String>, E>,
    ) -> Result<Result<(SecretData, bool), E>, SecretError> {
        if let Some(data) = self.read().await? {
            return Ok(Ok((data, false)));
        }
        let data = match make() {
            Ok(data) => data,
            Err(e) => return Ok(Err(e)),
        };
        let object = self.object(type_, data, None);
        match self.api.create(&PostParams::default(), &object).await {
            Ok(created) => Ok(Ok((
                SecretData {
                    data: object
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                    resource_version: created.metadata.resource_version.unwrap_or_default(),
                },
                true,
            ))),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!(secret = %self.id(), "created by another writer first; reading theirs");
                let data = self.read().await?.ok_or_else(|| SecretError::Api {
                    secret: self.id(),
                    verb: "get",
                    message: "created by another writer, then gone".into(),
                })?;
                Ok(Ok((data, false)))
            }
            Err(e) => Err(self.api_error("create", e)),
        }
    }

    /// Rewrites `key` with what `modify` makes of its current text (`None`: no Secret or
    /// no key), over the `resourceVersion` read (an `Opaque` Secret is created when there
    /// is none); after a `409` (another writer came between) it reads and tries again, up
    /// to 5 times. Other keys are kept. `modify`'s own error is returned as it is.
    pub async fn update_key<E>(
        &self,
        key: &str,
        mut modify: impl FnMut(Option<&str>) -> Result<String, E>,
    ) -> Result<Result<(), E>, SecretError> {
        for _ in 0..ATTEMPTS {
            let current = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|e| self.api_error("get", e))?;
            let text = match current.as_ref().and_then(|s| s.data.as_ref()?.get(key)) {
                Some(bytes) => Some(
                    std::str::from_utf8(&bytes.0)
                        .map_err(|e| self.key_error(key, format!("not text: {e}")))?,
                ),
                None => None,
            };
            let next = match modify(text) {
                Ok(next) => ByteString(next.into_bytes()),
                Err(e) => return Ok(Err(e)),
            };
            let written = match current {
                None => {
                    let mut object = self.object("Opaque", BTreeMap::new(), None);
                    object.data = Some([(key.to_string(), next)].into());
                    self.api
                        .create(&PostParams::default(), &object)
                        .await
                        .map_err(|e| ("create", e))
                }
                // The Secret as read (its type, labels and other keys kept, its
                // resourceVersion the precondition), with the key replaced.
                Some(mut object) => {
                    object
                        .data
                        .get_or_insert_with(BTreeMap::new)
                        .insert(key.to_string(), next);
                    self.api
                        .replace(&self.name, &PostParams::default(), &object)
                        .await
                        .map_err(|e| ("update", e))
                }
            };
            match written {
                Ok(_) => return Ok(Ok(())),
                Err((verb, kube::Error::Api(s))) if s.code == 409 => {
                    debug!(secret = %self.id(), verb, "changed by another writer; reading again");
                }
                Err((verb, e)) => return Err(self.api_error(verb, e)),
            }
        }
        Err(SecretError::Conflict { secret: self.id() })
    }
}
