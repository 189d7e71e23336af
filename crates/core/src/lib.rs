//! Depot's core: the ports every component is written against, the shared newtypes, and the
//! principal/permission model.
//!
//! This crate is deliberately light: no web framework, no database driver, no AMQP client.
//! `cargo tree -p depot-core` must stay free of actix, sea-orm, sqlx and lapin.

pub mod audit;
pub mod clock;
pub mod egress;
pub mod error;
pub mod idempotency;
pub mod principal;
pub mod queue;
pub mod repo;
pub mod secrets;
pub mod text;
pub mod trace;

pub use audit::{Actor, AuditEvent};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::ValidationError;
pub use principal::{Owner, OwnerKind, Permission, Principal, PrincipalKind};
pub use repo::{Cursor, Page, PageRequest, RepoError};
