//! Packages, their status state machine, and operations.

use chrono::{DateTime, Utc};
use depot_core::error::FieldError;
use depot_core::{Owner, ValidationError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_VERSION_CHARS: usize = 50;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
pub const MAX_URL_CHARS: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageStatus {
    Created,
    Downloaded,
    Active,
}

impl PackageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Downloaded => "downloaded",
            Self::Active => "active",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "created" => Some(Self::Created),
            "downloaded" => Some(Self::Downloaded),
            "active" => Some(Self::Active),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Download,
    Activate,
    Deactivate,
    /// A name-level operation: the name's Downloaded versions past the newest ones it keeps
    /// lose their artifact and return to Created (retention, `packages.keep_versions`).
    Prune,
}

/// A transition the state machine forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {kind} a package that is {}", .from.as_str())]
pub struct InvalidTransition {
    pub from: PackageStatus,
    pub kind: &'static str,
}

impl OperationKind {
    pub const ALL: [OperationKind; 4] = [
        Self::Download,
        Self::Activate,
        Self::Deactivate,
        Self::Prune,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Download => "download",
            Self::Activate => "activate",
            Self::Deactivate => "deactivate",
            Self::Prune => "prune",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "download" => Some(Self::Download),
            "activate" => Some(Self::Activate),
            "deactivate" => Some(Self::Deactivate),
            "prune" => Some(Self::Prune),
            _ => None,
        }
    }

    /// The status a package must have for this operation, and the one it gets on success
    /// (for a prune, each version it prunes).
    pub fn transition(self) -> (PackageStatus, PackageStatus) {
        match self {
            Self::Download => (PackageStatus::Created, PackageStatus::Downloaded),
            Self::Activate => (PackageStatus::Downloaded, PackageStatus::Active),
            Self::Deactivate => (PackageStatus::Active, PackageStatus::Downloaded),
            Self::Prune => (PackageStatus::Downloaded, PackageStatus::Created),
        }
    }

    /// Whether it acts on a name rather than on one package (it has no `package_id`).
    pub fn on_name(self) -> bool {
        self == Self::Prune
    }

    /// The state machine: may a package in `current` undergo this operation?
    pub fn check(self, current: PackageStatus) -> Result<PackageStatus, InvalidTransition> {
        let (from, to) = self.transition();
        if current == from {
            Ok(to)
        } else {
            Err(InvalidTransition {
                from: current,
                kind: self.as_str(),
            })
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl OperationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(Self::Pending),
            "running" => Some(Self::Running),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Why an operation failed, as a problem document (code + detail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationError {
    pub code: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub id: Uuid,
    pub name: String,
    pub version: String,
    pub status: PackageStatus,
    pub description: Option<String>,
    pub source_url: Option<String>,
    pub sha256: Option<String>,
    pub size_bytes: Option<i64>,
    /// Its name's owner (who registered the name's first version); `None` for names
    /// registered before owners existed, which only `packages:admin` manages.
    pub owner: Option<Owner>,
    /// When the package first left Created: from then on its verified fields (`name`,
    /// `version`, `source_url`, `sha256`, `size_bytes`, `signature_url`) are frozen, even if
    /// it returns there.
    pub sealed_at: Option<DateTime<Utc>>,
    /// Withdrawn by its owner: not downloaded or activated anew, skipped by `latest` and
    /// rollback, still readable.
    pub yanked: Option<Yank>,
    /// A detached minisign signature over the artifact, uploaded or fetched.
    pub signature: Option<PackageSignature>,
    /// Where a download fetches the signature from, beside `source_url` (a verified field).
    pub signature_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub revision: i64,
}

impl Package {
    /// A newly registered package: status `Created`, revision 1, no optional fields.
    pub fn created(name: String, version: String, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            name,
            version,
            status: PackageStatus::Created,
            description: None,
            source_url: None,
            sha256: None,
            size_bytes: None,
            owner: None,
            sealed_at: None,
            yanked: None,
            signature: None,
            signature_url: None,
            created_at: now,
            updated_at: now,
            revision: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: Uuid,
    pub kind: OperationKind,
    /// The package it acts on; `None` for a name-level operation (a prune).
    pub package_id: Option<Uuid>,
    pub status: OperationStatus,
    pub progress: u8,
    pub error: Option<OperationError>,
    pub cancel_requested: bool,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Who started it (`Principal::actor`: `api_key:<id>`, `user:<id>`, `admin`); `None` for
    /// operations from before this was recorded.
    pub started_by: Option<String>,
    /// The name of the package it acts on, as it was when the operation started.
    pub package_name: Option<String>,
}

/// An artifact's SHA-256 (lower-case hex) and size, as computed from its bytes, and the
/// signature it verified against as it streamed, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedArtifact {
    pub sha256: String,
    pub size: i64,
    /// The signature that verified these bytes (its text, and when), recorded with them.
    pub signature: Option<PackageSignature>,
}

/// A package's detached signature and when it last verified by a trusted key (`None`: not
/// yet checked against bytes, or it no longer verifies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSignature {
    pub text: String,
    pub verified_at: Option<DateTime<Utc>>,
}

impl PackageSignature {
    /// The id of the key that made it (16 hex digits, as minisign prints it).
    pub fn key_id(&self) -> Option<String> {
        crate::signature::key_id_of(&self.text)
    }
}

/// Why and when a version was yanked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yank {
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// The longest yank reason, in characters.
pub const MAX_YANK_REASON_CHARS: usize = 500;

/// A yank's reason: 1 to [`MAX_YANK_REASON_CHARS`] characters as sent, not all white space, no
/// control characters but tab, line feed and carriage return; kept trimmed.
pub fn yank_reason(raw: &str) -> Result<String, ValidationError> {
    let reason = raw.trim();
    if reason.is_empty() || raw.chars().count() > MAX_YANK_REASON_CHARS {
        return Err(ValidationError::field(
            "reason",
            format!("give why, in 1 to {MAX_YANK_REASON_CHARS} characters"),
        ));
    }
    if let Some(c) = raw
        .chars()
        .find(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(ValidationError::field(
            "reason",
            format!("must not contain the control character U+{:04X}", c as u32),
        ));
    }
    Ok(reason.to_owned())
}

/// A version of a name, as the name's history and summary show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRef {
    pub id: Uuid,
    pub version: String,
}

/// One change of a name's active version: an activation (`to` set; `from` the version it
/// replaced, if any) or a deactivation (`to` none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub id: Uuid,
    pub name: String,
    pub from: Option<VersionRef>,
    pub to: Option<VersionRef>,
    pub operation_id: Option<Uuid>,
    pub actor: Option<String>,
    pub at: DateTime<Utc>,
}

