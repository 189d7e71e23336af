//! The accounts room: users, sign-in and tokens ([`routes`]), and the OpenID Connect client
//! ([`oidc`]).

pub mod oidc;
pub mod routes;
pub mod settings;

use crate::component::Component;
use crate::http::metrics::Metrics;
use actix_web::web;
use depot_accounts::{AccountService, PendingLoginRepository};
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::watch;

/// What the accounts handlers share.
pub struct AccountsRoom {
    pub accounts: Arc<AccountService>,
    pub pending_logins: Arc<dyn PendingLoginRepository>,
    pub oidc: Option<Arc<oidc::OidcClient>>,
    pub clock: Arc<dyn depot_core::Clock>,
    pub metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl Component for web::Data<AccountsRoom> {
    fn app_data(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(self.clone());
    }

    /// Hears of users other replicas disabled or demoted.
    fn loops(&self, stop: watch::Receiver<bool>) -> Vec<BoxFuture<'static, ()>> {
        vec![Box::pin(self.accounts.revocations().run(stop))]
    }
}
