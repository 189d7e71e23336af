//! Accounts: sign-in, tokens, users, whoami; the password generator; health.

use super::*;

impl Client {
    // --- accounts -----------------------------------------------------------------------

    pub async fn whoami(&self) -> Result<WhoAmI, Error> {
        self.call(self.request(Method::GET, "/api/v1/auth/whoami"))
            .await
    }

    /// Answers alike for a new e-mail and a taken one (see [`RegistrationAccepted`]).
    pub async fn register(
        &self,
        credentials: &CredentialsRequest,
    ) -> Result<RegistrationAccepted, Error> {
        self.call(self.json(Method::POST, "/api/v1/auth/register", credentials))
            .await
    }

    pub async fn login(&self, credentials: &CredentialsRequest) -> Result<TokenResponse, Error> {
        self.call(self.json(Method::POST, "/api/v1/auth/login", credentials))
            .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenResponse, Error> {
        let body = RefreshRequest {
            refresh_token: refresh_token.to_owned(),
        };
        self.call(self.json(Method::POST, "/api/v1/auth/refresh", &body))
            .await
    }

    pub async fn logout(&self, refresh_token: &str) -> Result<(), Error> {
        let body = RefreshRequest {
            refresh_token: refresh_token.to_owned(),
        };
        self.call(self.json(Method::POST, "/api/v1/auth/logout", &body))
            .await
    }

    pub async fn me(&self) -> Result<UserView, Error> {
        self.call(self.request(Method::GET, "/api/v1/users/me"))
            .await
    }

    pub async fn list_users(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<UserView>, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/users", query)))
            .await
    }

    pub async fn get_user(&self, id: Uuid) -> Result<Response<UserView>, Error> {
        self.send(self.request(Method::GET, &format!("/api/v1/users/{id}")))
            .await
    }

    pub async fn patch_user(
        &self,
        id: Uuid,
        patch: &PatchUserRequest,
        if_match: Option<&str>,
    ) -> Result<Response<UserView>, Error> {
        let req = self.json(Method::PATCH, &format!("/api/v1/users/{id}"), patch);
        self.send(Self::if_match(req, if_match)).await
    }

    // --- passwords ----------------------------------------------------------------------

    /// `GET /api/v1/passwords` with the generator's query parameters.
    pub async fn generate_password(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<PasswordResponse, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/passwords", query)))
            .await
    }

    // --- health -------------------------------------------------------------------------

    /// `GET /health/live`: true when the process answers.
    pub async fn live(&self) -> Result<bool, Error> {
        let res = self.request(Method::GET, "/health/live").send().await?;
        Ok(res.status().is_success())
    }
}
