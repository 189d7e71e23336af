//! The API-keys room: `/api/v1/api-keys` and `/api/v1/audit-events` ([`routes`]).

pub mod routes;
