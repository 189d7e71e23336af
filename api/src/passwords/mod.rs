//! The password generator's room: `GET /api/v1/passwords` ([`routes`]).

pub mod routes;
