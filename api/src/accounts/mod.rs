//! The accounts room: users, sign-in and tokens ([`routes`]), and the OpenID Connect client
//! ([`oidc`]).

pub mod oidc;
pub mod routes;
