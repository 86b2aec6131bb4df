//! Bowline's own state, the root CA and the VM token store: files of `dataDir` (the embedded
//! default), or, with `leaderElection` (replicas on Kubernetes), the Secrets `bowline-ca` and
//! `bowline-vm-tokens` in `leaderElection.namespace` of the leader-election member, so that
//! every replica serves a certificate of the same root and accepts the same tokens, and
//! `bowline vm token` writes where the pods read.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use bowline_kube::{
    Credentials,
    secrets::{CA_SECRET, SecretRef, TLS_CRT, TLS_KEY, TOKENS_KEY, TOKENS_SECRET},
};
use bowline_vm::{
    ca::{self, PemOrigin, RootCa},
    tokens::{self, TokenRecord, TokenStore},
};
use jiff::Timestamp;
use tokio::{sync::Notify, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, PluginCa};

/// How often a running Bowline reads the token Secret again.
pub const TOKENS_REFRESH: Duration = Duration::from_secs(5);
/// Least time between two reads of the token Secret (an unknown token asks for one sooner).
pub const TOKENS_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How often a running Bowline checks that the data directory still holds its root CA.
pub const CA_CHECK: Duration = Duration::from_secs(5);

/// What to do when a plug-in CA is refused.
const PLUGIN_REMEDY: &str = "fix the plug-in CA (Istio's cacerts layout: ca-cert.pem signed up to root-cert.pem through cert-chain.pem, ca-key.pem its key), or remove ca.plugin to sign with Bowline's own root";

/// The subject of the first certificate of `pem`, for logs.
fn root_subject(pem: &str) -> String {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .ok()
        .and_then(|(_, pem)| Some(pem.parse_x509().ok()?.subject().to_string()))
        .unwrap_or_default()
}

/// The plug-in CA of `ca.plugin`, read from its directory or Secret and checked.
async fn plugin_ca(config: &Config, plugin: &PluginCa) -> anyhow::Result<RootCa> {
    use bowline_vm::plugin::{CA_CERT, CA_KEY, CERT_CHAIN, PluginPems, ROOT_CERT};
    // Names a file or key of the plug-in, for errors.
    type Place = Box<dyn Fn(&str) -> String>;
    let (pems, place): (PluginPems, Place) = match plugin {
        PluginCa::Dir(dir) => {
            let read = |file: &str| -> anyhow::Result<Option<String>> {
                let path = dir.join(file);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Ok(Some(text)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(anyhow::anyhow!("ca.plugin.dir: {}: {e}", path.display())),
                }
            };
            let required = |file: &str| -> anyhow::Result<String> {
                read(file)?.with_context(|| {
                    format!(
                        "ca.plugin.dir: {} is missing; a plug-in CA needs {CA_CERT}, {CA_KEY} and {ROOT_CERT} (and {CERT_CHAIN} when there are intermediates)",
                        dir.join(file).display()
                    )
                })
            };
            let pems = PluginPems {
                ca_cert: required(CA_CERT)?,
                ca_key: required(CA_KEY)?,
                root_cert: required(ROOT_CERT)?,
                cert_chain: read(CERT_CHAIN)?,
            };
            let dir = dir.clone();
            (
                pems,
                Box::new(move |file| dir.join(file).display().to_string()),
            )
        }
        PluginCa::Secret {
            member,
            namespace,
            name,
        } => {
            let source = &config
                .members
                .iter()
                .find(|m| &m.name == member)
                .expect("ca.plugin.member was validated")
                .source;
            let credentials = crate::members::credentials(source)
                .expect("ca.plugin.member was validated as a Kubernetes member");
            let secret = StateStore::secret(&credentials, namespace, name).await?;
            let data = secret.read().await?.with_context(|| {
                format!(
                    "ca.plugin.secret: Secret {} does not exist in member {member}; create it from the plug-in CA files (kubectl create secret generic {name} -n {namespace} --from-file={CA_CERT} --from-file={CA_KEY} --from-file={ROOT_CERT} --from-file={CERT_CHAIN})",
                    secret.id()
                )
            })?;
            let text = |key: &str| secret.text(&data, key).map(|t| t.map(str::to_string));
            let required = |key: &str| -> anyhow::Result<String> {
                Ok(text(key)?.ok_or_else(|| {
                    secret.key_error(
                        key,
                        "missing; a plug-in CA needs ca-cert.pem, ca-key.pem and root-cert.pem",
                    )
                })?)
            };
            let pems = PluginPems {
                ca_cert: required(CA_CERT)?,
                ca_key: required(CA_KEY)?,
                root_cert: required(ROOT_CERT)?,
                cert_chain: text(CERT_CHAIN)?,
            };
            let id = secret.id();
            (pems, Box::new(move |key| format!("Secret {id} key {key}")))
        }
    };
    let origin = PemOrigin {
        cert: place(CA_CERT),
        key: place(CA_KEY),
        remedy: PLUGIN_REMEDY.into(),
    };
    let ca = RootCa::plugin(
        pems,
        &origin,
        (&place(ROOT_CERT), &place(CERT_CHAIN)),
        ca::now(),
    )?;
    Ok(ca)
}

