//! The wire format: every request and response body of the API, one definition each, used by
//! the server to answer and by [`crate::Client`] to ask. Field names are `snake_case`,
//! timestamps RFC 3339 UTC, ids UUIDv7 strings (shared/CONVENTIONS.md).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// `Some(None)` for an explicit `null` (clear the field), `None` when absent.
fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// Integers as JSON Schema counts them: `760` and `760.0` alike; a fraction is refused. (serde
/// alone refuses `760.0`, which a client generated from the OpenAPI document may send.)
mod whole {
    use serde::Deserialize;
    use serde::de::{Deserializer, Error, Unexpected};

    fn integer<E: Error>(n: serde_json::Number) -> Result<i128, E> {
        if let Some(i) = n.as_i64() {
            return Ok(i128::from(i));
        }
        if let Some(u) = n.as_u64() {
            return Ok(i128::from(u));
        }
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            Ok(f as i128)
        } else {
            Err(E::invalid_type(Unexpected::Float(f), &"an integer"))
        }
    }

    fn ranged<T: TryFrom<i128>, E: Error>(i: i128) -> Result<T, E> {
        T::try_from(i).map_err(|_| {
            E::invalid_value(
                Unexpected::Other(&format!("integer {i}")),
                &"an integer in range",
            )
        })
    }

    pub fn required<'de, D: Deserializer<'de>, T: TryFrom<i128>>(de: D) -> Result<T, D::Error> {
        ranged(integer(serde_json::Number::deserialize(de)?)?)
    }

    pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        de: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<serde_json::Number>::deserialize(de)? {
            None => Ok(None),
            Some(n) => ranged(integer(n)?).map(Some),
        }
    }

    /// `Some(None)` for an explicit `null`, as `double_option`.
    pub fn double_option<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        de: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        option(de).map(Some)
    }
}

/// A page of a collection: `{"items": [...], "next_cursor": "..."}`; `next_cursor` is absent on
/// the last page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Collection<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An RFC 9457 problem document, with Depot's `code` and `errors` extensions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "type": "https://depot.dev/problems/validation_failed",
    "title": "Unprocessable Content",
    "status": 422,
    "detail": "the request has invalid fields",
    "instance": "/api/v1/passwords",
    "code": "validation_failed",
    "errors": [{"field": "password_length", "message": "must be between 6 and 200"}]
})))]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path the problem occurred on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// A stable machine-readable code.
    pub code: String,
    /// Every failing field, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProblemField {
    pub field: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Packages and operations

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PackageStatus {
    Created,
    Downloaded,
    Active,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Download,
    Activate,
    Deactivate,
    /// Name-level: `/api/v1/package-names/{name}/prune`.
    Prune,
}

impl OperationKind {
    /// The path segment that starts it: `/api/v1/packages/{id}/<segment>` (a prune's:
    /// `/api/v1/package-names/{name}/<segment>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Activate => "activate",
            Self::Deactivate => "deactivate",
            Self::Prune => "prune",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl OperationStatus {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PackageView {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "left-pad"))]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(example = "1.3.0"))]
    pub version: String,
    pub status: PackageStatus,
    pub description: Option<String>,
    pub source_url: Option<String>,
    pub sha256: Option<String>,
    pub size_bytes: Option<i64>,
    /// The name's owner: who registered its first version. `null` for names registered
    /// before owners existed (managed by `packages:admin` only).
    #[serde(default)]
    pub owner: Option<OwnerView>,
    /// Withdrawn by its owner: not downloaded or activated anew, skipped by `latest` and
    /// rollback, still readable.
    #[serde(default)]
    pub yanked: bool,
    #[serde(default)]
    pub yanked_reason: Option<String>,
    #[serde(default)]
    pub yanked_at: Option<DateTime<Utc>>,
    /// Where a download fetches the detached signature from, beside `source_url`.
    #[serde(default)]
    pub signature_url: Option<String>,
    /// The detached minisign signature the package carries (`GET …/signature` reads it), or
    /// `null`.
    #[serde(default)]
    pub signature: Option<SignatureView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A package's signature: which key made it, and whether and when it verified against the
/// artifact by a key trusted for the name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SignatureView {
    /// The minisign key id the signature names (16 hex digits, as `minisign -V` prints it).
    #[cfg_attr(feature = "openapi", schema(example = "E7620F1842B4E81F"))]
    pub key_id: String,
    /// It verified against the artifact's bytes by that key, trusted for the name, at
    /// `verified_at` (an upload, a download, the signature's upload, or an activation that
    /// required it). `false`: not checked yet (no artifact), or it no longer verifies.
    pub verified: bool,
    pub verified_at: Option<DateTime<Utc>>,
}

