//! The generator's settings: `[password]` (the original service's variables are aliases).

use crate::settings::SettingsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    pub default_length: usize,
    pub numbers: bool,
    pub lower_case_chars: bool,
    pub upper_case_chars: bool,
    pub special_symbols: bool,
    pub symbols: Option<String>,
    pub require_scope: bool,
}

impl PasswordSettings {
    pub fn defaults(&self) -> depot_password::Defaults {
        depot_password::Defaults {
            length: self.default_length,
            numbers: self.numbers,
            lower: self.lower_case_chars,
            upper: self.upper_case_chars,
            symbols: self.special_symbols,
            symbol_set: self.symbols.clone(),
        }
    }

    /// The defaults must make a valid request on their own: a bad one stops the start.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let Err(e) = self.defaults().validate() else {
            return Ok(());
        };
        let key = |field: &str| match field {
            "password_length" => "password.default_length",
            "symbols" => "password.symbols",
            _ => "password",
        };
        let first = &e.errors[0];
        let problem = if e.errors.len() > 1 && key(&first.field) == "password" {
            "every character class is disabled (password.numbers, password.lower_case_chars, \
             password.upper_case_chars, password.special_symbols)"
                .to_owned()
        } else {
            first.message.clone()
        };
        Err(SettingsError::new(key(&first.field), problem))
    }
}
