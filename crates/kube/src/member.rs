//! `bowline member kubeconfig`: give a cluster a ServiceAccount with Bowline's cluster-scoped
//! permissions and write a kubeconfig with a token of it, for a Bowline running elsewhere.
//!
//! ```text
//!  admin's kubeconfig ──▶ server-side apply: Namespace, ServiceAccount,
//!   (--context)           ClusterRole (rbac::rules(Cluster)), ClusterRoleBinding
//!        │                        │
//!        │                        ▼
//!        │              POST serviceaccounts/NAME/token (TokenRequest)
//!        ▼                        │
//!  server, CA, TLS ───────────────┴──▶ kubeconfig YAML (one cluster, user, context)
//! ```
//!
//! The Lease Role `bowline install` also grants is not created: leader election runs in the
//! cluster Bowline itself runs in, never through a remote member.

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{Cluster, Kubeconfig, KubeconfigError};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::credentials::Credentials;
use crate::install;

/// The field manager of the objects the command applies.
pub const FIELD_MANAGER: &str = "bowline";
/// The shortest token validity the API server accepts (10 minutes).
pub const MIN_DURATION: Duration = Duration::from_secs(600);

/// What `bowline member kubeconfig` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberKubeconfigOptions {
    /// The admin's kubeconfig file.
    pub kubeconfig: PathBuf,
    /// The context of that file naming the cluster to prepare; also the name of the one
    /// context of the printed kubeconfig.
    pub context: String,
    /// Namespace of the ServiceAccount (created).
    pub namespace: String,
    /// Name of the ServiceAccount, the ClusterRole and the ClusterRoleBinding.
    pub name: String,
    /// Requested token validity (the cluster may grant less).
    pub duration: Duration,
    /// The API server URL to print (default: the context's cluster's `server`).
    pub server: Option<String>,
}

/// The printed kubeconfig and what the cluster granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberKubeconfig {
    /// The kubeconfig, as YAML.
    pub yaml: String,
    /// When the token expires.
    pub expires_at: jiff::Timestamp,
    /// The validity the cluster granted, in seconds (may be less than requested).
    pub granted_seconds: Option<i64>,
    /// The `server` printed.
    pub server: String,
    /// What the user should know, e.g. a loopback `server` no other cluster can reach.
    pub warnings: Vec<String>,
}

/// Why the kubeconfig could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The admin's kubeconfig cannot be read.
    #[error("cannot read kubeconfig {path}: {source}")]
    ReadKubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: KubeconfigError,
    },
    /// The context (or the cluster it names) is not in the kubeconfig.
    #[error("kubeconfig {path} has no {what}; pass --context with one of its contexts")]
    NoContext {
        /// The file.
        path: PathBuf,
        /// What is missing, e.g. `context "east"`.
        what: String,
    },
    /// Neither `--server` nor the context's cluster names the API server.
    #[error("cluster {cluster} of kubeconfig {path} has no server; pass --server")]
    NoServer {
        /// The file.
        path: PathBuf,
        /// The cluster entry.
        cluster: String,
    },
    /// The certificate-authority file the cluster names cannot be read.
    #[error("cannot read the certificate authority {path} of cluster {cluster}: {source}")]
    CertificateAuthority {
        /// The CA file.
        path: PathBuf,
        /// The cluster entry.
        cluster: String,
        /// Why.
        source: std::io::Error,
    },
    /// The requested validity is under 10 minutes or over what the API takes.
    #[error(
        "--duration {requested:?} is out of range: the API server takes 10m up to about 136 years"
    )]
    Duration {
        /// What was asked.
        requested: Duration,
    },
    /// No client could be built from the context.
    #[error("context {context} of kubeconfig {path}: {message}")]
    Client {
        /// The file.
        path: PathBuf,
        /// The context.
        context: String,
        /// Why.
        message: String,
    },
    /// An object could not be applied.
    #[error("cannot apply {kind} {name} in context {context}: {source}")]
    Apply {
        /// Its kind.
        kind: String,
        /// Its name (`namespace/name` when namespaced).
        name: String,
        /// The context.
        context: String,
        /// Why (boxed: a `kube::Error` is large and this is the rare path).
        source: Box<kube::Error>,
    },
    /// The TokenRequest failed or was answered without a token.
    #[error(
        "cannot get a token for ServiceAccount {namespace}/{name} in context {context}: {message}"
    )]
    Token {
        /// The ServiceAccount's namespace.
        namespace: String,
        /// The ServiceAccount.
        name: String,
        /// The context.
        context: String,
        /// Why.
        message: String,
    },
    /// The kubeconfig could not be rendered.
    #[error("cannot render the kubeconfig as YAML: {0}")]
    Render(#[from] serde_saphyr::SerializeError),
}

