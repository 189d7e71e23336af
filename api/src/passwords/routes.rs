//! `GET /api/v1/passwords`: the password generator, compatible with the original service.

use crate::http::auth::MaybeAuth;
use crate::http::error::ApiError;
use crate::http::routes::{Access, Route};
use crate::passwords::PasswordsRoom;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use depot_client::wire::PasswordResponse;
use depot_password::Generation;
use serde::Deserialize;
use utoipa::IntoParams;

/// Query parameters (all optional; defaults come from the `[password]` settings).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the contract; parsing is `depot_password::Generation::from_pairs`
pub struct PasswordQuery {
    /// `password` (default) or `passphrase`.
    #[param(example = "password")]
    mode: Option<String>,
    /// How many independent secrets to return in `passwords` (1–100).
    #[param(minimum = 1, maximum = 100)]
    count: Option<u32>,
    /// Password length, 6–200 (default 16).
    #[param(minimum = 6, maximum = 200, example = 16)]
    password_length: Option<u32>,
    /// Include digits. Booleans accept true/false, 1/0, yes/no, on/off in any case.
    password_numbers: Option<bool>,
    /// Include lower-case letters.
    password_lower_case_chars: Option<bool>,
    /// Include upper-case letters.
    password_upper_case_chars: Option<bool>,
    /// Include symbols.
    password_special_symbols: Option<bool>,
    /// Leave out look-alike characters `I l 1 | O 0`.
    exclude_ambiguous: Option<bool>,
    /// Characters to leave out.
    exclude: Option<String>,
    /// A custom symbol set (1–64 ASCII punctuation characters) replacing the 32 defaults.
    #[param(min_length = 1, max_length = 64, pattern = "^[!-/:-@\\[-`{-~]+$")]
    symbols: Option<String>,
    /// At least this many digits (0–200).
    min_numbers: Option<u32>,
    /// At least this many symbols (0–200).
    min_symbols: Option<u32>,
    /// Passphrase: number of words, 3–20 (default 6).
    #[param(minimum = 3, maximum = 20)]
    words: Option<u32>,
    /// Passphrase: between words (default `-`, at most 5 characters, no control characters).
    #[param(max_length = 5, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    separator: Option<String>,
    /// Passphrase: capitalise each word.
    capitalize: Option<bool>,
    /// Passphrase: append a digit to one random word.
    include_number: Option<bool>,
}

/// The generator's route: open, unless `password.require_scope` (checked by the handler).
pub fn routes() -> Vec<Route> {
    vec![Route::new::<__path_generate, _, _>(
        Access::Optional,
        generate,
    )]
}

#[utoipa::path(
    get,
    path = "/api/v1/passwords",
    tag = "passwords",
    params(PasswordQuery),
    description = "Generates passwords (`mode=password`, the default) or passphrases \
        (`mode=passphrase`). Rules between parameters, which a schema cannot state, answer 422 \
        naming the field: a parameter of the other mode is refused (`words` with \
        `mode=password`); at least one of the four character classes must be on; `min_numbers` \
        and `min_symbols` need their class on and, with one character of every other class, \
        must fit in `password_length`; `exclude` and `exclude_ambiguous` must leave every \
        enabled class at least one character.",
    responses(
        (status = 200, description = "Generated secrets (never cached, never logged)", body = PasswordResponse,
         headers(("Cache-Control" = String, description = "no-store"))),
        (status = 401, description = "Only with `password.require_scope`: missing or bad credentials"),
        (status = 403, description = "Only with `password.require_scope`: the credentials lack passwords:generate"),
        (status = 422, description = "A parameter is invalid; `errors` names each one")
    )
)]
pub async fn generate(
    req: HttpRequest,
    state: web::Data<PasswordsRoom>,
    auth: MaybeAuth,
) -> Result<HttpResponse, ApiError> {
    if state.password_require_scope {
        let principal = auth.0.ok_or_else(|| ApiError::Unauthorized {
            code: "credentials_missing",
            detail: "password generation needs a key or token with the passwords:generate scope"
                .into(),
            challenge: crate::http::error::CHALLENGE,
        })?;
        principal.require(depot_core::Permission::PasswordsGenerate)?;
    }
    let pairs = form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()));
    let generation = Generation::from_pairs(pairs, &state.password_defaults)?;
    let listed = generation.count.is_some();
    let mode = generation.mode_name();
    let cheap = generation.is_cheap();
    let work = move || {
        let secrets = generation.generate(&mut rand::rng());
        (secrets, generation.entropy_bits())
    };
    let (mut secrets, entropy_bits) = if cheap {
        work()
    } else {
        // Exact counting with big integers: keep it off the async workers.
        web::block(work).await.map_err(ApiError::unexpected)?
    };
    let body = PasswordResponse {
        password: secrets.first().cloned().unwrap_or_default(),
        passwords: listed.then(|| std::mem::take(&mut secrets)),
        entropy_bits: (entropy_bits * 100.0).round() / 100.0,
        mode: mode.to_owned(),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body))
}
