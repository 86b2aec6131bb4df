//! How a member's API server is reached, and noticing when its credentials are rotated.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Where a member's client comes from.
#[derive(Clone)]
pub enum Credentials {
    /// A kubeconfig file and optionally one of its contexts (else its current context).
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The context.
        context: Option<String>,
    },
    /// The cluster Bowline runs in, through its ServiceAccount.
    InCluster,
    /// A ready client (tests); never rotated.
    Client(kube::Client),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kubeconfig { path, context } => f
                .debug_struct("Kubeconfig")
                .field("path", path)
                .field("context", context)
                .finish(),
            Self::InCluster => f.write_str("InCluster"),
            Self::Client(_) => f.write_str("Client"),
        }
    }
}

/// The ServiceAccount token file of an in-cluster client (rotated by the kubelet).
const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// The state of the credential files: when it differs from the last one seen, a new client
/// is built.
pub type Fingerprint = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

/// Time limits of the client that writes and takes the Lease: an API server that does not
/// answer fails the request instead of holding the writer (watches keep kube's defaults,
/// as a watch is a long request by design).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Credentials {
    /// Builds a client from the current credential files, for watches.
    pub async fn client(&self) -> Result<kube::Client, String> {
        if let Self::Client(client) = self {
            return Ok(client.clone());
        }
        let config = self.config().await?;
        kube::Client::try_from(config).map_err(|e| format!("cannot build a client: {e}"))
    }

    /// Builds a client for short requests (writes, the Lease): it gives up on an API server
    /// that does not connect within 5 s or answer within 30 s.
    pub async fn request_client(&self) -> Result<kube::Client, String> {
        if let Self::Client(client) = self {
            return Ok(client.clone());
        }
        let mut config = self.config().await?;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.read_timeout = Some(READ_TIMEOUT);
        config.write_timeout = Some(READ_TIMEOUT);
        kube::Client::try_from(config).map_err(|e| format!("cannot build a client: {e}"))
    }

    async fn config(&self) -> Result<kube::Config, String> {
        Ok(match self {
            Self::Client(_) => return Err("a given client has no configuration".into()),
            Self::InCluster => kube::Config::incluster()
                .map_err(|e| format!("no in-cluster configuration: {e}"))?,
            Self::Kubeconfig { path, context } => {
                let file = Kubeconfig::read_from(path)
                    .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
                let options = KubeConfigOptions {
                    context: context.clone(),
                    ..KubeConfigOptions::default()
                };
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
            }
        })
    }

    /// The files the credentials are read from: the kubeconfig and the token, certificate
    /// and key files it names (relative to its directory), or the in-cluster token.
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            Self::Client(_) => Vec::new(),
            Self::InCluster => vec![PathBuf::from(IN_CLUSTER_TOKEN)],
            Self::Kubeconfig { path, .. } => {
                let mut files = vec![path.clone()];
                if let Ok(config) = Kubeconfig::read_from(path) {
                    let base = path.parent().unwrap_or(Path::new(""));
                    let users = config
                        .auth_infos
                        .iter()
                        .filter_map(|a| a.auth_info.as_ref());
                    for user in users {
                        files.extend(
                            [&user.token_file, &user.client_certificate, &user.client_key]
                                .into_iter()
                                .flatten()
                                .map(|f| base.join(f)),
                        );
                    }
                    let clusters = config.clusters.iter().filter_map(|c| c.cluster.as_ref());
                    files.extend(
                        clusters
                            .filter_map(|c| c.certificate_authority.as_ref())
                            .map(|f| base.join(f)),
                    );
                }
                files.sort();
                files.dedup();
                files
            }
        }
    }

    /// Modification time and length of every credential file.
    pub fn fingerprint(&self) -> Fingerprint {
        self.files()
            .into_iter()
            .map(|path| {
                let stamp = std::fs::metadata(&path)
                    .ok()
                    .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
                (path, stamp)
            })
            .collect()
    }

    /// What to tell the user to fix when the API server refuses the credentials.
    pub fn describe(&self) -> String {
        match self {
            Self::Kubeconfig {
                path,
                context: Some(context),
            } => format!("kubeconfig {} (context {context})", path.display()),
            Self::Kubeconfig {
                path,
                context: None,
            } => format!("kubeconfig {}", path.display()),
            Self::InCluster => format!("the in-cluster ServiceAccount token {IN_CLUSTER_TOKEN}"),
            Self::Client(_) => "the given client".into(),
        }
    }
}