/// The kubeconfig file to read when `--kubeconfig` is not given, as kubectl finds it: the first
/// file of `$KUBECONFIG` (a `:`-separated list) that defines `context`, else its first file,
/// else `~/.kube/config`. `None` without either.
pub fn default_kubeconfig(
    kubeconfig_env: Option<&OsStr>,
    home: Option<&Path>,
    context: &str,
) -> Option<PathBuf> {
    let listed: Vec<PathBuf> = kubeconfig_env
        .map(|v| std::env::split_paths(v).filter(|p| !p.as_os_str().is_empty()))
        .into_iter()
        .flatten()
        .collect();
    let defines = |path: &PathBuf| {
        Kubeconfig::read_from(path).is_ok_and(|k| k.contexts.iter().any(|c| c.name == context))
    };
    if let Some(path) = listed.iter().find(|p| defines(p)) {
        return Some(path.clone());
    }
    listed
        .into_iter()
        .next()
        .or_else(|| home.map(|h| h.join(".kube").join("config")))
}

/// Applies the member's objects into the cluster of `opts.context`, requests a token for its
/// ServiceAccount and renders a kubeconfig with it. Running it again is harmless: the objects
/// are applied unchanged and a new token is issued (the earlier one stays valid until it
/// expires).
pub async fn member_kubeconfig(
    opts: &MemberKubeconfigOptions,
) -> Result<MemberKubeconfig, MemberError> {
    let seconds = i64::try_from(opts.duration.as_secs())
        .ok()
        .filter(|s| *s >= MIN_DURATION.as_secs() as i64 && *s <= i64::from(u32::MAX))
        .ok_or(MemberError::Duration {
            requested: opts.duration,
        })?;
    let source = read_source(opts)?;
    let credentials = Credentials::Kubeconfig {
        path: opts.kubeconfig.clone(),
        context: Some(opts.context.clone()),
    };
    let client = credentials
        .client()
        .await
        .map_err(|message| MemberError::Client {
            path: opts.kubeconfig.clone(),
            context: opts.context.clone(),
            message,
        })?;
    apply_objects(&client, opts).await?;
    let answer = request_token(&client, opts, seconds).await?;
    let status = answer
        .status
        .ok_or_else(|| token_error(opts, "no status"))?;
    if status.token.is_empty() {
        return Err(token_error(opts, "the answer carries no token"));
    }
    let server = opts.server.clone().unwrap_or(source.server);
    let yaml = render(opts, &server, source.cluster, &status.token)?;
    tracing::info!(context = %opts.context, ns = %opts.namespace, name = %opts.name,
        expires = %status.expiration_timestamp.0, "issued a member token");
    let mut warnings = Vec::new();
    if opts.server.is_none() && is_loopback(&server) {
        warnings.push(format!(
            "the server {server} of context {} is a loopback address another cluster cannot \
             reach; pass --server with the address the other Bowline uses",
            opts.context
        ));
    }
    if let Some(granted) = answer.spec.expiration_seconds.filter(|g| *g < seconds) {
        warnings.push(format!(
            "the cluster granted {granted}s of the {seconds}s requested (its \
             --service-account-max-token-expiration)"
        ));
    }
    Ok(MemberKubeconfig {
        yaml,
        expires_at: status.expiration_timestamp.0,
        granted_seconds: answer.spec.expiration_seconds,
        server,
        warnings,
    })
}