impl Operation {
    /// A newly requested operation on a package: pending, no attempt yet.
    pub fn pending(kind: OperationKind, package_id: Uuid, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            kind,
            package_id: Some(package_id),
            status: OperationStatus::Pending,
            progress: 0,
            error: None,
            cancel_requested: false,
            attempts: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
            started_by: None,
            package_name: None,
        }
    }

    /// A newly requested name-level operation (see [`OperationKind::on_name`]) on `name`.
    pub fn pending_on_name(kind: OperationKind, name: String, now: DateTime<Utc>) -> Self {
        let mut op = Self::pending(kind, Uuid::nil(), now).on_name(name);
        op.package_id = None;
        op
    }

    /// This operation, on a package named `name`.
    pub fn on_name(mut self, name: String) -> Self {
        self.package_name = Some(name);
        self
    }

    /// This operation, recorded as started by `actor`.
    pub fn started_by(mut self, actor: String) -> Self {
        self.started_by = Some(actor);
        self
    }
}

/// Validated package fields (parse, don't validate).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackageFields {
    pub name: Option<String>,
    pub version: Option<String>,
    /// `Some(None)` clears the field.
    pub description: Option<Option<String>>,
    pub source_url: Option<Option<String>>,
    pub sha256: Option<Option<String>>,
    pub size_bytes: Option<Option<i64>>,
    pub signature_url: Option<Option<String>>,
    /// With `name`: the owner the package takes under its new name (that name's owner, or the
    /// caller's for a new name), which the adapter checks as it claims the name. Set by the
    /// service, never by a client.
    pub owner: Option<Option<Owner>>,
}

fn printable(raw: &str, field: &str, max: usize, errors: &mut Vec<FieldError>) -> Option<String> {
    let v = raw.trim();
    // The bound holds for what is sent, as the document's maxLength says, and so after trimming.
    if v.is_empty() || raw.chars().count() > max {
        errors.push(FieldError {
            field: field.into(),
            message: format!("must have 1 to {max} characters"),
        });
        None
    } else if v.chars().any(char::is_control) {
        errors.push(FieldError {
            field: field.into(),
            message: "must contain printable characters only".into(),
        });
        None
    } else if v.chars().any(depot_core::text::hidden_in_name) {
        // Bidirectional overrides, zero-width characters, variation selectors and spaces other
        // than the ASCII one make two names look alike.
        errors.push(FieldError {
            field: field.into(),
            message: "must not contain invisible characters (bidirectional overrides, \
                      zero-width characters, variation selectors, spaces other than U+0020)"
                .into(),
        });
        None
    } else {
        Some(v.to_owned())
    }
}