/// The credentials of a Kubernetes member (`None` for a manifest member).
pub fn member_credentials(source: &crate::config::MemberSource) -> Option<Credentials> {
    crate::members::credentials(source)
}

/// Where the CA and the token store are kept.
#[derive(Clone, Debug)]
pub enum StateStore {
    /// Files of the data directory.
    DataDir(PathBuf),
    /// Secrets in `namespace` of the leader-election member.
    Secrets {
        /// The member's credentials.
        credentials: Credentials,
        /// `leaderElection.namespace`.
        namespace: String,
    },
}

impl StateStore {
    /// The store of `config`: Secrets when it has `leaderElection`, else the data directory.
    pub fn of(config: &Config) -> Self {
        let Some(election) = &config.leader_election else {
            return Self::DataDir(config.data_dir.clone());
        };
        let member = config
            .members
            .iter()
            .find(|m| m.name == election.member)
            .expect("leaderElection.member was validated");
        Self::Secrets {
            credentials: crate::members::credentials(&member.source)
                .expect("leaderElection.member was validated as a Kubernetes member"),
            namespace: election.namespace.clone(),
        }
    }

    async fn secret(
        credentials: &Credentials,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<SecretRef> {
        let client = credentials
            .request_client()
            .await
            .map_err(|e| anyhow::anyhow!("Secret {namespace}/{name}: {e}"))?;
        Ok(SecretRef::new(client, namespace, name))
    }

    /// The CA Bowline signs with: the plug-in CA of `ca.plugin` when configured (read, never
    /// written), else its own root ([`StateStore::root_ca`]).
    pub async fn signing_ca(&self, config: &Config) -> anyhow::Result<RootCa> {
        match &config.ca.plugin {
            None => self.root_ca().await,
            Some(plugin) => {
                let ca = plugin_ca(config, plugin).await?;
                info!(root = %root_subject(ca.root_pem()), "signing with the plug-in CA of ca.plugin; workloads and VMs trust its root");
                Ok(ca)
            }
        }
    }

    /// Whether [`StateStore::keep_root_ca`] has files to keep: Bowline's own root in the
    /// data directory, not a plug-in CA.
    pub(crate) fn keeps_files(&self, config: &Config) -> bool {
        matches!(self, Self::DataDir(_)) && config.ca.plugin.is_none()
    }

    /// The root CA: loaded, or created and stored when there is none. Errors name the file
    /// or the Secret and key.
    pub async fn root_ca(&self) -> anyhow::Result<RootCa> {
        let (credentials, namespace) = match self {
            Self::DataDir(dir) => {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create the data directory {}", dir.display())
                })?;
                let (ca, origin) = RootCa::load_or_create(dir)?;
                let cert = dir.join(ca::ROOT_CERT);
                match origin {
                    ca::Origin::Created => {
                        info!(cert = %cert.display(), "created Bowline's root CA; VMs trust it through their bundle's root-cert.pem")
                    }
                    ca::Origin::Loaded => info!(cert = %cert.display(), "loaded Bowline's root CA"),
                }
                return Ok(ca);
            }
            Self::Secrets {
                credentials,
                namespace,
            } => (credentials, namespace),
        };
        let secret = Self::secret(credentials, namespace, CA_SECRET).await?;
        let (data, created) = secret
            .get_or_create("kubernetes.io/tls", || {
                RootCa::generate(ca::now()).map(|ca| {
                    [
                        (TLS_CRT.to_string(), ca.cert_pem().to_string()),
                        (TLS_KEY.to_string(), ca.key_pem().to_string()),
                    ]
                    .into()
                })
            })
            .await??;
        let id = secret.id();
        let text = |key: &str| -> anyhow::Result<String> {
            secret
                .text(&data, key)?
                .map(str::to_string)
                .ok_or_else(|| secret.key_error(key, "missing; restore the Secret from a backup, or delete it to create a new root at the next start (VMs then need new bundles)").into())
        };
        let origin = PemOrigin {
            cert: format!("Secret {id} key {TLS_CRT}"),
            key: format!("Secret {id} key {TLS_KEY}"),
            remedy: "restore the Secret from a backup, or delete it to create a new root at the next start (VMs then need new bundles)".into(),
        };
        let ca = RootCa::from_pem(text(TLS_CRT)?, text(TLS_KEY)?, &origin)?;
        if created {
            info!(secret = %id, "created Bowline's root CA; VMs trust it through their bundle's root-cert.pem");
        } else {
            info!(secret = %id, "loaded Bowline's root CA");
        }
        Ok(ca)
    }

    /// Keeps the data directory holding the root CA this server serves with, every
    /// [`CA_CHECK`]: removed files are written again (else `bowline vm bundle` would create
    /// a new root that does not verify this server), replaced ones are reported. Secrets
    /// are another store's to keep: nothing to do there.
    pub(crate) fn keep_root_ca(
        &self,
        ca: Arc<RootCa>,
        tasks: &mut JoinSet<()>,
        shutdown: CancellationToken,
    ) {
        let Self::DataDir(dir) = self else {
            return;
        };
        let dir = dir.clone();
        tasks.spawn(async move {
            let mut last = ca::Stored::Kept;
            let mut failing = None;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(CA_CHECK) => {}
                }
                match ca.keep_stored(&dir) {
                    Ok(ca::Stored::Restored(files)) => {
                        let files: Vec<_> = files.iter().map(|f| f.display().to_string()).collect();
                        warn!(files = ?files, "root CA files were removed while running: wrote them again from the CA this server serves with");
                        last = ca::Stored::Kept;
                        failing = None;
                    }
                    Ok(ca::Stored::Replaced(file)) => {
                        if last != ca::Stored::Replaced(file.clone()) {
                            tracing::error!(file = %file.display(), "holds another root CA than the one this server serves with: VM bundles made from it will not verify this server; put the old file back, or restart Bowline to serve the new root (every VM then needs a new bundle)");
                        }
                        last = ca::Stored::Replaced(file);
                        failing = None;
                    }
                    Ok(ca::Stored::Kept) => {
                        if last != ca::Stored::Kept {
                            info!(dir = %dir.display(), "the data directory holds the served root CA again");
                        }
                        last = ca::Stored::Kept;
                        failing = None;
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if failing.as_ref() != Some(&message) {
                            warn!("cannot check the stored root CA: {message}");
                            failing = Some(message);
                        }
                    }
                }
            }
        });
    }

    /// Issues a token for `group` in `namespace` valid for `ttl` and stores its record
    /// (dropping expired ones): into the file, or into the Secret over the resourceVersion
    /// read (a concurrent writer's record is kept: a conflict reads again).
    pub async fn issue_token(
        &self,
        group: &str,
        namespace: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> anyhow::Result<(String, TokenRecord)> {
        let (credentials, ns) = match self {
            Self::DataDir(dir) => {
                return Ok(TokenStore::open(dir).issue(group, namespace, ttl, now)?);
            }
            Self::Secrets {
                credentials,
                namespace,
            } => (credentials, namespace),
        };
        let (token, record) = tokens::issue(group, namespace, ttl, now)?;
        let secret = Self::secret(credentials, ns, TOKENS_SECRET).await?;
        secret
            .update_key(TOKENS_KEY, |text| {
                tokens::add_record(text, record.clone(), now)
                    .map_err(|e| secret.key_error(TOKENS_KEY, e))
            })
            .await??;
        Ok((token, record))
    }

    /// The token store a running Bowline verifies tokens with: the file's, or one kept up
    /// to date from the Secret (read now, then every [`TOKENS_REFRESH`], and sooner, at
    /// most every [`TOKENS_MIN_INTERVAL`], when a token of an unknown id is presented).
    pub(crate) async fn token_store(
        &self,
        tasks: &mut JoinSet<()>,
        shutdown: CancellationToken,
    ) -> Arc<TokenStore> {
        let (credentials, namespace) = match self {
            Self::DataDir(dir) => return Arc::new(TokenStore::open(dir)),
            Self::Secrets {
                credentials,
                namespace,
            } => (credentials.clone(), namespace.clone()),
        };
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        let store = Arc::new(TokenStore::pushed(
            format!("Secret {namespace}/{TOKENS_SECRET} key {TOKENS_KEY}"),
            move || woken.notify_one(),
        ));
        let mut reader = TokenReader {
            credentials,
            namespace,
            client: None,
            store: store.clone(),
            last_error: None,
        };
        reader.read().await;
        tasks.spawn(async move {
            loop {
                let read_at = Instant::now();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(TOKENS_REFRESH) => {}
                    _ = wake.notified() => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep_until(read_at + TOKENS_MIN_INTERVAL) => {}
                }
                reader.read().await;
            }
        });
        store
    }
}

