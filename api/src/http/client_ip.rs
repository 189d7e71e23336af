//! The client's address: the TCP peer, or, behind trusted reverse proxies (`server.trusted_proxies`),
//! the last address in `X-Forwarded-For` that a trusted proxy did not add. Anything before it
//! was written by the client and could be forged.

use actix_web::HttpRequest;
use std::net::IpAddr;

/// One hop as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse().ok())
        })?;
    Some(ip.to_canonical())
}

pub fn resolve(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let mut last = peer;
    if let Some(chain) = forwarded_for {
        for hop in chain.rsplit(',') {
            let Some(ip) = parse_hop(hop) else {
                // Garbage in the chain: stop believing it, use what was verified so far.
                return Some(last);
            };
            if !trusted.contains(&ip) {
                return Some(ip);
            }
            last = ip;
        }
    }
    Some(last)
}

/// The client address of a request, as text.
pub fn of(req: &HttpRequest) -> Option<String> {
    addr(req).map(|ip| ip.to_string())
}

/// The client address of a request.
pub fn addr(req: &HttpRequest) -> Option<IpAddr> {
    let trusted = req
        .app_data::<actix_web::web::Data<crate::http::state::HttpState>>()
        .map(|s| s.trusted_proxies.as_slice())
        .unwrap_or_default();
    // Several X-Forwarded-For lines form one list, in order.
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    resolve(
        req.peer_addr().map(|a| a.ip()),
        forwarded.as_deref(),
        trusted,
    )
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client() {
        assert_eq!(
            resolve(Some(ip("203.0.113.9")), Some("1.2.3.4"), &[ip("127.0.0.1")]),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_last_untrusted_hop_is_the_client() {
        let trusted = [ip("127.0.0.1"), ip("10.0.0.2")];
        assert_eq!(
            resolve(
                Some(ip("127.0.0.1")),
                Some("6.6.6.6, 198.51.100.7, 10.0.0.2"),
                &trusted
            ),
            Some(ip("198.51.100.7")),
            "the forged first entry is ignored"
        );
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), None, &trusted),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            resolve(
                Some(ip("127.0.0.1")),
                Some("nonsense, 198.51.100.7"),
                &trusted
            ),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            resolve(
                Some(ip("127.0.0.1")),
                Some("198.51.100.7, nonsense"),
                &trusted
            ),
            Some(ip("127.0.0.1"))
        );
    }
}