/// `POST /packages/{id}/yank`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct YankRequest {
    /// Why (1–500 characters, not all white space, no control characters but tab, line feed
    /// and carriage return), shown with the version from now on.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "CVE-2026-1234: remote code execution",
            min_length = 1,
            max_length = 500,
            pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub reason: String,
}

/// One version of a name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VersionRefView {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "1.25.3"))]
    pub version: String,
}

/// A version as its name's summary lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NameVersionView {
    pub id: Uuid,
    pub version: String,
    pub status: PackageStatus,
    pub yanked: bool,
}

/// A package name in the list of names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PackageNameEntry {
    pub name: String,
    pub owner: Option<OwnerView>,
}

/// A package name: who owns it, which version is in use, what a rollback would activate, the
/// newest release, and every version, newest first by precedence (SemVer 2.0 precedence;
/// versions that are not SemVer rank below every SemVer version, numeric-aware among
/// themselves).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PackageNameView {
    pub name: String,
    pub owner: Option<OwnerView>,
    /// The version in use.
    pub active: Option<VersionRefView>,
    /// The version most recently replaced or deactivated that is still downloaded and not
    /// yanked: what `POST /rollback` activates.
    pub previous: Option<VersionRefView>,
    /// The highest non-yanked release (a pre-release only when there is nothing else).
    pub latest: Option<VersionRefView>,
    pub versions: Vec<NameVersionView>,
}

/// One change of a name's active version: an activation (`to`, replacing `from` when one was
/// active) or a deactivation (`from`, no `to`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ActivationView {
    pub id: Uuid,
    pub from: Option<VersionRefView>,
    pub to: Option<VersionRefView>,
    pub at: DateTime<Utc>,
    /// Who started the operation (`api_key:<id>`, `user:<id>`, `admin`).
    pub by: Option<String>,
    pub operation_id: Option<Uuid>,
}

/// Who owns a package name: a key lineage (the key that created it, or any key rotated from
/// it), a user, or the operator (`admin`, the admin secret; no id).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OwnerView {
    pub kind: OwnerKind,
    pub id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OwnerKind {
    ApiKey,
    User,
    Admin,
}

