//! Virtual machines. [`registration`] builds the WorkloadEntry of a VM whose proxy connects
//! with `AUTO_REGISTER_GROUP` set, as Istio's auto-registration does; [`ca`] is Bowline's
//! root CA and the serving certificate of the xDS TLS listener; [`tokens`] the bearer tokens
//! scoped to one group and namespace, and the rule deciding who may register what;
//! [`workload`] the certificates of workload identities (SPIFFE), signed from a CSR.

pub mod bundle;
pub mod ca;
pub mod lifecycle;
pub mod plugin;
pub mod registration;
pub mod tokens;
pub mod workload;
