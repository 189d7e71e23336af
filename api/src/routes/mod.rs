//! Thin handlers: extract → call a service → map to a DTO.

pub mod health;

use actix_web::web;

/// Business routes under `/api/v1`.
pub fn configure_v1(_cfg: &mut web::ServiceConfig) {}