/// Why an operation failed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OperationProblem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub code: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OperationView {
    pub id: Uuid,
    pub kind: OperationKind,
    /// The package it acts on; null for a name-level operation (a prune: see `package_name`).
    pub package_id: Option<Uuid>,
    /// The name of the package it acts on (as it was when the operation started; null for
    /// operations older than this field).
    #[serde(default)]
    pub package_name: Option<String>,
    pub status: OperationStatus,
    /// 0–100.
    pub progress: u8,
    /// The problem, when the operation failed.
    pub error: Option<OperationProblem>,
    /// Cancellation was asked for and the worker has not stopped yet.
    pub cancel_requested: bool,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreatePackageRequest {
    /// 1–200 printable characters (trimmed); inside, no invisible characters (bidirectional
    /// overrides, zero-width characters, variation selectors, spaces other than U+0020).
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "left-pad",
            max_length = 200,
            pattern = "^[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]*[^\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890-\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\\U000110BD\\U000110CD\\U00013430-\\U0001343F\\U0001BCA0-\\U0001BCA3\\U0001D173-\\U0001D17A\\U000E0001\\U000E0020-\\U000E007F\\u00A0\\u034F\\u115F-\\u1160\\u1680\\u17B4-\\u17B5\\u180B-\\u180D\\u180F\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u3164\\uFE00-\\uFE0F\\uFFA0\\U000E0100-\\U000E01EF](?:[ ]*[^\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890-\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\\U000110BD\\U000110CD\\U00013430-\\U0001343F\\U0001BCA0-\\U0001BCA3\\U0001D173-\\U0001D17A\\U000E0001\\U000E0020-\\U000E007F\\u00A0\\u034F\\u115F-\\u1160\\u1680\\u17B4-\\u17B5\\u180B-\\u180D\\u180F\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u3164\\uFE00-\\uFE0F\\uFFA0\\U000E0100-\\U000E01EF])*[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]*$"
        )
    )]
    pub name: String,
    /// 1–50 printable characters (trimmed); inside, no invisible characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "1.3.0",
            max_length = 50,
            pattern = "^[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]*[^\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890-\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\\U000110BD\\U000110CD\\U00013430-\\U0001343F\\U0001BCA0-\\U0001BCA3\\U0001D173-\\U0001D17A\\U000E0001\\U000E0020-\\U000E007F\\u00A0\\u034F\\u115F-\\u1160\\u1680\\u17B4-\\u17B5\\u180B-\\u180D\\u180F\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u3164\\uFE00-\\uFE0F\\uFFA0\\U000E0100-\\U000E01EF](?:[ ]*[^\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890-\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\\U000110BD\\U000110CD\\U00013430-\\U0001343F\\U0001BCA0-\\U0001BCA3\\U0001D173-\\U0001D17A\\U000E0001\\U000E0020-\\U000E007F\\u00A0\\u034F\\u115F-\\u1160\\u1680\\u17B4-\\u17B5\\u180B-\\u180D\\u180F\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u3164\\uFE00-\\uFE0F\\uFFA0\\U000E0100-\\U000E01EF])*[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]*$"
        )
    )]
    pub version: String,
    /// At most 2,000 characters; line breaks and tabs are the only control characters allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2000,
            pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub description: Option<String>,
    /// http or https; what the `http` executor downloads. (The pattern is the documented subset:
    /// a DNS host name, an optional port; the server also takes any URL the WHATWG URL standard
    /// parses with an http(s) scheme and a host.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2000,
            pattern = "^\\s*[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?(:[0-9]{1,4})?([/?#][!-~]*)?\\s*$"
        )
    )]
    pub source_url: Option<String>,
    /// 64 hexadecimal characters; verified after download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^\\s*[0-9A-Fa-f]{64}\\s*$"))]
    pub sha256: Option<String>,
    /// Verified after download.
    #[serde(
        default,
        deserialize_with = "whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub size_bytes: Option<i64>,
    /// Where a download fetches the detached minisign signature (`.minisig`) from, beside
    /// `source_url` (same rules as `source_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 2000,
            pattern = "^\\s*[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?(:[0-9]{1,4})?([/?#][!-~]*)?\\s*$"
        )
    )]
    pub signature_url: Option<String>,
}

impl CreatePackageRequest {
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            ..Default::default()
        }
    }
}

/// Any field but `status`, which only operations change. `null` clears an optional field.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PatchPackageRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 200,
            pattern = "^[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]*[^\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890-\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\\U000110BD\\U000110CD\\U00013430-\\U0001343F\\U0001BCA0-\\U0001BCA3\\U0001D173-\\U0001D17A\\U000E0001\\U000E0020-\\U000E007F\\u00A0\\u034F\\u115F-\\u1160\\u1680\\u17B4-\\u17B5\\u180B-\\u180D\\u180F\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u3164\\uFE00-\\uFE0F\\uFFA0\\U000E0100-\\U000E01EF](?:[ ]*[^\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890-\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\\U000110BD\\U000110CD\\U00013430-\\U0001343F\\U0001BCA0-\\U0001BCA3\\U0001D173-\\U0001D17A\\U000E0001\\U000E0020-\\U000E007F\\u00A0\\u034F\\u115F-\\u1160\\u1680\\u17B4-\\u17B5\\u180B-\\u180D\\u180F\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u3164\\uFE00-\\uFE0F\\uFFA0\\U000E0100-\\U000E01EF])*[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]*$"
        )
    )]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 50,
            pattern = "^[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]*[^\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890-\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\\U000110BD\\U000110CD\\U00013430-\\U0001343F\\U0001BCA0-\\U0001BCA3\\U0001D173-\\U0001D17A\\U000E0001\\U000E0020-\\U000E007F\\u00A0\\u034F\\u115F-\\u1160\\u1680\\u17B4-\\u17B5\\u180B-\\u180D\\u180F\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u3164\\uFE00-\\uFE0F\\uFFA0\\U000E0100-\\U000E01EF](?:[ ]*[^\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u0000-\\u001F\\u007F-\\u009F\\u00AD\\u0600-\\u0605\\u061C\\u06DD\\u070F\\u0890-\\u0891\\u08E2\\u180E\\u200B-\\u200F\\u202A-\\u202E\\u2060-\\u2064\\u2066-\\u206F\\uFEFF\\uFFF9-\\uFFFB\\U000110BD\\U000110CD\\U00013430-\\U0001343F\\U0001BCA0-\\U0001BCA3\\U0001D173-\\U0001D17A\\U000E0001\\U000E0020-\\U000E007F\\u00A0\\u034F\\u115F-\\u1160\\u1680\\u17B4-\\u17B5\\u180B-\\u180D\\u180F\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000\\u3164\\uFE00-\\uFE0F\\uFFA0\\U000E0100-\\U000E01EF])*[\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028-\\u2029\\u202F\\u205F\\u3000]*$"
        )
    )]
    pub version: Option<String>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 2000, pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"))]
    pub description: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 2000, pattern = "^\\s*[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?(:[0-9]{1,4})?([/?#][!-~]*)?\\s*$"))]
    pub source_url: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, pattern = "^\\s*[0-9A-Fa-f]{64}\\s*$"))]
    pub sha256: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "whole::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, minimum = 0))]
    pub size_bytes: Option<Option<i64>>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, max_length = 2000, pattern = "^\\s*[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?(:[0-9]{1,4})?([/?#][!-~]*)?\\s*$"))]
    pub signature_url: Option<Option<String>>,
}

