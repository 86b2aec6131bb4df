//! Virtual machines. [`registration`] builds the WorkloadEntry of a VM whose proxy connects
//! with `AUTO_REGISTER_GROUP` set, as Istio's auto-registration does.

pub mod lifecycle;
pub mod registration;
