//! The `depot` command line, one module per command: `serve` (and `worker`), `migrate`,
//! `users`, `config`, `password`, `healthcheck`, and `packages` (a client of a running Depot).

pub mod config;
pub mod fsck;
pub mod healthcheck;
pub mod migrate;
pub mod packages;
pub mod password;
pub mod serve;
pub mod transfer;
pub mod users;