impl PackageFields {
    /// The fields given here that freeze once a package leaves Created (what was verified, or
    /// what names the version).
    pub fn frozen(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("version", self.version.is_some()),
            ("source_url", self.source_url.is_some()),
            ("sha256", self.sha256.is_some()),
            ("size_bytes", self.size_bytes.is_some()),
            ("signature_url", self.signature_url.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, given)| given.then_some(field))
        .collect()
    }
}

/// Raw input for create/patch, as a client sends it.
#[derive(Debug, Clone, Default)]
pub struct PackageInput {
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<Option<String>>,
    pub source_url: Option<Option<String>>,
    pub sha256: Option<Option<String>>,
    pub size_bytes: Option<Option<i64>>,
    pub signature_url: Option<Option<String>>,
}

/// An http(s) URL without credentials, or an error naming `field`.
fn download_url(raw: String, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let too_long = raw.chars().count() > MAX_URL_CHARS;
    let u = raw.trim().to_owned();
    match url::Url::parse(&u) {
        // Credentials in a URL end up in logs and in every reader's hands.
        Ok(parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            errors.push(FieldError {
                field: field.into(),
                message: "must not carry credentials (user:pass@)".into(),
            });
            None
        }
        Ok(parsed)
            if matches!(parsed.scheme(), "http" | "https")
                && parsed.host().is_some()
                && !too_long
                && u.len() <= MAX_URL_CHARS =>
        {
            Some(parsed.to_string())
        }
        _ => {
            errors.push(FieldError {
                field: field.into(),
                message: "must be an http or https URL".into(),
            });
            None
        }
    }
}