/// Whether `server` (a URL) names `localhost` or a loopback IP.
fn is_loopback(server: &str) -> bool {
    let rest = server.split_once("://").map_or(server, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What the output copies from the admin's kubeconfig.
struct Source {
    server: String,
    cluster: PrintedCluster,
}

fn read_source(opts: &MemberKubeconfigOptions) -> Result<Source, MemberError> {
    let path = &opts.kubeconfig;
    let file = Kubeconfig::read_from(path).map_err(|source| MemberError::ReadKubeconfig {
        path: path.clone(),
        source,
    })?;
    let missing = |what: String| MemberError::NoContext {
        path: path.clone(),
        what,
    };
    let context = file
        .contexts
        .iter()
        .find(|c| c.name == opts.context)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| missing(format!("context {:?}", opts.context)))?;
    let cluster_name = &context.cluster;
    let cluster = file
        .clusters
        .iter()
        .find(|c| &c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| {
            missing(format!(
                "cluster {cluster_name:?} (named by context {:?})",
                opts.context
            ))
        })?;
    let server = match (&opts.server, &cluster.server) {
        (Some(server), _) | (None, Some(server)) => server.clone(),
        (None, None) => {
            return Err(MemberError::NoServer {
                path: path.clone(),
                cluster: cluster_name.clone(),
            });
        }
    };
    Ok(Source {
        server,
        cluster: printed_cluster(cluster, cluster_name, opts.server.is_some())?,
    })
}

/// The TLS settings of the source cluster: its CA inlined, `insecure-skip-tls-verify`, and
/// `tls-server-name` unless `--server` names another address.
fn printed_cluster(
    cluster: &Cluster,
    name: &str,
    server_overridden: bool,
) -> Result<PrintedCluster, MemberError> {
    let ca_data = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => Some(data.clone()),
        (None, Some(file)) => {
            let bytes =
                std::fs::read(file).map_err(|source| MemberError::CertificateAuthority {
                    path: file.into(),
                    cluster: name.to_owned(),
                    source,
                })?;
            Some(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        (None, None) => None,
    };
    Ok(PrintedCluster {
        server: String::new(),
        certificate_authority_data: ca_data,
        insecure_skip_tls_verify: cluster.insecure_skip_tls_verify.filter(|v| *v),
        tls_server_name: cluster
            .tls_server_name
            .clone()
            .filter(|_| !server_overridden),
    })
}

async fn apply_objects(
    client: &kube::Client,
    opts: &MemberKubeconfigOptions,
) -> Result<(), MemberError> {
    let (ns, name) = (opts.namespace.as_str(), opts.name.as_str());
    apply(
        Api::<Namespace>::all(client.clone()),
        install::namespace(ns),
        opts,
    )
    .await?;
    apply(
        Api::<ServiceAccount>::namespaced(client.clone(), ns),
        install::service_account(ns, name),
        opts,
    )
    .await?;
    apply(
        Api::<ClusterRole>::all(client.clone()),
        install::cluster_role(name),
        opts,
    )
    .await?;
    apply(
        Api::<ClusterRoleBinding>::all(client.clone()),
        install::cluster_role_binding(ns, name),
        opts,
    )
    .await
}

/// Server-side apply with `force`: the objects are this command's, as it describes them.
async fn apply<K>(api: Api<K>, object: K, opts: &MemberKubeconfigOptions) -> Result<(), MemberError>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(&object))
        .await
        .map_err(|source| MemberError::Apply {
            kind: K::kind(&()).into_owned(),
            name: match object.namespace() {
                Some(ns) => format!("{ns}/{name}"),
                None => name.clone(),
            },
            context: opts.context.clone(),
            source: Box::new(source),
        })?;
    tracing::debug!(kind = %K::kind(&()), name = %name, "applied");
    Ok(())
}

async fn request_token(
    client: &kube::Client,
    opts: &MemberKubeconfigOptions,
    seconds: i64,
) -> Result<TokenRequest, MemberError> {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &opts.namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            // No audiences: the API server's own, which is what a client of it presents.
            expiration_seconds: Some(seconds),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    accounts
        .create_token_request(&opts.name, &PostParams::default(), &request)
        .await
        .map_err(|e| token_error(opts, &e.to_string()))
}

fn token_error(opts: &MemberKubeconfigOptions, message: &str) -> MemberError {
    MemberError::Token {
        namespace: opts.namespace.clone(),
        name: opts.name.clone(),
        context: opts.context.clone(),
        message: message.to_owned(),
    }
}

/// A kubeconfig in the field order kubectl writes.
#[derive(Serialize)]
struct PrintedKubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: [NamedCluster<'a>; 1],
    users: [NamedUser<'a>; 1],
    contexts: [NamedContext<'a>; 1],
    #[serde(rename = "current-context")]
    current_context: &'a str,
}

#[derive(Serialize)]
struct NamedCluster<'a> {
    name: &'a str,
    cluster: PrintedCluster,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct PrintedCluster {
    server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    insecure_skip_tls_verify: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_server_name: Option<String>,
}

#[derive(Serialize)]
struct NamedUser<'a> {
    name: &'a str,
    user: TokenUser<'a>,
}

#[derive(Serialize)]
struct TokenUser<'a> {
    token: &'a str,
}

#[derive(Serialize)]
struct NamedContext<'a> {
    name: &'a str,
    context: ContextRef<'a>,
}

#[derive(Serialize)]
struct ContextRef<'a> {
    cluster: &'a str,
    user: &'a str,
}

