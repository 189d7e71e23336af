//! The password generator's room: `GET /api/v1/passwords` ([`routes`]).

pub mod routes;
pub mod settings;

use crate::component::Component;
use actix_web::web;

/// What the generator's handler needs: the `[password]` settings.
pub struct PasswordsRoom {
    pub password_defaults: depot_password::Defaults,
    pub password_require_scope: bool,
}

impl Component for web::Data<PasswordsRoom> {
    fn app_data(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.clone());
    }
}
