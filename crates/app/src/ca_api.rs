//! Istio's certificate API, `istio.v1.auth.IstioCertificateService/CreateCertificate`, on the
//! TLS xDS listener: a proxy sends a CSR for the key it keeps, and gets the chain of a
//! certificate for the identity its credential proves (`bowline_vm::workload`).
//!
//! Credentials accepted so far: a Bowline VM token (`authorization: Bearer …`), whose
//! identity is the service account of its WorkloadGroup's template (`default` when the
//! template names none) in the group's namespace. Kubernetes service-account JWTs and renewal
//! with an issued certificate are not accepted yet (#15).

use std::{sync::Arc, time::Duration};

use bowline_model::{MemberName, Object, ObjectKind};
use bowline_registry::Shared;
use bowline_vm::{
    ca::RootCa,
    tokens::{Caller, TokenStore},
    workload::{DEFAULT_TTL, Identity, IssueError},
};
use tonic::{
    Request, Response, Status,
    codegen::{BoxFuture, Context, Poll, Service, http},
    server::{NamedService, UnaryService},
};
use tracing::{info, warn};

use crate::config::Ca;

/// `istio.v1.auth.IstioCertificateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// The PEM CSR.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// The requested lifetime, in seconds (0: the default).
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Impersonation and other options (`ImpersonatedIdentity`); not honoured.
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<envoy_types::pb::google::protobuf::Struct>,
}

/// `istio.v1.auth.IstioCertificateResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// The chain, leaf first and root last, one PEM per element.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}

/// The CA service: who may have which certificate.
pub struct CaService {
    ca: Arc<RootCa>,
    tokens: Arc<TokenStore>,
    registry: Shared,
    config: Ca,
}

/// The gRPC service of [`CaService`].
#[derive(Clone)]
pub struct CaServer(Arc<CaService>);

impl CaServer {
    /// A server signing with `ca`, checking tokens in `tokens`, finding WorkloadGroups in
    /// `registry`.
    pub fn new(ca: Arc<RootCa>, tokens: Arc<TokenStore>, registry: Shared, config: Ca) -> Self {
        Self(Arc::new(CaService {
            ca,
            tokens,
            registry,
            config,
        }))
    }
}

impl CaService {
    fn create(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let caller = crate::auth::caller_of(
            request.metadata(),
            request.extensions(),
            request.remote_addr(),
            Some(&self.tokens),
        );
        let identity = self.identity(&caller).inspect_err(|status| {
            warn!(caller = %caller, "certificate refused: {}", status.message());
        })?;
        let request = request.into_inner();
        let ttl = match u64::try_from(request.validity_duration) {
            Ok(0) | Err(_) => DEFAULT_TTL,
            Ok(seconds) => Duration::from_secs(seconds),
        }
        .min(self.config.max_ttl);
        let chain = self
            .ca
            .issue_workload(&request.csr, &identity, ttl, bowline_vm::ca::now())
            .map_err(|e| {
                warn!(identity = %identity, "certificate refused: {e}");
                match e {
                    IssueError::BadCsr(_) => Status::invalid_argument(e.to_string()),
                    IssueError::OtherIdentity { .. } => Status::permission_denied(e.to_string()),
                    IssueError::Sign(_) => Status::internal(e.to_string()),
                }
            })?;
        info!(identity = %identity, ttl = ?ttl, "workload certificate issued");
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: chain,
        }))
    }

    /// The identity `caller` proved.
    fn identity(&self, caller: &Caller) -> Result<Identity, Status> {
        let scope = match caller {
            Caller::Token(scope) => scope,
            Caller::Anonymous(why) => {
                return Err(Status::unauthenticated(format!(
                    "a certificate needs a credential: {why}"
                )));
            }
            // Not on the TLS port, which trusts no address.
            Caller::Loopback => {
                return Err(Status::unauthenticated(
                    "a certificate needs a credential; loopback callers prove no identity",
                ));
            }
        };
        let registry = self.registry.read();
        let group = registry.members().iter().find_map(|member| {
            registry
                .objects(
                    &MemberName::new(member.name.as_str()),
                    ObjectKind::WorkloadGroup,
                )
                .into_iter()
                .find_map(|object| match object {
                    Object::WorkloadGroup(group)
                        if *group.meta.namespace == *scope.namespace
                            && *group.meta.name == *scope.group =>
                    {
                        Some(group)
                    }
                    _ => None,
                })
        });
        let Some(group) = group else {
            return Err(Status::permission_denied(format!(
                "token {} is for WorkloadGroup {}/{}, which no member holds: its template's serviceAccount names the identity",
                scope.id, scope.namespace, scope.group
            )));
        };
        let account = match group.template.service_account.as_str() {
            "" => "default".to_string(),
            account => account.to_string(),
        };
        Ok(Identity {
            trust_domain: self.config.trust_domain.clone(),
            namespace: scope.namespace.clone(),
            service_account: account,
        })
    }
}

impl NamedService for CaServer {
    const NAME: &'static str = "istio.v1.auth.IstioCertificateService";
}

/// `CreateCertificate`, as tonic's unary handler calls it.
struct Create(Arc<CaService>);

impl UnaryService<IstioCertificateRequest> for Create {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<IstioCertificateRequest>) -> Self::Future {
        let service = self.0.clone();
        // Signing is a few hundred microseconds of CPU: off the async workers anyway.
        Box::pin(async move {
            tokio::task::spawn_blocking(move || service.create(request))
                .await
                .map_err(|e| Status::internal(format!("the signer failed: {e}")))?
        })
    }
}

impl<B> Service<http::Request<B>> for CaServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = self.0.clone();
        match request.uri().path() {
            "/istio.v1.auth.IstioCertificateService/CreateCertificate" => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(Create(service), request).await)
            }),
            path => {
                let status = Status::unimplemented(format!("no method {path}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
