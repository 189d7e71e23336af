//! Package names (summary, history, rollback) and yanking a version.

use super::*;

/// A name as one path segment: every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`)
/// percent-encoded, so that `/`, `?`, `#`, `%` and spaces in a name stay inside the segment.
pub fn name_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// `GET /api/v1/package-names` with `prefix`, `limit`, `cursor`.
    pub async fn list_package_names(
        &self,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<PackageNameEntry>, Error> {
        self.call(self.request(Method::GET, &Self::query("/api/v1/package-names", query)))
            .await
    }

    /// The name's summary: owner, active, previous and latest version, its versions.
    pub async fn package_name(&self, name: &str) -> Result<PackageNameView, Error> {
        let path = format!("/api/v1/package-names/{}", name_segment(name));
        self.call(self.request(Method::GET, &path)).await
    }

    /// The name's activations and deactivations, newest first (`limit`, `cursor`).
    pub async fn name_history(
        &self,
        name: &str,
        query: &[(&str, Option<String>)],
    ) -> Result<Collection<ActivationView>, Error> {
        let path = format!("/api/v1/package-names/{}/history", name_segment(name));
        self.call(self.request(Method::GET, &Self::query(&path, query)))
            .await
    }

    /// Activates the name's previous version (202: the operation).
    pub async fn rollback(&self, name: &str) -> Result<OperationView, Error> {
        let path = format!("/api/v1/package-names/{}/rollback", name_segment(name));
        self.call(self.request(Method::POST, &path)).await
    }

    /// What a prune keeping `keep` versions (the server's `packages.keep_versions` when
    /// `None`) would take, changing nothing.
    pub async fn prune_plan(&self, name: &str, keep: Option<u32>) -> Result<PrunePlanView, Error> {
        let path = format!("/api/v1/package-names/{}/prune", name_segment(name));
        let query = [
            ("keep", keep.map(|k| k.to_string())),
            ("dry_run", Some("true".to_owned())),
        ];
        self.call(self.request(Method::POST, &Self::query(&path, &query)))
            .await
    }

    /// Prunes the name (202: the operation), keeping `keep` versions (see [`Self::prune_plan`]).
    pub async fn prune(&self, name: &str, keep: Option<u32>) -> Result<OperationView, Error> {
        let path = format!("/api/v1/package-names/{}/prune", name_segment(name));
        let query = [("keep", keep.map(|k| k.to_string()))];
        self.call(self.request(Method::POST, &Self::query(&path, &query)))
            .await
    }

    pub async fn yank(&self, id: Uuid, reason: &str) -> Result<PackageView, Error> {
        let body = YankRequest {
            reason: reason.to_owned(),
        };
        self.call(self.json(Method::POST, &format!("/api/v1/packages/{id}/yank"), &body))
            .await
    }

    pub async fn unyank(&self, id: Uuid) -> Result<PackageView, Error> {
        self.call(self.request(Method::POST, &format!("/api/v1/packages/{id}/unyank")))
            .await
    }
}
