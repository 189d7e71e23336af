//! Detached minisign signatures over artifacts, and the keys trusted to make them.
//!
//! A package may carry a signature (the text of a `.minisig` file). Trusted keys are minisign
//! public keys, each for every name or for names matching glob patterns
//! (`packages.trusted_keys`). A signature is checked as the bytes stream (an upload, a download,
//! a read back from storage at activation): never the whole artifact in memory. Only
//! pre-hashed signatures (minisign's default since 0.10, `ED`) can be checked that way; legacy
//! ones (`Ed`) are refused with a sentence saying how to re-sign.

use crate::artifacts::ByteStream;
use base64::Engine;
use futures::StreamExt;
use std::sync::Arc;

/// The largest signature accepted (a minisign signature with a long trusted comment is well
/// under 1 KiB).
pub const MAX_SIGNATURE_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not a minisign signature (or public key).
    #[error("{0}")]
    Malformed(String),
    /// Signed by a key that is not trusted for the name.
    #[error("signed by key {key_id}, which is not trusted for `{name}` (packages.trusted_keys)")]
    Untrusted { key_id: String, name: String },
    /// The bytes are not the ones that were signed (or the signature was altered).
    #[error("the signature by key {key_id} does not verify: the artifact is not what was signed")]
    Invalid { key_id: String },
    /// `packages.require_signatures` and the package carries none.
    #[error("the package carries no signature and packages.require_signatures is on")]
    Missing,
    /// The bytes could not be read to their end.
    #[error("the artifact could not be read to check its signature")]
    Unreadable,
}

/// A minisign key id, as minisign prints it (16 upper-case hex digits).
fn key_id(keynum: &[u8]) -> String {
    let mut le = [0u8; 8];
    le.copy_from_slice(keynum);
    format!("{:016X}", u64::from_le_bytes(le))
}

/// The `[algorithm(2)][key id(8)]…` prefix of a minisign base64 line.
fn decode_line(line: &str, len: usize) -> Option<Vec<u8>> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .ok()?;
    (raw.len() == len).then_some(raw)
}

/// A detached signature, parsed.
#[derive(Clone)]
pub struct Signature {
    text: String,
    key_id: String,
    parsed: Arc<minisign_verify::Signature>,
}

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signature")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signature {
    /// Parses the text of a `.minisig` file (four lines: untrusted comment, signature, trusted
    /// comment, global signature).
    pub fn parse(text: &str) -> Result<Self, SignatureError> {
        if text.len() > MAX_SIGNATURE_BYTES {
            return Err(SignatureError::Malformed(format!(
                "is longer than {MAX_SIGNATURE_BYTES} bytes: not a minisign signature"
            )));
        }
        let malformed = || {
            SignatureError::Malformed(
                "is not a minisign signature (the four lines of a .minisig file: `untrusted \
                 comment: …`, the signature, `trusted comment: …`, the global signature)"
                    .into(),
            )
        };
        let line = text.lines().nth(1).ok_or_else(malformed)?;
        let raw = decode_line(line, 74).ok_or_else(malformed)?;
        match &raw[..2] {
            b"ED" => {}
            b"Ed" => {
                return Err(SignatureError::Malformed(
                    "is a legacy (not pre-hashed) minisign signature, which cannot be checked \
                     as the artifact streams: sign again with minisign 0.10 or later (or `-H`)"
                        .into(),
                ));
            }
            _ => return Err(malformed()),
        }
        let parsed = minisign_verify::Signature::decode(text).map_err(|_| malformed())?;
        Ok(Self {
            text: text.to_owned(),
            key_id: key_id(&raw[2..10]),
            parsed: Arc::new(parsed),
        })
    }

    /// The id of the key that made it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The key id a stored signature names, for views (`None` when it does not parse, which a
/// stored one always does).
pub fn key_id_of(text: &str) -> Option<String> {
    Signature::parse(text).ok().map(|s| s.key_id)
}

/// A public key trusted for some names.
#[derive(Clone)]
pub struct TrustedKey {
    key_id: String,
    key: Arc<minisign_verify::PublicKey>,
    /// Empty: every name.
    names: Vec<glob::Pattern>,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("key_id", &self.key_id)
            .field("names", &self.names)
            .finish()
    }
}

