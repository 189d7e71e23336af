//! `depot password`: the generator, locally, with the same rules as `GET /api/v1/passwords`.

use crate::settings::Settings;
use std::process::ExitCode;

/// Options mirror the HTTP query parameters; unset ones take the `[password]` settings.
#[derive(clap::Args)]
pub struct PasswordArgs {
    /// `password` or `passphrase`.
    #[arg(long)]
    mode: Option<String>,
    /// How many to print, one per line (1–100).
    #[arg(long, short = 'n')]
    count: Option<String>,
    /// Password length, 6–200.
    #[arg(long, short = 'l')]
    password_length: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    password_numbers: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    password_lower_case_chars: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    password_upper_case_chars: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    password_special_symbols: Option<String>,
    /// Leave out look-alike characters (I l 1 | O 0).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    exclude_ambiguous: Option<String>,
    /// Characters to leave out.
    #[arg(long)]
    exclude: Option<String>,
    /// Custom symbol set.
    #[arg(long)]
    symbols: Option<String>,
    #[arg(long)]
    min_numbers: Option<String>,
    #[arg(long)]
    min_symbols: Option<String>,
    /// Passphrase words, 3–20.
    #[arg(long)]
    words: Option<String>,
    #[arg(long)]
    separator: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    capitalize: Option<String>,
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    include_number: Option<String>,
    /// Also print the entropy in bits (to standard error).
    #[arg(long)]
    entropy: bool,
}

impl PasswordArgs {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let fields: [(&'static str, &Option<String>); 16] = [
            ("mode", &self.mode),
            ("count", &self.count),
            ("password_length", &self.password_length),
            ("password_numbers", &self.password_numbers),
            ("password_lower_case_chars", &self.password_lower_case_chars),
            ("password_upper_case_chars", &self.password_upper_case_chars),
            ("password_special_symbols", &self.password_special_symbols),
            ("exclude_ambiguous", &self.exclude_ambiguous),
            ("exclude", &self.exclude),
            ("symbols", &self.symbols),
            ("min_numbers", &self.min_numbers),
            ("min_symbols", &self.min_symbols),
            ("words", &self.words),
            ("separator", &self.separator),
            ("capitalize", &self.capitalize),
            ("include_number", &self.include_number),
        ];
        fields
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
            .collect()
    }
}

pub fn run(settings: &Settings, args: &PasswordArgs) -> ExitCode {
    match depot_password::Generation::from_pairs(args.pairs(), &settings.password.defaults()) {
        Ok(generation) => {
            for secret in generation.generate(&mut rand::rng()) {
                println!("{secret}");
            }
            if args.entropy {
                eprintln!("entropy: {:.2} bits", generation.entropy_bits());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            for f in &e.errors {
                eprintln!("--{}: {}", f.field.replace('_', "-"), f.message);
            }
            ExitCode::from(2)
        }
    }
}
