//! Istio's certificate API, `istio.v1.auth.IstioCertificateService/CreateCertificate`, on the
//! TLS xDS listener: a proxy sends a CSR for the key it keeps, and gets the chain of a
//! certificate for the identity its credential proves (`bowline_vm::workload`).
//!
//! Credentials (`authorization: Bearer …`):
//! - a Bowline VM token, whose identity is the service account of its WorkloadGroup's
//!   template (`default` when the template names none) in the group's namespace;
//! - a Kubernetes service-account token, checked with a TokenReview (for one of
//!   `ca.audiences`) in the member whose cluster id the `ClusterID` metadata names (the only
//!   Kubernetes member when there is one and no `ClusterID`); its identity is that service
//!   account.
//!
//! - no token, and a client certificate this CA issued (renewal: the TLS handshake checked
//!   that it chains to the root and is valid now), whose SPIFFE URI is the identity.

use std::{sync::Arc, time::Duration};

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

/// The gRPC path of `CreateCertificate`.
pub const CREATE_CERTIFICATE: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

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

/// Reason label of a refused certificate.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// The CA's metrics: certificates issued and refused, and the earliest expiry among the
/// certificates this process issued that are still valid.
#[derive(Default)]
pub struct CaMetrics {
    issued: prometheus_client::metrics::counter::Counter,
    refused: prometheus_client::metrics::family::Family<
        ReasonLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    earliest_expiry: prometheus_client::metrics::gauge::Gauge,
    /// Expiry (Unix seconds) → certificates issued with it.
    expiries: parking_lot::Mutex<std::collections::BTreeMap<i64, u64>>,
    /// Each identity issued to, with its latest certificate: for `/debug/identities`.
    identities: parking_lot::Mutex<std::collections::BTreeMap<String, Issued>>,
}

/// The latest certificate of one identity, as `/debug/identities` shows it (never a key).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Issued {
    /// When the latest was issued (RFC 3339).
    issued_at: String,
    /// When it expires (RFC 3339).
    expires_at: String,
    /// Certificates issued to this identity since the start.
    count: u64,
}

impl CaMetrics {
    /// Registers them.
    pub fn register(&self, metrics: &mut prometheus_client::registry::Registry) {
        metrics.register(
            "bowline_ca_certificates_issued",
            "Workload certificates issued (CreateCertificate).",
            self.issued.clone(),
        );
        metrics.register(
            "bowline_ca_certificates_refused",
            "Certificate requests refused, by gRPC status (unauthenticated, permission_denied, invalid_argument, unavailable, internal).",
            self.refused.clone(),
        );
        metrics.register(
            "bowline_ca_earliest_expiry_seconds",
            "Unix time of the earliest expiry among the certificates this process issued that are still valid (0: none).",
            self.earliest_expiry.clone(),
        );
    }

    /// `/debug/identities`: every identity issued to since the start, its latest
    /// certificate's times and how many it got.
    pub fn identities(&self) -> serde_json::Value {
        serde_json::to_value(&*self.identities.lock()).unwrap_or_default()
    }

    fn issued(&self, identity: &Identity, expires: i64) {
        let now = jiff::Timestamp::now();
        let expires_at = jiff::Timestamp::from_second(expires)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let mut identities = self.identities.lock();
        let entry = identities.entry(identity.spiffe()).or_insert(Issued {
            issued_at: String::new(),
            expires_at: String::new(),
            count: 0,
        });
        entry.issued_at = now.to_string();
        entry.expires_at = expires_at;
        entry.count += 1;
        drop(identities);
        self.issued.inc();
        let now = jiff::Timestamp::now().as_second();
        let mut expiries = self.expiries.lock();
        *expiries.entry(expires).or_default() += 1;
        expiries.retain(|at, _| *at > now);
        self.earliest_expiry
            .set(expiries.keys().next().copied().unwrap_or(0));
    }

