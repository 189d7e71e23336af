//! Validation errors shared by every component's parse-don't-validate newtypes.

use serde::Serialize;

/// One failing input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A request that failed validation; names every failing field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("validation failed: {}", .errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
        }
    }

    /// Collects several field errors; `None` when there are none.
    pub fn from_errors(errors: Vec<FieldError>) -> Option<Self> {
        if errors.is_empty() {
            None
        } else {
            Some(Self { errors })
        }
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_every_field() {
        let mut e = ValidationError::field("a", "too short");
        e.push("b", "not a number");
        assert_eq!(
            e.to_string(),
            "validation failed: a: too short; b: not a number"
        );
    }

    #[test]
    fn from_errors_is_none_when_empty() {
        assert!(ValidationError::from_errors(vec![]).is_none());
    }
}
