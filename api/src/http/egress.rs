//! The egress policy (`depot_core::egress`) applied to Depot's outbound HTTP: every call goes
//! through an [`EgressClient`], which checks the URL before sending (scheme, no credentials, an
//! IP-literal host against the policy), resolves host names through a resolver that drops every
//! address the policy refuses — so the address connected to is the one checked, and a name
//! that rebinds to an internal address between two lookups gains nothing — and checks every
//! redirect hop the same way. Proxies from the environment are ignored: they would connect on
//! our behalf to destinations the policy never saw.

use depot_core::egress::{EgressPolicy, Forbidden};
use futures::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use url::{Host, Url};

/// Why an outbound call was not made. Clients see only a code; the log gets the reason.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("the URL is not http(s) with a host")]
    BadUrl,
    #[error("the URL carries credentials (user:pass@), which are never sent")]
    Credentials,
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
}

/// Host-name resolution, a port so that tests can use a stub resolver (and never real DNS).
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (getaddrinfo, on a blocking thread).
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|a| a.ip())
                .collect())
        })
    }
}

struct PolicyResolver {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (policy, lookup) = (self.policy.clone(), self.lookup.clone());
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = lookup.lookup(host.clone()).await?;
            let exempt = policy.host_allowed(&host);
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| match policy.check(*ip) {
                    Ok(()) => true,
                    Err(_) if exempt => true,
                    Err(f) => {
                        refused = Some(f);
                        false
                    }
                })
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(f)) => Err(Box::new(EgressError::Forbidden(f)) as _),
                (true, None) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the name has no address",
                )) as _),
                (false, _) => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// The policy and the resolver every outbound client is built with.
#[derive(Clone)]
pub struct Egress {
    policy: Arc<EgressPolicy>,
    lookup: Arc<dyn Lookup>,
}

impl Egress {
    pub fn new(policy: EgressPolicy) -> Self {
        Self::with_lookup(policy, Arc::new(SystemLookup))
    }

    pub fn with_lookup(policy: EgressPolicy, lookup: Arc<dyn Lookup>) -> Self {
        Self {
            policy: Arc::new(policy),
            lookup,
        }
    }

    /// Checks a URL before a request or a redirect hop: http(s), a host, no credentials, and an
    /// IP-literal host the policy allows (host names are checked when they resolve).
    pub fn check_url(&self, url: &Url) -> Result<(), EgressError> {
        check_url(&self.policy, url)
    }

    /// A client with the policy built in; `max_redirects` = None returns 3xx answers as they
    /// are. The builder brings timeouts and the user agent.
    pub fn client(
        &self,
        builder: reqwest::ClientBuilder,
        max_redirects: Option<usize>,
    ) -> reqwest::Result<EgressClient> {
        let redirect = match max_redirects {
            None => reqwest::redirect::Policy::none(),
            Some(max) => {
                let policy = self.policy.clone();
                reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() > max {
                        return attempt.error(EgressError::TooManyRedirects(max));
                    }
                    match check_url(&policy, attempt.url()) {
                        Ok(()) => attempt.follow(),
                        Err(e) => attempt.error(e),
                    }
                })
            }
        };
        let client = builder
            .no_proxy()
            // A redirect would otherwise carry the previous URL (query string included: signed
            // URLs keep their secrets there) to the next host.
            .referer(false)
            .redirect(redirect)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: self.policy.clone(),
                lookup: self.lookup.clone(),
            }))
            .build()?;
        Ok(EgressClient {
            client,
            egress: self.clone(),
        })
    }
}

fn check_url(policy: &EgressPolicy, url: &Url) -> Result<(), EgressError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EgressError::BadUrl);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EgressError::Credentials);
    }
    match url.host() {
        None => Err(EgressError::BadUrl),
        Some(Host::Ipv4(a)) => Ok(policy.check(IpAddr::V4(a))?),
        Some(Host::Ipv6(a)) => Ok(policy.check(IpAddr::V6(a))?),
        Some(Host::Domain(_)) => Ok(()),
    }
}

/// A reqwest client that only makes calls the policy allows.
#[derive(Clone)]
pub struct EgressClient {
    client: reqwest::Client,
    egress: Egress,
}

impl EgressClient {
    /// A request to `url`, checked first (see [`Egress::check_url`]).
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, EgressError> {
        let url = Url::parse(url).map_err(|_| EgressError::BadUrl)?;
        self.egress.check_url(&url)?;
        Ok(self.client.request(method, url))
    }
}

/// The policy's refusal behind a failed request, if that is why it failed.
pub fn refusal(e: &reqwest::Error) -> Option<&EgressError> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<EgressError>() {
            return Some(refused);
        }
        source = err.source();
    }
    None
}