fn render(
    opts: &MemberKubeconfigOptions,
    server: &str,
    mut cluster: PrintedCluster,
    token: &str,
) -> Result<String, MemberError> {
    cluster.server = server.to_owned();
    let name = opts.context.as_str();
    let user = opts.name.as_str();
    let file = PrintedKubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: [NamedCluster { name, cluster }],
        users: [NamedUser {
            name: user,
            user: TokenUser { token },
        }],
        contexts: [NamedContext {
            name,
            context: ContextRef {
                cluster: name,
                user,
            },
        }],
        current_context: name,
    };
    Ok(serde_saphyr::to_string(&file)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(kubeconfig: &Path, server: Option<&str>) -> MemberKubeconfigOptions {
        MemberKubeconfigOptions {
            kubeconfig: kubeconfig.to_owned(),
            context: "east-admin".into(),
            namespace: "bowline-system".into(),
            name: "bowline-member".into(),
            duration: Duration::from_secs(3600),
            server: server.map(Into::into),
        }
    }

    const SOURCE: &str = "apiVersion: v1\nkind: Config\n\
        clusters:\n\
        - name: east\n  cluster:\n    server: https://10.0.0.1:6443\n    \
          certificate-authority: ca.crt\n    tls-server-name: api.east.internal\n\
        - name: lab\n  cluster:\n    server: https://127.0.0.1:6443\n    \
          insecure-skip-tls-verify: true\n\
        users:\n- name: admin\n  user:\n    token: admin-token\n\
        contexts:\n\
        - name: east-admin\n  context:\n    cluster: east\n    user: admin\n\
        - name: lab\n  context:\n    cluster: lab\n    user: admin\n\
        current-context: lab\n";

    fn source_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, SOURCE).unwrap();
        (dir, path)
    }

    #[test]
    fn the_ca_file_is_inlined_and_tls_settings_are_copied() {
        let (_dir, path) = source_file();
        let opts = options(&path, None);
        let source = read_source(&opts).unwrap();
        let yaml = render(&opts, &source.server, source.cluster, "t0k3n").unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode("-----BEGIN CERTIFICATE-----\n");
        assert_eq!(
            yaml,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: east-admin\n  cluster:\n    \
                 server: https://10.0.0.1:6443\n    certificate-authority-data: {ca}\n    \
                 tls-server-name: api.east.internal\nusers:\n- name: bowline-member\n  user:\n    \
                 token: t0k3n\ncontexts:\n- name: east-admin\n  context:\n    cluster: east-admin\n    \
                 user: bowline-member\ncurrent-context: east-admin\n"
            )
        );
        let parsed = Kubeconfig::from_yaml(&yaml).unwrap();
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some(&*ca));
    }

    #[test]
    fn insecure_is_copied_and_server_overrides_drop_the_tls_name() {
        let (_dir, path) = source_file();
        let lab = MemberKubeconfigOptions {
            context: "lab".into(),
            ..options(&path, None)
        };
        let source = read_source(&lab).unwrap();
        assert_eq!(source.cluster.insecure_skip_tls_verify, Some(true));
        assert_eq!(source.server, "https://127.0.0.1:6443");

        let source = read_source(&options(&path, Some("https://east.example:6443"))).unwrap();
        assert_eq!(source.server, "https://east.example:6443");
        assert_eq!(source.cluster.tls_server_name, None);
    }

    #[test]
    fn loopback_servers_are_noticed() {
        assert!(is_loopback("https://127.0.0.1:6443"));
        assert!(is_loopback("https://[::1]:6443"));
        assert!(is_loopback("https://localhost:6443"));
        assert!(!is_loopback("https://10.0.0.1:6443"));
        assert!(!is_loopback("https://api.east.example"));
    }

    #[test]
    fn the_default_kubeconfig_is_the_first_listed_file_defining_the_context() {
        let (dir, path) = source_file();
        let other = dir.path().join("other");
        std::fs::write(&other, "apiVersion: v1\nkind: Config\n").unwrap();
        let list = std::env::join_paths([&other, &path]).unwrap();
        let home = Path::new("/home/admin");
        assert_eq!(
            default_kubeconfig(Some(&list), Some(home), "lab"),
            Some(path.clone())
        );
        assert_eq!(
            default_kubeconfig(Some(&list), Some(home), "west"),
            Some(other)
        );
        assert_eq!(
            default_kubeconfig(None, Some(home), "lab"),
            Some(home.join(".kube/config"))
        );
        assert_eq!(default_kubeconfig(None, None, "lab"), None);
    }
}
