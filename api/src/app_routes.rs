//! The business routes under `/api/v1`, one `configure` per component room.

use crate::{accounts, api_keys, http::whoami, packages, passwords};
use actix_web::web;

/// Business routes under `/api/v1`.
pub fn configure_v1(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/passwords").route(web::get().to(passwords::routes::generate)))
        .service(web::resource("/auth/whoami").route(web::get().to(whoami::whoami)))
        .configure(accounts::routes::configure)
        .configure(api_keys::routes::configure)
        .configure(packages::routes::configure);
}
