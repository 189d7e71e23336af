//! Depot's Rust SDK.
//!
//! [`Client`] has a typed method per endpoint; [`wire`] holds the request and response types,
//! the very ones the server serialises (it derives its OpenAPI schemas from them with the
//! `openapi` feature), so the client and the server cannot disagree about a field. Operations
//! can be followed through their event stream ([`Client::operation_events`], parsed by
//! [`sse`]) or waited for ([`Client::wait`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), depot_client::Error> {
//! use depot_client::{Client, wire::{CreatePackageRequest, OperationKind}};
//! let depot = Client::new("http://127.0.0.1:8000").with_api_key("dpk_…");
//! let package = depot.create_package(&CreatePackageRequest::new("left-pad", "1.3.0")).await?;
//! let op = depot.start(package.id, OperationKind::Download).await?;
//! let done = depot.wait(op.id).await?;
//! println!("{:?}", done.status);
//! # Ok(()) }
//! ```

mod client;
pub mod sse;
pub mod wire;

pub use client::{
    Client, Credentials, Error, Response, UploadOptions, content_digest, name_segment,
};