/// A URL as it may appear in a log line: scheme, host and port; no credentials, path or query
/// (signed URLs carry their secrets there).
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let rest = if u.path() == "/" && u.query().is_none() {
                ""
            } else {
                "/…"
            };
            format!("{}://{host}{port}{rest}", u.scheme())
        }
        Err(_) => "<not a URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stub resolver: names map to the addresses a test gives (loopback only).
    struct Stub(HashMap<String, Vec<IpAddr>>);

    impl Lookup for Stub {
        fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
            let found = self.0.get(&host).cloned().unwrap_or_default();
            Box::pin(async move { Ok(found) })
        }
    }

    fn egress(allowed: &[&str], names: &[(&str, &str)]) -> Egress {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        let names = names
            .iter()
            .map(|(n, ip)| (n.to_string(), vec![ip.parse().unwrap()]))
            .collect();
        Egress::with_lookup(
            EgressPolicy::new(&allowed, &[]).unwrap(),
            Arc::new(Stub(names)),
        )
    }

    /// A loopback server answering every connection with `answer`; counts connections.
    async fn server(answer: String) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = sock.read(&mut buf).await;
                    let _ = sock.write_all(answer.as_bytes()).await;
                });
            }
        });
        (port, hits)
    }

    fn ok() -> String {
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".into()
    }

    async fn get(e: &Egress, url: &str) -> Result<reqwest::Response, String> {
        let client = e.client(reqwest::Client::builder(), Some(5)).unwrap();
        let req = client
            .request(reqwest::Method::GET, url)
            .map_err(|e| e.to_string())?;
        req.send().await.map_err(|e| match refusal(&e) {
            Some(r) => format!("refused: {r}"),
            None => format!("other: {e}"),
        })
    }

    #[tokio::test]
    async fn ip_literals_in_every_spelling_are_refused_before_any_connection() {
        let (port, hits) = server(ok()).await;
        let e = egress(&[], &[]);
        for host in [
            "127.0.0.1".to_string(),
            "2130706433".into(),
            "0x7f.1".into(),
            "[::ffff:127.0.0.1]".into(),
            "[::1]".into(),
        ] {
            let r = get(&e, &format!("http://{host}:{port}/")).await;
            assert!(
                matches!(&r, Err(m) if m.contains("forbidden")),
                "{host}: {r:?}"
            );
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        let r = get(&e, &format!("http://user:pw@example.test:{port}/")).await;
        assert!(matches!(&r, Err(m) if m.contains("credentials")), "{r:?}");
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_connect_time() {
        let (port, hits) = server(ok()).await;
        // "rebinding.test" resolves (through the stub) to loopback: what is connected to is
        // what the policy checked, so the name gains nothing.
        let e = egress(&[], &[("rebinding.test", "127.0.0.1")]);
        let r = get(&e, &format!("http://rebinding.test:{port}/")).await;
        assert!(matches!(&r, Err(m) if m.starts_with("refused")), "{r:?}");
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Allowed by egress.allowed_networks, the same name connects.
        let e = egress(&["127.0.0.0/8"], &[("rebinding.test", "127.0.0.1")]);
        let r = get(&e, &format!("http://rebinding.test:{port}/"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        // allowed_hosts exempts a name whatever it resolves to.
        let e = Egress::with_lookup(
            EgressPolicy::new(&[], &["registry.internal".into()]).unwrap(),
            Arc::new(Stub(HashMap::from([(
                "registry.internal".to_string(),
                vec!["127.0.0.1".parse().unwrap()],
            )]))),
        );
        let r = get(&e, &format!("http://registry.internal:{port}/"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    #[tokio::test]
    async fn every_redirect_hop_is_checked() {
        let (target, target_hits) = server(ok()).await;
        // The first hop is allowed (its name is exempt); it redirects to a loopback literal.
        let redirect = format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target}/internal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let (first, _) = server(redirect).await;
        let e = Egress::with_lookup(
            EgressPolicy::new(&[], &["public.test".into()]).unwrap(),
            Arc::new(Stub(HashMap::from([(
                "public.test".to_string(),
                vec!["127.0.0.1".parse().unwrap()],
            )]))),
        );
        let r = get(&e, &format!("http://public.test:{first}/a")).await;
        assert!(matches!(&r, Err(m) if m.starts_with("refused")), "{r:?}");
        assert_eq!(target_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[test]
    fn redacted_urls_keep_only_the_origin() {
        assert_eq!(
            redact("https://u:p@example.com:8443/a/b?sig=secret"),
            "https://example.com:8443/…"
        );
        assert_eq!(redact("http://example.com/"), "http://example.com");
        assert_eq!(redact("nonsense"), "<not a URL>");
    }
}