impl PackageInput {
    /// Validates every given field, naming each failing one. `require_identity` makes `name`
    /// and `version` mandatory (creation).
    pub fn validate(self, require_identity: bool) -> Result<PackageFields, ValidationError> {
        let mut errors = Vec::new();
        let mut out = PackageFields::default();
        match self.name {
            Some(n) => {
                out.name = printable(&n, "name", MAX_NAME_CHARS, &mut errors);
                // URL libraries collapse these path segments: the name could not be addressed.
                if matches!(out.name.as_deref(), Some("." | "..")) {
                    out.name = None;
                    errors.push(FieldError {
                        field: "name".into(),
                        message: "must not be `.` or `..`".into(),
                    });
                }
            }
            None if require_identity => errors.push(FieldError {
                field: "name".into(),
                message: "is required".into(),
            }),
            None => {}
        }
        match self.version {
            Some(v) => out.version = printable(&v, "version", MAX_VERSION_CHARS, &mut errors),
            None if require_identity => errors.push(FieldError {
                field: "version".into(),
                message: "is required".into(),
            }),
            None => {}
        }
        out.description = self.description.map(|d| {
            d.and_then(|d| {
                let too_long = d.chars().count() > MAX_DESCRIPTION_CHARS;
                let d = d.trim().to_owned();
                if too_long {
                    errors.push(FieldError {
                        field: "description".into(),
                        message: format!("must have at most {MAX_DESCRIPTION_CHARS} characters"),
                    });
                } else if d
                    .chars()
                    .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
                {
                    // Line breaks and tabs are text; NUL (which PostgreSQL cannot store) and
                    // the other control characters are not.
                    errors.push(FieldError {
                        field: "description".into(),
                        message: "must not contain control characters other than line breaks \
                                  and tabs"
                            .into(),
                    });
                }
                (!d.is_empty()).then_some(d)
            })
        });
        out.source_url = self
            .source_url
            .map(|u| u.and_then(|u| download_url(u, "source_url", &mut errors)));
        out.sha256 = self.sha256.map(|h| {
            h.and_then(|h| {
                let h = h.trim().to_ascii_lowercase();
                if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Some(h)
                } else {
                    errors.push(FieldError {
                        field: "sha256".into(),
                        message: "must be 64 hexadecimal characters".into(),
                    });
                    None
                }
            })
        });
        out.size_bytes = self.size_bytes.map(|s| {
            s.and_then(|s| {
                if s < 0 {
                    errors.push(FieldError {
                        field: "size_bytes".into(),
                        message: "must not be negative".into(),
                    });
                    None
                } else {
                    Some(s)
                }
            })
        });
        out.signature_url = self
            .signature_url
            .map(|u| u.and_then(|u| download_url(u, "signature_url", &mut errors)));
        match ValidationError::from_errors(errors) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_transition_allowed_and_forbidden() {
        use OperationKind::*;
        use PackageStatus::*;
        let cases = [
            (Download, Created, Some(Downloaded)),
            (Download, Downloaded, None),
            (Download, Active, None),
            (Activate, Created, None),
            (Activate, Downloaded, Some(Active)),
            (Activate, Active, None),
            (Deactivate, Created, None),
            (Deactivate, Downloaded, None),
            (Deactivate, Active, Some(Downloaded)),
        ];
        for (kind, from, to) in cases {
            match (kind.check(from), to) {
                (Ok(got), Some(want)) => assert_eq!(got, want, "{kind:?} from {from:?}"),
                (Err(e), None) => {
                    assert_eq!(e.from, from);
                    assert!(e.to_string().contains(from.as_str()), "{e}");
                }
                (got, want) => panic!("{kind:?} from {from:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn final_statuses() {
        assert!(!OperationStatus::Pending.is_final());
        assert!(!OperationStatus::Running.is_final());
        for s in [
            OperationStatus::Succeeded,
            OperationStatus::Failed,
            OperationStatus::Cancelled,
        ] {
            assert!(s.is_final());
            assert_eq!(OperationStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn input_is_trimmed_and_checked() {
        let f = PackageInput {
            name: Some("  left-pad ".into()),
            version: Some(" 1.0.0 ".into()),
            sha256: Some(Some("AB".repeat(32))),
            source_url: Some(Some("https://example.com/x.tgz".into())),
            ..Default::default()
        }
        .validate(true)
        .unwrap();
        assert_eq!(f.name.as_deref(), Some("left-pad"));
        assert_eq!(f.version.as_deref(), Some("1.0.0"));
        assert_eq!(f.sha256, Some(Some("ab".repeat(32))));
        let e = PackageInput {
            name: Some("  ".into()),
            version: Some("x".repeat(51)),
            source_url: Some(Some("ftp://example.com/x".into())),
            sha256: Some(Some("xyz".into())),
            size_bytes: Some(Some(-1)),
            ..Default::default()
        }
        .validate(true)
        .unwrap_err();
        let fields: Vec<_> = e.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "version", "source_url", "sha256", "size_bytes"]
        );
        let e = PackageInput::default().validate(true).unwrap_err();
        assert_eq!(e.errors.len(), 2);
        assert!(PackageInput::default().validate(false).is_ok());
    }

    #[test]
    fn names_refuse_format_characters() {
        for name in [
            "gpj\u{202E}exe",
            "left\u{200B}pad",
            "\u{FEFF}tool",
            "a\u{E0041}",
        ] {
            let e = PackageInput {
                name: Some(name.into()),
                version: Some(format!("1{}", &name[..0])),
                ..Default::default()
            }
            .validate(true)
            .unwrap_err();
            assert_eq!(e.errors[0].field, "name", "{name:?}");
        }
        let e = PackageInput {
            name: Some("ok".into()),
            version: Some("1.0\u{202E}".into()),
            ..Default::default()
        }
        .validate(true)
        .unwrap_err();
        assert_eq!(e.errors[0].field, "version");
    }

    #[test]
    fn source_urls_with_credentials_are_refused() {
        for url in [
            "https://user:pass@example.com/a.tgz",
            "https://token@example.com/a.tgz",
            "http://:pw@example.com/",
        ] {
            let e = PackageInput {
                source_url: Some(Some(url.into())),
                ..Default::default()
            }
            .validate(false)
            .unwrap_err();
            assert_eq!(e.errors[0].field, "source_url", "{url}");
            assert!(e.errors[0].message.contains("credentials"), "{url}");
        }
    }

    #[test]
    fn descriptions_keep_line_breaks_and_tabs_but_no_other_control_characters() {
        let with = |d: &str| {
            PackageInput {
                description: Some(Some(d.into())),
                ..Default::default()
            }
            .validate(false)
        };
        let ok = with("first line\n\tsecond line\r\n").unwrap();
        assert_eq!(
            ok.description,
            Some(Some("first line\n\tsecond line".into()))
        );
        for bad in ["nul \u{0} inside", "bell \u{7}", "escape \u{1b}[31m"] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.errors[0].field, "description", "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn validation_never_panics(name in ".{0,300}", version in ".{0,80}", url in ".{0,100}") {
            let _ = PackageInput {
                name: Some(name),
                version: Some(version),
                source_url: Some(Some(url)),
                ..Default::default()
            }
            .validate(true);
        }
    }
}
