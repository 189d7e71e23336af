//! The package registry. A package moves Created → Downloaded → Active (and back to Downloaded)
//! only through long-running operations: the API records the operation and an outbox message in
//! one transaction, a relay publishes the message, and a worker runs the operation through an
//! [`executor::Executor`] and applies the status change exactly once.

pub mod artifacts;
pub mod cache;
pub mod executor;
#[cfg(test)]
pub(crate) mod fakes;
pub mod model;
pub mod names;
pub mod ports;
pub mod publish;
pub mod relay;
pub mod runner;
pub mod service;
pub mod signature;
pub mod version;
pub mod watch;

pub use model::{
    Activation, Operation, OperationError, OperationKind, OperationStatus, Package, PackageStatus,
    VersionRef,
};
pub use service::{PackageError, PackageService};

/// The queue operations travel on.
pub const OPERATIONS_QUEUE: &str = "operations";
