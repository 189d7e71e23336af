//! `depot config`: inspect the settings.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Print the effective settings, secrets redacted.
    Show,
    /// Validate the settings and exit non-zero on the first problem.
    Check,
}