/// Reads the token Secret into a pushed store.
struct TokenReader {
    credentials: Credentials,
    namespace: String,
    /// The client and the credentials' fingerprint it was built from (rebuilt on rotation).
    client: Option<(bowline_kube::credentials::Fingerprint, kube::Client)>,
    store: Arc<TokenStore>,
    /// The last problem logged, so that a lasting one is logged once.
    last_error: Option<String>,
}

impl TokenReader {
    async fn read(&mut self) {
        let result = self.try_read().await;
        match result {
            Ok(()) => {
                if self.last_error.take().is_some() {
                    info!(store = %self.store.describe(), "VM tokens read again");
                }
            }
            Err(e) if self.last_error.as_ref() != Some(&e) => {
                warn!(store = %self.store.describe(), "cannot read the VM tokens (the last ones read are kept): {e}");
                self.last_error = Some(e);
            }
            Err(_) => {}
        }
    }

    async fn try_read(&mut self) -> Result<(), String> {
        let fingerprint = self.credentials.fingerprint();
        if self
            .client
            .as_ref()
            .is_none_or(|(seen, _)| *seen != fingerprint)
        {
            let client = self.credentials.request_client().await?;
            self.client = Some((fingerprint, client));
        }
        let client = self.client.as_ref().expect("set above").1.clone();
        let secret = SecretRef::new(client, &self.namespace, TOKENS_SECRET);
        let data = secret.read().await.map_err(|e| e.to_string())?;
        let text = match &data {
            Some(data) => secret.text(data, TOKENS_KEY).map_err(|e| e.to_string())?,
            None => None,
        };
        self.store.replace(text).map_err(|e| e.to_string())
    }
}
