//! `bowline member join`: what `bowline member kubeconfig` does for a cluster, then hands the
//! kubeconfig to a Bowline that runs on Kubernetes (installed by `bowline install`).
//!
//! ```text
//!  member cluster (--context) ──▶ member_kubeconfig: ServiceAccount, ClusterRole, token
//!                                        │ kubeconfig YAML
//!                                        ▼
//!  Bowline's cluster (--bowline-context), namespace of `bowline install`:
//!    Secret bowline-members, key <name>.kubeconfig   (server-side apply, field manager
//!                                                      bowline-join-<name>: that key only)
//!    ConfigMap bowline, bowline.yaml: members += {name, kubeconfig: /etc/bowline-members/…}
//!                                                     (update at its resourceVersion)
//!    Deployment bowline: pod template annotated, so that the replicas restart and read it
//! ```
//!
//! Running it again rotates the token: the Secret's key is rewritten (the kubeconfig file is
//! re-read by the running replicas), the configuration is left as it is.

use std::path::PathBuf;

use base64::Engine as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::credentials::Credentials;
use crate::install::{MEMBERS_DIR, MEMBERS_SECRET, NAME};
use crate::member::{MemberError, MemberKubeconfigOptions, member_kubeconfig};

/// What `bowline member join` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinOptions {
    /// The member's side: context, ServiceAccount, token validity, server URL.
    pub member: MemberKubeconfigOptions,
    /// The member's name in `bowline.yaml` (and of its key in the Secret).
    pub name: String,
    /// Its network, when not the default.
    pub network: Option<String>,
    /// The kubeconfig reaching the cluster Bowline runs in.
    pub bowline_kubeconfig: PathBuf,
    /// Its context; `None`: the file's current context.
    pub bowline_context: Option<String>,
    /// The namespace `bowline install` installed into.
    pub bowline_namespace: String,
}

/// What was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The key of the Secret the kubeconfig went into.
    pub key: String,
    /// The member was added to `bowline.yaml` (false: it was already there).
    pub added: bool,
    /// The Deployment was told to restart.
    pub restarted: bool,
    /// When the token expires.
    pub expires_at: String,
    /// Things the user should know.
    pub warnings: Vec<String>,
}

/// Why `bowline member join` failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The member's side failed.
    #[error(transparent)]
    Member(#[from] MemberError),
    /// A call to Bowline's cluster failed.
    #[error("{what} in namespace {namespace} of Bowline's cluster: {message}")]
    Bowline {
        /// What was asked.
        what: String,
        /// The namespace.
        namespace: String,
        /// Why.
        message: String,
    },
    /// The configuration cannot take the member.
    #[error("ConfigMap {namespace}/{NAME} (bowline.yaml): {message}")]
    Config {
        /// The namespace.
        namespace: String,
        /// Why.
        message: String,
    },
}

/// Joins the member of `opts.member.context` to the Bowline in `opts.bowline_namespace`.
pub async fn member_join(opts: &JoinOptions) -> Result<Joined, JoinError> {
    bowline_model::names::validate_label(&opts.name).map_err(|e| JoinError::Config {
        namespace: opts.bowline_namespace.clone(),
        message: format!(
            "--name {:?} cannot name a member's Secret key: {e} (an RFC 1123 label)",
            opts.name
        ),
    })?;
    let printed = member_kubeconfig(&opts.member).await?;
    let ns = opts.bowline_namespace.as_str();
    let fail = |what: &str, message: String| JoinError::Bowline {
        what: what.to_string(),
        namespace: ns.to_string(),
        message,
    };
    let credentials = Credentials::Kubeconfig {
        path: opts.bowline_kubeconfig.clone(),
        context: opts.bowline_context.clone(),
    };
    let client = credentials
        .client()
        .await
        .map_err(|m| fail("a client", m))?;
    let key = format!("{}.kubeconfig", opts.name);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": MEMBERS_SECRET, "namespace": ns,
                     "labels": {"app.kubernetes.io/part-of": NAME}},
        "data": {&key: base64::engine::general_purpose::STANDARD.encode(&printed.yaml)},
    });
    let manager = format!("bowline-join-{}", opts.name);
    secrets
        .patch(
            MEMBERS_SECRET,
            &PatchParams::apply(&manager).force(),
            &Patch::Apply(&secret),
        )
        .await
        .map_err(|e| fail(&format!("applying Secret {MEMBERS_SECRET}"), e.to_string()))?;
    let mut warnings = printed.warnings.clone();
    let added = add_member(&client, opts, &mut warnings).await?;
    let restarted = match added {
        true => restart(&client, ns, &mut warnings).await?,
        false => false,
    };
    Ok(Joined {
        key,
        added,
        restarted,
        expires_at: printed.expires_at.to_string(),
        warnings,
    })
}

