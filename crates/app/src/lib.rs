//! The composition root: reads the configuration, starts one source per member, applies their
//! events to the registry and serves the admin endpoints.

pub mod agent;
pub mod auth;
pub mod ca_api;
pub mod config;
pub mod demo;
mod dns;
pub mod inspect;
mod leader;
mod listeners;
mod mcs;
mod members;
pub mod offline;
pub mod onboarding;
mod pump;
mod run;
pub mod state;
mod vm;
mod xds;

pub use crate::{
    listeners::Listeners,
    run::{Running, start},
};
