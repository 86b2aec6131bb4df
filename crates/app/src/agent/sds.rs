//! SDS for Envoy over a Unix socket: `envoy.service.secret.v3.SecretDiscoveryService`,
//! state of the world (`StreamSecrets`, what Envoy's `sds_config` with a gRPC
//! `api_config_source` opens, one stream per secret) and `FetchSecrets`. Two secrets, as
//! Istio's agent serves them: [`DEFAULT`] (the workload's certificate chain and key) and
//! [`ROOTCA`] (the root to validate peers with). A stream is answered when it names new
//! secrets and whenever the certificate rotates; an ACK gets no answer, a NACK is logged.

use std::{path::Path, pin::Pin, sync::Arc};

use anyhow::Context;
use envoy_types::pb::{
    envoy::{
        config::core::v3::{DataSource, data_source::Specifier},
        extensions::transport_sockets::tls::v3::{
            CertificateValidationContext, Secret, TlsCertificate, secret,
        },
        service::{
            discovery::v3::{
                DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
            },
            secret::v3::secret_discovery_service_server::{
                SecretDiscoveryService, SecretDiscoveryServiceServer,
            },
        },
    },
    google::protobuf::Any,
};
use futures::Stream;
use prost::Message as _;
use tokio::{net::UnixListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use super::Issued;

/// The workload's certificate and key.
pub const DEFAULT: &str = "default";
/// The root peers are validated with.
pub const ROOTCA: &str = "ROOTCA";
/// The type of an SDS resource.
pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Binds the SDS socket at `path`, replacing a stale one (a socket file left by an agent that
/// died); refuses to replace anything that is not a socket.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("sdsSocket: cannot create {}", parent.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).with_context(|| {
                format!("sdsSocket: cannot remove the stale {}", path.display())
            })?;
        }
        Ok(_) => anyhow::bail!(
            "sdsSocket: {} exists and is not a socket; remove it or choose another path",
            path.display()
        ),
        Err(_) => {}
    }
    UnixListener::bind(path)
        .with_context(|| format!("sdsSocket: cannot listen on {}", path.display()))
}

/// Serves SDS on `listener` from `current` until `shutdown`.
pub async fn serve(
    listener: UnixListener,
    current: watch::Receiver<Option<Arc<Issued>>>,
    shutdown: CancellationToken,
) {
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let served = tonic::transport::Server::builder()
        .add_service(SecretDiscoveryServiceServer::new(Sds { current }))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::error!("the SDS server stopped: {e}");
    }
}

/// The secret `name` of `issued`, if it is one this agent serves.
pub fn secret(name: &str, issued: &Issued) -> Option<Secret> {
    let inline = |text: &str| DataSource {
        specifier: Some(Specifier::InlineBytes(text.as_bytes().to_vec())),
        ..DataSource::default()
    };
    let kind = match name {
        DEFAULT => secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(&issued.chain_pem)),
            private_key: Some(inline(&issued.key_pem)),
            ..TlsCertificate::default()
        }),
        ROOTCA => secret::Type::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(inline(&issued.root_pem)),
            ..CertificateValidationContext::default()
        }),
        _ => return None,
    };
    Some(Secret {
        name: name.to_string(),
        r#type: Some(kind),
    })
}

/// A response with the secrets of `names` this agent serves.
fn response(names: &[String], issued: &Issued, nonce: u64) -> DiscoveryResponse {
    let resources = names
        .iter()
        .filter_map(|name| secret(name, issued))
        .map(|s| Any {
            type_url: SECRET_TYPE.into(),
            value: s.encode_to_vec(),
        })
        .collect();
    DiscoveryResponse {
        version_info: issued.serial.to_string(),
        resources,
        type_url: SECRET_TYPE.into(),
        nonce: nonce.to_string(),
        ..DiscoveryResponse::default()
    }
}

struct Sds {
    current: watch::Receiver<Option<Arc<Issued>>>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl SecretDiscoveryService for Sds {
    type StreamSecretsStream = ResponseStream;
    type DeltaSecretsStream = DeltaStream;

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let mut requests = request.into_inner();
        let mut current = self.current.clone();
        let (send, receive) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut names: Option<Vec<String>> = None;
            let mut sent: Option<u64> = None;
            let mut nonce = 0u64;
            loop {
                tokio::select! {
                    request = requests.message() => match request {
                        Ok(Some(request)) => {
                            if let Some(error) = &request.error_detail {
                                warn!(secrets = ?request.resource_names, "Envoy refused the secrets: {}", error.message);
                            }
                            let unknown: Vec<&String> = request
                                .resource_names
                                .iter()
                                .filter(|n| n.as_str() != DEFAULT && n.as_str() != ROOTCA)
                                .collect();
                            if !unknown.is_empty() {
                                warn!(secrets = ?unknown, "asked for secrets this agent does not serve (only default and ROOTCA)");
                            }
                            if names.as_ref() == Some(&request.resource_names) {
                                continue; // an ACK or NACK of what was sent
                            }
                            names = Some(request.resource_names);
                            sent = None;
                        }
                        Ok(None) | Err(_) => return,
                    },
                    changed = current.changed() => if changed.is_err() { return },
                }
                let Some(names) = &names else { continue };
                let issued = current.borrow_and_update().clone();
                let Some(issued) = issued else { continue }; // answered once there is one
                if sent == Some(issued.serial) {
                    continue;
                }
                nonce += 1;
                debug!(secrets = ?names, version = issued.serial, "pushing secrets");
                if send
                    .send(Ok(response(names, &issued, nonce)))
                    .await
                    .is_err()
                {
                    return;
                }
                sent = Some(issued.serial);
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receive),
        )))
    }

    async fn delta_secrets(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        Err(Status::unimplemented(
            "this agent serves SDS as state of the world (StreamSecrets); use api_type GRPC",
        ))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        let issued = self.current.borrow().clone();
        let issued = issued.ok_or_else(|| Status::unavailable("no certificate yet"))?;
        Ok(Response::new(response(
            &request.into_inner().resource_names,
            &issued,
            0,
        )))
    }
}