/// Adds the member to `bowline.yaml` in the ConfigMap, at its resourceVersion (three tries
/// on a conflict). False when a member of that name is there already, reading this file.
async fn add_member(
    client: &kube::Client,
    opts: &JoinOptions,
    warnings: &mut Vec<String>,
) -> Result<bool, JoinError> {
    let ns = opts.bowline_namespace.as_str();
    let config_error = |message: String| JoinError::Config {
        namespace: ns.to_string(),
        message,
    };
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let path = format!("{MEMBERS_DIR}/{}.kubeconfig", opts.name);
    for _ in 0..3 {
        let mut map = maps.get(NAME).await.map_err(|e| JoinError::Bowline {
            what: format!(
                "reading ConfigMap {NAME} (is Bowline installed there? `bowline install`)"
            ),
            namespace: ns.to_string(),
            message: e.to_string(),
        })?;
        let text = map
            .data
            .as_ref()
            .and_then(|d| d.get("bowline.yaml"))
            .cloned()
            .ok_or_else(|| config_error("has no key bowline.yaml".into()))?;
        let mut config: Value =
            serde_saphyr::from_str(&text).map_err(|e| config_error(format!("is not YAML: {e}")))?;
        let members = config
            .get_mut("members")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| config_error("has no members list".into()))?;
        if let Some(existing) = members.iter().find(|m| m["name"] == opts.name.as_str()) {
            if existing["kubeconfig"] != path.as_str() {
                return Err(config_error(format!(
                    "a member {:?} is there already, read from {}; choose another --name",
                    opts.name,
                    existing
                        .get("kubeconfig")
                        .or(existing.get("manifests"))
                        .map_or("its own source".to_string(), |v| v.to_string())
                )));
            }
            return Ok(false);
        }
        let mut member = json!({"name": opts.name, "kubeconfig": path});
        if let Some(network) = &opts.network {
            member["network"] = json!(network);
        }
        members.push(member);
        if text.contains('#') {
            warnings.push(format!(
                "the comments of bowline.yaml in ConfigMap {ns}/{NAME} were not kept (it is rewritten from its parsed form)"
            ));
        }
        let rendered = serde_saphyr::to_string(&config)
            .map_err(|e| config_error(format!("cannot be written back: {e}")))?;
        map.data
            .get_or_insert_default()
            .insert("bowline.yaml".into(), rendered);
        match maps.replace(NAME, &PostParams::default(), &map).await {
            Ok(_) => return Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => {
                return Err(JoinError::Bowline {
                    what: format!("updating ConfigMap {NAME}"),
                    namespace: ns.to_string(),
                    message: e.to_string(),
                });
            }
        }
    }
    Err(config_error(
        "changed three times while being updated; run the command again".into(),
    ))
}

/// Restarts Bowline's replicas so that they read the new configuration, as `kubectl rollout
/// restart` does (an annotation of the pod template). False, with a warning, when the
/// Deployment is not there or cannot mount the members' Secret.
async fn restart(
    client: &kube::Client,
    ns: &str,
    warnings: &mut Vec<String>,
) -> Result<bool, JoinError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment = match deployments.get_opt(NAME).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            warnings.push(format!(
                "no Deployment {ns}/{NAME}: restart Bowline yourself so that it reads the new member"
            ));
            return Ok(false);
        }
        Err(e) => {
            return Err(JoinError::Bowline {
                what: format!("reading Deployment {NAME}"),
                namespace: ns.to_string(),
                message: e.to_string(),
            });
        }
    };
    let mounts_members = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.volumes.as_ref())
        .is_some_and(|v| {
            v.iter().any(|v| {
                v.secret
                    .as_ref()
                    .is_some_and(|s| s.secret_name.as_deref() == Some(MEMBERS_SECRET))
            })
        });
    if !mounts_members {
        warnings.push(format!(
            "Deployment {ns}/{NAME} does not mount Secret {MEMBERS_SECRET} at {MEMBERS_DIR} (installed by an older `bowline install`?): apply `bowline install` again"
        ));
    }
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "bowline.io/restartedAt": jiff::Timestamp::now().to_string()}}}}});
    deployments
        .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| JoinError::Bowline {
            what: format!("restarting Deployment {NAME}"),
            namespace: ns.to_string(),
            message: e.to_string(),
        })?;
    Ok(true)
}
