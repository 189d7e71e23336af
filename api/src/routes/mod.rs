//! Thin handlers: extract → call a service → map to a DTO.

pub mod accounts;
pub mod api_keys;
pub mod health;
pub mod packages;
pub mod passwords;
pub mod whoami;

use actix_web::web;

/// Business routes under `/api/v1`.
pub fn configure_v1(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/passwords").route(web::get().to(passwords::generate)))
        .service(web::resource("/auth/whoami").route(web::get().to(whoami::whoami)))
        .configure(accounts::configure)
        .configure(api_keys::configure)
        .configure(packages::configure);
}