impl TrustedKey {
    /// `<public key> [pattern …]`: the base64 line of a `minisign.pub` file, then the glob
    /// patterns (`*`, `?`, `[…]`) of the names it is trusted for, separated by spaces; none
    /// means every name.
    pub fn parse(entry: &str) -> Result<Self, SignatureError> {
        let mut words = entry.split_whitespace();
        let key = words.next().ok_or_else(|| {
            SignatureError::Malformed("is empty: expected `<public key> [pattern …]`".into())
        })?;
        let bad_key = || {
            SignatureError::Malformed(format!(
                "`{key}` is not a minisign public key (the base64 line of a minisign.pub file, \
                 `RW…`)"
            ))
        };
        let raw = decode_line(key, 42).ok_or_else(bad_key)?;
        if &raw[..2] != b"Ed" {
            return Err(bad_key());
        }
        let public = minisign_verify::PublicKey::from_base64(key).map_err(|_| bad_key())?;
        let names = words
            .map(|w| {
                glob::Pattern::new(w).map_err(|e| {
                    SignatureError::Malformed(format!("`{w}` is not a name pattern: {e}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            key_id: key_id(&raw[2..10]),
            key: Arc::new(public),
            names,
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn trusted_for(&self, name: &str) -> bool {
        self.names.is_empty() || self.names.iter().any(|p| p.matches(name))
    }
}

/// The keys trusted for signatures, and whether activation requires one.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    keys: Vec<TrustedKey>,
    /// `packages.require_signatures`: activation refuses an artifact without a signature that
    /// verifies by a key trusted for its name.
    pub required: bool,
}

impl Trust {
    pub fn new(keys: Vec<TrustedKey>, required: bool) -> Self {
        Self { keys, required }
    }

    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// The trusted key that made `signature`, if one is trusted for `name`.
    pub fn signer(&self, name: &str, signature: &Signature) -> Result<&TrustedKey, SignatureError> {
        self.keys
            .iter()
            .find(|k| k.key_id == signature.key_id && k.trusted_for(name))
            .ok_or_else(|| SignatureError::Untrusted {
                key_id: signature.key_id.clone(),
                name: name.to_owned(),
            })
    }

    /// Passes `body` through unchanged while checking it against `signature` by `key`; the
    /// returned check answers once the stream has ended (or was dropped: then it fails).
    pub fn verifying(
        key: &TrustedKey,
        signature: &Signature,
        body: ByteStream,
    ) -> (ByteStream, SignatureCheck) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
        let (public, parsed, id) = (
            key.key.clone(),
            signature.parsed.clone(),
            key.key_id.clone(),
        );
        // The verifier borrows the key and the signature: it lives on a task of its own that
        // owns them, fed the chunks as they pass (bounded: it cannot fall far behind).
        let task = tokio::spawn(async move {
            let invalid = || SignatureError::Invalid { key_id: id.clone() };
            let mut verifier = public.verify_stream(&parsed).map_err(|_| invalid())?;
            while let Some(chunk) = rx.recv().await {
                verifier.update(&chunk);
            }
            verifier.finalize().map_err(|_| invalid())
        });
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen_end = ended.clone();
        let body = futures::stream::unfold(
            (body, Some(tx), seen_end),
            |(mut body, tx, seen_end)| async move {
                let tx = tx?;
                match body.next().await {
                    Some(Ok(chunk)) => {
                        // A send fails only when the task is gone (it panicked): the check fails.
                        let _ = tx.send(chunk.clone()).await;
                        Some((Ok(chunk), (body, Some(tx), seen_end)))
                    }
                    Some(Err(e)) => Some((Err(e), (body, None, seen_end))),
                    None => {
                        seen_end.store(true, std::sync::atomic::Ordering::SeqCst);
                        None
                    }
                }
            },
        )
        .boxed();
        let key_id = key.key_id.clone();
        (
            body,
            SignatureCheck {
                task,
                ended,
                key_id,
            },
        )
    }

    /// Reads `body` to its end and checks it against `signature`, which must be by a key
    /// trusted for `name`. Returns the key id that verified it.
    pub async fn verify(
        &self,
        name: &str,
        signature: &Signature,
        body: ByteStream,
    ) -> Result<String, SignatureError> {
        let key = self.signer(name, signature)?;
        let (mut body, check) = Self::verifying(key, signature, body);
        while let Some(chunk) = body.next().await {
            chunk.map_err(|_| SignatureError::Unreadable)?;
        }
        drop(body);
        check.finish().await
    }
}

/// The outcome of [`Trust::verifying`], once its stream has ended.
pub struct SignatureCheck {
    task: tokio::task::JoinHandle<Result<(), SignatureError>>,
    ended: Arc<std::sync::atomic::AtomicBool>,
    key_id: String,
}

impl SignatureCheck {
    /// The key id that verified the bytes, or why not. Call it after the stream has been read
    /// to its end and dropped.
    pub async fn finish(self) -> Result<String, SignatureError> {
        if !self.ended.load(std::sync::atomic::Ordering::SeqCst) {
            self.task.abort();
            return Err(SignatureError::Unreadable);
        }
        let outcome = self.task.await.map_err(|_| SignatureError::Unreadable)?;
        outcome?;
        Ok(self.key_id)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Cursor;

    /// A key pair made for the test, its public key as `packages.trusted_keys` takes it.
    pub(crate) struct TestSigner {
        pair: minisign::KeyPair,
    }

    impl TestSigner {
        pub(crate) fn new() -> Self {
            Self {
                pair: minisign::KeyPair::generate_unencrypted_keypair().unwrap(),
            }
        }

        pub(crate) fn public(&self) -> String {
            self.pair.pk.to_base64()
        }

        pub(crate) fn sign(&self, data: &[u8]) -> String {
            minisign::sign(
                Some(&self.pair.pk),
                &self.pair.sk,
                Cursor::new(data),
                Some("file:test"),
                None,
            )
            .unwrap()
            .to_string()
        }
    }

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(bytes::Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    #[tokio::test]
    async fn a_signature_verifies_only_the_bytes_it_signed_by_a_key_trusted_for_the_name() {
        let signer = TestSigner::new();
        let other = TestSigner::new();
        let trust = Trust::new(
            vec![
                TrustedKey::parse(&format!("{} acme-* tools", signer.public())).unwrap(),
                TrustedKey::parse(&other.public()).unwrap(),
            ],
            false,
        );
        let sig = Signature::parse(&signer.sign(b"hello world")).unwrap();
        let key = trust.keys()[0].key_id().to_owned();
        assert_eq!(sig.key_id(), key);
        // Checked as it streams, in any chunking.
        assert!(
            trust
                .verify("acme-web", &sig, body(&[b"hello", b" ", b"world"]))
                .await
                .is_ok()
        );
        assert!(
            trust
                .verify("tools", &sig, body(&[b"hello world"]))
                .await
                .is_ok()
        );
        assert_eq!(
            trust
                .verify("acme-web", &sig, body(&[b"hello world!"]))
                .await,
            Err(SignatureError::Invalid {
                key_id: key.clone()
            })
        );
        // The key is not trusted for this name; the other key is trusted for every name but
        // did not make it.
        assert_eq!(
            trust.verify("nginx", &sig, body(&[b"hello world"])).await,
            Err(SignatureError::Untrusted {
                key_id: key,
                name: "nginx".into()
            })
        );
        let by_other = Signature::parse(&other.sign(b"x")).unwrap();
        assert!(
            trust
                .verify("nginx", &by_other, body(&[b"x"]))
                .await
                .is_ok()
        );
        // A body that fails midway never verifies.
        let cut: ByteStream = futures::stream::iter([
            Ok(bytes::Bytes::from_static(b"x")),
            Err(std::io::ErrorKind::ConnectionReset.into()),
        ])
        .boxed();
        assert_eq!(
            trust.verify("nginx", &by_other, cut).await,
            Err(SignatureError::Unreadable)
        );
    }

    #[test]
    fn malformed_signatures_and_keys_are_refused_with_a_reason() {
        let signer = TestSigner::new();
        let text = signer.sign(b"x");
        for bad in ["", "hello", "untrusted comment: x\nnot base64!\n"] {
            assert!(
                matches!(Signature::parse(bad), Err(SignatureError::Malformed(_))),
                "{bad:?}"
            );
        }
        // A legacy (not pre-hashed) signature: `Ed` instead of `ED`.
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&lines[1])
            .unwrap();
        raw[1] = b'd';
        lines[1] = base64::engine::general_purpose::STANDARD.encode(raw);
        let legacy = Signature::parse(&lines.join("\n"));
        assert!(
            matches!(&legacy, Err(SignatureError::Malformed(m)) if m.contains("legacy")),
            "{legacy:?}"
        );
        assert!(Signature::parse(&"x".repeat(MAX_SIGNATURE_BYTES + 1)).is_err());
        for bad in ["", "RWQ", "not-a-key", &format!("{} [", signer.public())] {
            assert!(TrustedKey::parse(bad).is_err(), "{bad:?}");
        }
    }
}