    fn refused(&self, status: &Status) {
        let reason = match status.code() {
            tonic::Code::Unauthenticated => "unauthenticated",
            tonic::Code::PermissionDenied => "permission_denied",
            tonic::Code::InvalidArgument => "invalid_argument",
            tonic::Code::Unavailable => "unavailable",
            _ => "internal",
        };
        self.refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }
}

/// The CA service: who may have which certificate.
pub struct CaService {
    ca: Arc<RootCa>,
    tokens: Arc<TokenStore>,
    registry: Shared,
    config: Ca,
    /// Reviews service-account tokens.
    reviewer: Arc<crate::auth::Reviewer>,
    metrics: Arc<CaMetrics>,
}

/// The gRPC service of [`CaService`].
#[derive(Clone)]
pub struct CaServer(Arc<CaService>);

impl CaServer {
    /// A server signing with `ca`, checking tokens in `tokens`, finding WorkloadGroups in
    /// `registry`.
    pub fn new(
        ca: Arc<RootCa>,
        tokens: Arc<TokenStore>,
        registry: Shared,
        config: Ca,
        reviewer: Arc<crate::auth::Reviewer>,
        metrics: Arc<CaMetrics>,
    ) -> Self {
        Self(Arc::new(CaService {
            ca,
            tokens,
            registry,
            config,
            reviewer,
            metrics,
        }))
    }
}

impl CaService {
    async fn create(
        self: Arc<Self>,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let metrics = self.metrics.clone();
        let answer = self.answer(request).await;
        match &answer {
            Ok(_) => {}
            Err(status) => metrics.refused(status),
        }
        answer
    }

    async fn answer(
        self: Arc<Self>,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        // Renewal presents the certificate this CA issued (the TLS handshake verified it).
        let identity = crate::auth::authenticate(
            request.remote_addr(),
            request.metadata(),
            request.extensions(),
            &self.tokens,
            &self.reviewer,
        )
        .await
        .and_then(|caller| self.identity(&caller))
        .inspect_err(|status| warn!("certificate refused: {}", status.message()))?;
        let service = self.clone();
        tokio::task::spawn_blocking(move || service.sign(&identity, request.into_inner()))
            .await
            .map_err(|e| Status::internal(format!("the signer failed: {e}")))?
    }

    fn sign(
        &self,
        identity: &Identity,
        request: IstioCertificateRequest,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let ttl = match u64::try_from(request.validity_duration) {
            Ok(0) | Err(_) => DEFAULT_TTL,
            Ok(seconds) => Duration::from_secs(seconds),
        }
        .min(self.config.max_ttl);
        let chain = self
            .ca
            .issue_workload(&request.csr, identity, ttl, bowline_vm::ca::now())
            .map_err(|e| {
                warn!(identity = %identity, "certificate refused: {e}");
                match e {
                    IssueError::BadCsr(_) => Status::invalid_argument(e.to_string()),
                    IssueError::OtherIdentity { .. } => Status::permission_denied(e.to_string()),
                    IssueError::Sign(_) => Status::internal(e.to_string()),
                }
            })?;
        info!(identity = %identity, ttl = ?ttl, "workload certificate issued");
        // What the certificate says (the TTL may have been cut to the root's end).
        let expires = x509_parser::pem::parse_x509_pem(chain[0].as_bytes())
            .ok()
            .and_then(|(_, pem)| Some(pem.parse_x509().ok()?.validity().not_after.timestamp()))
            .unwrap_or_default();
        self.metrics.issued(identity, expires);
        Ok(Response::new(IstioCertificateResponse {
            cert_chain: chain,
        }))
    }

    /// The identity `caller` proved.
    fn identity(&self, caller: &Caller) -> Result<Identity, Status> {
        let scope = match caller {
            Caller::Token(scope) => scope,
            Caller::Workload { identity, .. } => return Ok(identity.clone()),
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
        let group =
            crate::vm::find_group(&self.registry.read(), &scope.namespace, &scope.group, None)
                .map(|(_, group)| group);
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
        Box::pin(self.0.clone().create(request))
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
            CREATE_CERTIFICATE => Box::pin(async move {
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
