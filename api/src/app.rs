//! The wiring: what Depot is made of. Each component has a room (`packages/`, `api_keys/`,
//! `accounts/`, `passwords/`) with its route table, its state and its jobs; this file lists them.
//! `bootstrap` builds the adapters and services this file hands to the rooms, and `startup`
//! serves the result (see docs/ARCHITECTURE.md for a request's and an operation's path).

use crate::accounts::AccountsRoom;
use crate::api_keys::ApiKeysRoom;
use crate::bootstrap::{Adapters, Services};
use crate::component::Component;
use crate::http::routes::Route;
use crate::http::state::HttpState;
use crate::http::{health, whoami};
use crate::packages::PackagesRoom;
use crate::passwords::PasswordsRoom;
use crate::settings::Settings;
use crate::{accounts, api_keys, packages, passwords};
use actix_web::web;
use std::sync::Arc;

/// Every route Depot serves (see `http::routes`): the shared ones, then each room's.
pub fn route_table() -> Vec<Route> {
    [
        health::routes(),
        whoami::routes(),
        passwords::routes::routes(),
        accounts::routes::routes(),
        api_keys::routes::routes(),
        packages::routes::routes(),
        packages::names::routes(),
        packages::transfer::routes(),
        packages::signatures::routes(),
    ]
    .concat()
}

/// The jobs a worker runs, each room's (a room without queued work adds none).
pub fn jobs(
    settings: &Settings,
    adapters: &Adapters,
) -> Result<Vec<Arc<dyn crate::worker::JobHandler>>, crate::bootstrap::StartupError> {
    packages::jobs::jobs(settings, adapters)
}

/// The OpenAPI document: the route table's, with what the rooms add that derived schemas
/// cannot say.
pub fn openapi(settings: &Settings) -> serde_json::Value {
    let doc = crate::http::docs::openapi(&route_table());
    let mut json = serde_json::to_value(&doc).expect("the document serialises");
    accounts::routes::refine_docs(&mut json, &settings.accounts);
    api_keys::routes::refine_docs(&mut json);
    packages::names::refine_docs(&mut json);
    json
}

