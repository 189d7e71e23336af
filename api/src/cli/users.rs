//! `depot users`: accounts from the command line (the first administrator comes from here).

use crate::bootstrap;
use crate::settings::Settings;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum UsersAction {
    /// Create a user with a local password. The password is read from the environment variable
    /// DEPOT_NEW_USER_PASSWORD or, when that is unset, from the first line of standard input.
    Create {
        #[arg(long)]
        email: String,
        /// `admin`, `user` or `reader`.
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// Print a new Ed25519 signing key (PKCS#8 PEM) for the secret `jwt_signing_key`.
    Keygen,
}

pub async fn users(settings: Settings, action: UsersAction) -> anyhow::Result<()> {
    let UsersAction::Create { email, role } = action else {
        unreachable!("keygen is handled before the runtime starts")
    };
    let role: depot_accounts::Role = role
        .parse()
        .map_err(|_| anyhow::anyhow!("--role: must be `admin`, `user` or `reader`"))?;
    let password = match std::env::var("DEPOT_NEW_USER_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprintln!("password (one line on standard input):");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let db = bootstrap::connect_database(&settings).await?;
    if settings.auto_migrate() {
        depot_store::migrate_up(&db).await?;
    }
    let secrets = bootstrap::secret_store(&settings);
    let accounts = bootstrap::account_service(
        &settings,
        &db,
        secrets.as_ref(),
        std::sync::Arc::new(depot_core::SystemClock),
    )
    .await?;
    match accounts.create_user(&email, &password, role).await {
        Ok(user) => {
            println!("created {} {} ({})", user.role, user.email, user.id);
            Ok(())
        }
        Err(depot_accounts::AccountError::Validation(v)) => Err(anyhow::anyhow!(
            "{}",
            v.errors
                .iter()
                .map(|e| format!("--{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Err(e) => Err(e.into()),
    }
}