// ---------------------------------------------------------------------------------------------
// API keys and the audit log

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

/// A key as listings show it: never the key itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// The key's visible start, e.g. `dpk_Ab3x…`.
    #[cfg_attr(feature = "openapi", schema(example = "dpk_Ab3x…"))]
    pub key_prefix: String,
    #[cfg_attr(feature = "openapi", schema(example = json!(["packages:read"])))]
    pub scopes: Vec<String>,
    pub status: KeyStatus,
    pub rate_limit_per_minute: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// `null`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub total_uses: i64,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<Uuid>,
}

/// A new key: the only time the plaintext `key` is shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApiKeyCreated {
    /// The key itself. Store it now: it is not stored in Depot and cannot be shown again.
    #[cfg_attr(feature = "openapi", schema(example = "dpk_Ab3xQ9…"))]
    pub key: String,
    #[serde(flatten)]
    pub api_key: ApiKeyView,
}

/// A scope a key or role grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum Scope {
    #[serde(rename = "packages:read")]
    PackagesRead,
    #[serde(rename = "packages:write")]
    PackagesWrite,
    #[serde(rename = "packages:admin")]
    PackagesAdmin,
    #[serde(rename = "operations:read")]
    OperationsRead,
    #[serde(rename = "passwords:generate")]
    PasswordsGenerate,
    #[serde(rename = "api_keys:admin")]
    ApiKeysAdmin,
    #[serde(rename = "users:admin")]
    UsersAdmin,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// 1–100 printable characters (trimmed).
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "ci-pipeline",
            max_length = 100,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
        )
    )]
    pub name: String,
    /// At least one of packages:read, packages:write, packages:admin, operations:read, passwords:generate,
    /// api_keys:admin, users:admin.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Scope>, min_items = 1, example = json!(["packages:read", "packages:write"])))]
    pub scopes: Vec<String>,
    /// Give at most one of `expires_at`, `expires_in_days`, `never_expires`; none = the default
    /// lifetime (15 days unless configured). `expires_at` must lie in the future, within 3650
    /// days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub expires_in_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub never_expires: Option<bool>,
    /// Requests per minute allowed with this key (per replica); none = unlimited.
    #[serde(
        default,
        deserialize_with = "whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1_000_000))]
    pub rate_limit_per_minute: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// Give at most one of `expires_at`, `days`, `never_expires`; none = the default lifetime
    /// from now. `expires_at` must lie in the future, within 3650 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(
        default,
        deserialize_with = "whole::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3650))]
    pub days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub never_expires: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the old key keeps working (0–604800 seconds; default 0: it stops now).
    #[serde(default, deserialize_with = "whole::required")]
    #[cfg_attr(feature = "openapi", schema(maximum = 604_800))]
    pub grace_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UsageView {
    pub at: DateTime<Utc>,
    pub method: String,
    /// The route template, e.g. `/api/v1/packages/{id}`.
    pub route: String,
    pub status: u16,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEventView {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// `admin`, `api_key:<id>` or `user:<id>`.
    pub actor: String,
    #[cfg_attr(feature = "openapi", schema(example = "api_key.revoke"))]
    pub action: String,
    pub target_id: Option<Uuid>,
    pub client_ip: Option<String>,
    pub details: Option<serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// Accounts

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
    Reader,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct UserView {
    pub id: Uuid,
    #[cfg_attr(feature = "openapi", schema(example = "alice@example.com"))]
    pub email: String,
    pub role: Role,
    /// The scopes the role grants.
    #[cfg_attr(feature = "openapi", schema(example = json!(["packages:read", "packages:write"])))]
    pub scopes: Vec<String>,
    pub disabled: bool,
    /// False for accounts that only sign in through the identity provider.
    pub has_password: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The answer to a registration: the same whether the e-mail was new (the account exists now)
/// or had an account already (nothing changed), so that registering tells nobody which
/// addresses have accounts. Sign in next.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RegistrationAccepted {
    /// The e-mail as Depot keeps it (trimmed, lower-cased).
    #[cfg_attr(feature = "openapi", schema(example = "alice@example.com"))]
    pub email: String,
    /// Where to sign in with the password just chosen.
    #[cfg_attr(feature = "openapi", schema(example = "/api/v1/auth/login"))]
    pub login: String,
}

/// Depot's tokens (OAuth 2.0 token response shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct TokenResponse {
    /// A JWT for `Authorization: Bearer`.
    pub access_token: String,
    #[cfg_attr(feature = "openapi", schema(example = "Bearer"))]
    pub token_type: String,
    /// Seconds until the access token expires.
    #[cfg_attr(feature = "openapi", schema(example = 900))]
    pub expires_in: i64,
    /// Opaque (`dpr_…`). Exchange it at /auth/refresh for a new pair; each one works once.
    pub refresh_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CredentialsRequest {
    #[cfg_attr(feature = "openapi", schema(example = "alice@example.com"))]
    pub email: String,
    /// 12–128 characters by default (settings); never truncated.
    #[cfg_attr(feature = "openapi", schema(example = "correct horse battery staple"))]
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[cfg_attr(feature = "openapi", schema(example = "dpr_…", min_length = 1))]
    pub refresh_token: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PatchUserRequest {
    /// `admin`, `user` or `reader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Role>))]
    pub role: Option<String>,
    /// Disabling revokes every session (refresh token) of the user at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
}

/// Who the presented credentials say the caller is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WhoAmI {
    /// `admin`, `api_key` or `user`.
    pub kind: String,
    /// The key's or user's id.
    pub id: Option<Uuid>,
    pub scopes: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// The password generator

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"password": "q7#Rb-2uX!vL0m%k", "entropy_bits": 104.84, "mode": "password"})))]
pub struct PasswordResponse {
    /// The (first) generated secret.
    pub password: String,
    /// All generated secrets, present when `count` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passwords: Option<Vec<String>>,
    /// log2 of the number of secrets the request's rules allow (each is equally likely).
    pub entropy_bits: f64,
    /// `password` or `passphrase`.
    pub mode: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_number_floats_are_integers_and_fractions_are_not() {
        let p: CreatePackageRequest =
            serde_json::from_str(r#"{"name":"a","version":"1","size_bytes":760.0}"#).unwrap();
        assert_eq!(p.size_bytes, Some(760));
        let r: RotateRequest = serde_json::from_str(r#"{"grace_seconds":60.0}"#).unwrap();
        assert_eq!(r.grace_seconds, 60);
        let k: PatchPackageRequest = serde_json::from_str(r#"{"size_bytes":null}"#).unwrap();
        assert_eq!(k.size_bytes, Some(None));
        for bad in [
            r#"{"name":"a","version":"1","size_bytes":760.5}"#,
            r#"{"name":"a","version":"1","size_bytes":"760"}"#,
        ] {
            assert!(
                serde_json::from_str::<CreatePackageRequest>(bad).is_err(),
                "{bad}"
            );
        }
        let e = serde_json::from_str::<CreateApiKeyRequest>(
            r#"{"name":"k","scopes":[],"rate_limit_per_minute":-1}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("in range"), "{e}");
        // Duplicate fields stay refused (no second parse keeps only the last one).
        assert!(
            serde_json::from_str::<RotateRequest>(r#"{"grace_seconds":1.0,"grace_seconds":2}"#)
                .is_err()
        );
    }
}

/// What a prune would take (`POST /api/v1/package-names/{name}/prune?dry_run=true`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PrunePlanView {
    pub name: String,
    /// How many of the newest versions holding an artifact keep it (the active one counted
    /// among them; the previous one keeps it wherever it ranks).
    pub keep: u32,
    /// The versions that would lose their artifact and return to `created`, newest first.
    pub versions: Vec<VersionRefView>,
}