/// The rooms' states, and the shared machinery's, from the services.
pub fn components(settings: &Settings, adapters: &Adapters, services: Services) -> HttpState {
    let packages = web::Data::new(PackagesRoom {
        packages: services.packages,
        metrics: adapters.metrics.clone(),
        relay: services.relay,
        package_cache: adapters.package_cache.clone(),
        package_lists: Default::default(),
        event_streams: Arc::new(crate::packages::streams::EventStreamSlots::new(
            settings.operations.max_event_streams,
            settings.operations.max_event_streams_per_principal,
            std::time::Duration::from_secs(settings.operations.max_event_stream_seconds),
        )),
        operation_watch: adapters.operation_watch.clone(),
    });
    let api_keys = web::Data::new(ApiKeysRoom {
        api_keys: services.api_keys,
        verifier: services.verifier.clone(),
    });
    let accounts = web::Data::new(AccountsRoom {
        accounts: services.accounts.clone(),
        pending_logins: services.pending_logins,
        oidc: services.oidc,
        clock: adapters.clock.clone(),
        metrics: adapters.metrics.clone(),
    });
    let passwords = web::Data::new(PasswordsRoom {
        password_defaults: settings.password.defaults(),
        password_require_scope: settings.password.require_scope,
    });
    let components: Vec<Arc<dyn Component>> = vec![
        Arc::new(api_keys),
        Arc::new(accounts),
        Arc::new(packages),
        Arc::new(passwords),
    ];
    HttpState {
        db: adapters.db.clone(),
        queue_health: adapters.queue_health.clone(),
        verifier: services.verifier,
        admin_secret: services.admin_secret,
        allow_query_keys: settings.auth.allow_query_keys,
        failed_credentials: Arc::new(crate::http::throttle::FailedCredentials::new(
            settings.auth.failed_credentials_per_minute,
        )),
        sign_in_budgets: Arc::new(crate::http::throttle::SignInBudgets::new(
            settings.auth.sign_ins_per_minute,
            settings.auth.registrations_per_hour,
            settings.oidc.pending_logins_per_address,
        )),
        accounts: services.accounts,
        idempotency: Arc::new(depot_store::SeaOrmIdempotencyStore::new(
            adapters.db.clone(),
        )),
        clock: adapters.clock.clone(),
        metrics: adapters.metrics.clone(),
        trust_client_traceparent: settings.server.trust_client_traceparent,
        trusted_proxies: settings
            .server
            .trusted_proxies
            .iter()
            .filter_map(|p| p.parse::<std::net::IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect(),
        components,
    }
}

#[cfg(test)]
mod tests {
    use super::route_table;
    use crate::http::routes::Access::{self, *};
    use depot_core::Permission::*;

    /// Who may call each route, written out: a route whose access changes (a scope dropped, a
    /// route made public) fails here, whatever the table and the document agree on.
    #[test]
    fn every_route_has_the_access_written_here() {
        const OPS: Access = AnyScope(&[PackagesRead, OperationsRead]);
        let expected: Vec<(&str, &str, Access)> = vec![
            ("GET", "/health/live", Public),
            ("GET", "/health/ready", Public),
            ("GET", "/.well-known/jwks.json", Public),
            ("GET", "/api/v1/auth/whoami", Authenticated),
            ("GET", "/api/v1/passwords", Optional),
            ("POST", "/api/v1/auth/register", Public),
            ("POST", "/api/v1/auth/login", Public),
            ("POST", "/api/v1/auth/refresh", Public),
            ("POST", "/api/v1/auth/logout", Public),
            ("GET", "/api/v1/auth/oidc/login", Public),
            ("GET", "/api/v1/auth/oidc/callback", Public),
            ("GET", "/api/v1/users/me", User),
            ("GET", "/api/v1/users", Scope(UsersAdmin)),
            ("GET", "/api/v1/users/{id}", Scope(UsersAdmin)),
            ("PATCH", "/api/v1/users/{id}", Scope(UsersAdmin)),
            ("POST", "/api/v1/api-keys", Scope(ApiKeysAdmin)),
            ("GET", "/api/v1/api-keys", Scope(ApiKeysAdmin)),
            ("GET", "/api/v1/api-keys/{id}", Scope(ApiKeysAdmin)),
            ("DELETE", "/api/v1/api-keys/{id}", Scope(ApiKeysAdmin)),
            ("POST", "/api/v1/api-keys/{id}/revoke", Scope(ApiKeysAdmin)),
            (
                "POST",
                "/api/v1/api-keys/{id}/reactivate",
                Scope(ApiKeysAdmin),
            ),
            ("POST", "/api/v1/api-keys/{id}/renew", Scope(ApiKeysAdmin)),
            ("POST", "/api/v1/api-keys/{id}/rotate", Scope(ApiKeysAdmin)),
            ("GET", "/api/v1/api-keys/{id}/usage", Scope(ApiKeysAdmin)),
            ("GET", "/api/v1/audit-events", Scope(ApiKeysAdmin)),
            ("POST", "/api/v1/packages", Scope(PackagesWrite)),
            ("GET", "/api/v1/packages", Scope(PackagesRead)),
            ("GET", "/api/v1/packages/{id}", Scope(PackagesRead)),
            ("PATCH", "/api/v1/packages/{id}", Scope(PackagesWrite)),
            ("DELETE", "/api/v1/packages/{id}", Scope(PackagesWrite)),
            (
                "PUT",
                "/api/v1/packages/{id}/signature",
                Scope(PackagesWrite),
            ),
            (
                "GET",
                "/api/v1/packages/{id}/signature",
                Scope(PackagesRead),
            ),
            (
                "POST",
                "/api/v1/packages/{id}/download",
                Scope(PackagesWrite),
            ),
            (
                "POST",
                "/api/v1/packages/{id}/activate",
                Scope(PackagesWrite),
            ),
            (
                "POST",
                "/api/v1/packages/{id}/deactivate",
                Scope(PackagesWrite),
            ),
            ("GET", "/api/v1/operations", OPS),
            ("GET", "/api/v1/operations/{id}", OPS),
            (
                "POST",
                "/api/v1/operations/{id}/cancel",
                Scope(PackagesWrite),
            ),
            ("GET", "/api/v1/operations/{id}/events", OPS),
            ("GET", "/api/v1/package-names", Scope(PackagesRead)),
            ("GET", "/api/v1/package-names/{name}", Scope(PackagesRead)),
            (
                "GET",
                "/api/v1/package-names/{name}/history",
                Scope(PackagesRead),
            ),
            (
                "POST",
                "/api/v1/package-names/{name}/rollback",
                Scope(PackagesWrite),
            ),
            (
                "POST",
                "/api/v1/package-names/{name}/prune",
                Scope(PackagesWrite),
            ),
            ("POST", "/api/v1/packages/{id}/yank", Scope(PackagesWrite)),
            ("POST", "/api/v1/packages/{id}/unyank", Scope(PackagesWrite)),
            (
                "PUT",
                "/api/v1/packages/{id}/artifact",
                Scope(PackagesWrite),
            ),
            ("GET", "/api/v1/packages/{id}/artifact", Scope(PackagesRead)),
            (
                "HEAD",
                "/api/v1/packages/{id}/artifact",
                Scope(PackagesRead),
            ),
            (
                "GET",
                "/api/v1/package-names/{name}/active/artifact",
                Scope(PackagesRead),
            ),
            (
                "HEAD",
                "/api/v1/package-names/{name}/active/artifact",
                Scope(PackagesRead),
            ),
        ];
        let mut expected: Vec<(String, String, Access)> = expected
            .into_iter()
            .map(|(m, p, a)| (m.to_owned(), p.to_owned(), a))
            .collect();
        let mut actual: Vec<(String, String, Access)> = route_table()
            .into_iter()
            .map(|r| (r.method.to_string(), r.path, r.access))
            .collect();
        let key = |r: &(String, String, Access)| (r.1.clone(), r.0.clone());
        expected.sort_by_key(key);
        actual.sort_by_key(key);
        assert_eq!(actual, expected);
    }
}
