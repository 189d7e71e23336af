//! `depot packages push` and `pull`: an artifact file into Depot and back out, streamed, with a
//! progress bar, the SHA-256 checked on both ends.

use depot_client::wire::{CreatePackageRequest, PackageStatus, PackageView};
use depot_client::{Client, Error, UploadOptions};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

fn bar(total: Option<u64>, prefix: &'static str) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 and size of a file, read as a stream.
async fn digest_of(path: &Path) -> Result<([u8; 32], u64), String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("{}: {e}", path.display()))?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok((hasher.finalize().into(), size))
}

/// The package of `name` at exactly `version`, if registered.
async fn find(client: &Client, name: &str, version: &str) -> Result<Option<PackageView>, Error> {
    let mut cursor = None;
    loop {
        let page = client
            .list_packages(&[
                ("name", Some(name.to_owned())),
                ("limit", Some("200".into())),
                ("cursor", cursor),
            ])
            .await?;
        if let Some(p) = page
            .items
            .into_iter()
            .find(|p| p.name == name && p.version == version)
        {
            return Ok(Some(p));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(None),
        }
    }
}

/// Registers `name` `version` with the file's digest (or takes the version registered by an
/// earlier push that did not finish) and uploads the file.
/// What `depot packages push` registers FILE as.
pub struct Push {
    pub name: String,
    pub version: String,
    pub description: Option<String>,
    /// A `.minisig` file of FILE.
    pub signature: Option<std::path::PathBuf>,
}

pub async fn push(
    client: &Client,
    file: &Path,
    push: Push,
    explain: impl Fn(Error) -> String,
) -> Result<PackageView, String> {
    let Push {
        name,
        version,
        description,
        signature,
    } = push;
    // Read first: a missing signature file stops the push before anything is registered.
    let signature = match &signature {
        Some(path) => Some(
            tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
        ),
        None => None,
    };
    let (sha256, size) = digest_of(file).await?;
    let created = client
        .create_package(&CreatePackageRequest {
            name: name.clone(),
            version: version.clone(),
            description,
            sha256: Some(hex(&sha256)),
            size_bytes: Some(size as i64),
            ..Default::default()
        })
        .await;
    let package = match created {
        Ok(p) => p,
        // Pushed before: a push that did not finish takes the same bytes to the same version;
        // one that did is done (the same bytes are there).
        Err(e) if e.status_and_code() == Some((409, "duplicate_package")) => {
            match find(client, &name, &version).await.map_err(&explain)? {
                Some(p) if p.sha256.as_deref().is_some_and(|s| s != hex(&sha256)) => {
                    return Err(format!(
                        "{name} {version} is registered with another sha256 ({}): a version \
                         names one artifact; push another version",
                        p.sha256.unwrap_or_default()
                    ));
                }
                Some(p) if p.status == PackageStatus::Created => p,
                Some(p) if p.sha256.is_some() => return Ok(p),
                _ => return Err(explain(e)),
            }
        }
        Err(e) => return Err(explain(e)),
    };
    // The signature goes first: the server checks the bytes against it as they arrive.
    if let Some(text) = &signature {
        client
            .put_signature(package.id, text)
            .await
            .map_err(&explain)?;
    }
    let progress = bar(Some(size), "push");
    let reader = tokio::fs::File::open(file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let shown = progress.clone();
    let body =
        tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024).inspect(move |chunk| {
            if let Ok(chunk) = chunk {
                shown.inc(chunk.len() as u64);
            }
        });
    let uploaded = client
        .upload_artifact(
            package.id,
            reqwest::Body::wrap_stream(body),
            &UploadOptions {
                sha256: Some(sha256),
                content_length: Some(size),
                ..Default::default()
            },
        )
        .await;
    match uploaded {
        Ok(res) => {
            progress.finish_with_message("stored");
            Ok(res.body)
        }
        Err(e) => {
            progress.abandon_with_message("refused");
            Err(explain(e))
        }
    }
}

/// `NAME` or `NAME@VERSION`: the name's active version, or that version.
pub fn parse_target(target: &str) -> (String, Option<String>) {
    match target.rsplit_once('@') {
        // `@scope/pkg` has its `@` first: that is part of the name.
        Some((name, version)) if !name.is_empty() && !version.is_empty() => {
            (name.to_owned(), Some(version.to_owned()))
        }
        _ => (target.to_owned(), None),
    }
}

/// The file name the server suggests (`Content-Disposition: attachment; filename="…"`, which it
/// keeps to `[A-Za-z0-9._+-]`), checked again here.
fn suggested_name(res: &reqwest::Response) -> Option<String> {
    let value = res
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)?
        .to_str()
        .ok()?;
    let start = value.find("filename=\"")? + "filename=\"".len();
    let name = &value[start..start + value[start..].find('"')?];
    let safe = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    safe.then(|| name.to_owned())
}

/// Downloads the active version of `name` (or `version`) into `output` (or the file name the
/// server suggests), verifying its SHA-256 against the strong ETag before the file is kept.
pub async fn pull(
    client: &Client,
    target: &str,
    output: Option<PathBuf>,
    force: bool,
    explain: impl Fn(Error) -> String,
) -> Result<PathBuf, String> {
    let (name, version) = parse_target(target);
    let res = match &version {
        None => client.active_artifact(&name, &[]).await.map_err(&explain)?,
        Some(v) => {
            let p = find(client, &name, v)
                .await
                .map_err(&explain)?
                .ok_or_else(|| format!("{name} has no version {v}"))?;
            client.artifact(p.id, &[]).await.map_err(&explain)?
        }
    };
    let want = res
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|e| e.trim_matches('"').to_owned())
        .filter(|e| e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("the server sent no SHA-256 (ETag) to verify the artifact against")?;
    let output = match output {
        Some(o) => o,
        None => PathBuf::from(
            suggested_name(&res).ok_or("the server suggested no file name: give -o FILE")?,
        ),
    };
    if !force && tokio::fs::symlink_metadata(&output).await.is_ok() {
        return Err(format!(
            "{} exists: give --force to replace it",
            output.display()
        ));
    }
    let partial = output.with_file_name(format!(
        ".{}.part-{}",
        output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uuid::Uuid::now_v7()
    ));
    let result = async {
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        let progress = bar(res.content_length(), "pull");
        let mut hasher = Sha256::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("the download broke off: {e}"))?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("{}: {e}", partial.display()))?;
            progress.inc(chunk.len() as u64);
        }
        file.sync_all()
            .await
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        let got = hex(&hasher.finalize());
        if got != want {
            progress.abandon_with_message("checksum mismatch");
            return Err(format!(
                "the bytes' SHA-256 is {got}, not the {want} the server announced: nothing kept"
            ));
        }
        progress.finish_with_message("verified");
        tokio::fs::rename(&partial, &output)
            .await
            .map_err(|e| format!("{}: {e}", output.display()))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    result.map(|()| output)
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn targets_are_a_name_and_maybe_a_version() {
        assert_eq!(parse_target("left-pad"), ("left-pad".into(), None));
        assert_eq!(
            parse_target("left-pad@1.3.0"),
            ("left-pad".into(), Some("1.3.0".into()))
        );
        assert_eq!(parse_target("@scope/pkg"), ("@scope/pkg".into(), None));
        assert_eq!(
            parse_target("@scope/pkg@2.0.0"),
            ("@scope/pkg".into(), Some("2.0.0".into()))
        );
        assert_eq!(parse_target("trailing@"), ("trailing@".into(), None));
    }
}
