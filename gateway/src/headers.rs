//! Proxy header hygiene: hop-by-hop headers removed in both directions, `X-Forwarded-*` and
//! `Via` added.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the
/// pre-standard ones proxies still meet.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
];

static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// Our `Via` entry for each protocol version a client may use.
static VIA_11: HeaderValue = HeaderValue::from_static("1.1 caas-gateway");
static VIA_2: HeaderValue = HeaderValue::from_static("2 caas-gateway");

/// Whether a request asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v, "upgrade"))
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// Removes hop-by-hop headers, including those the `Connection` header names. With `upgrade`,
/// keeps `Upgrade` and a `Connection: upgrade` so the protocol switch passes through.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Usual case: a handful of headers and none of them hop-by-hop. One pass of cheap name
    // comparisons beats nine hashed removals.
    if !upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        // Rare and small: collecting the names first keeps the borrow checker simple.
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if !(upgrade && name == header::UPGRADE) {
                headers.remove(name);
            }
        }
    }
    for name in &HOP_BY_HOP {
        if upgrade && *name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }
    headers.remove(&PROXY_CONNECTION);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || *name == PROXY_CONNECTION
}

/// The same test by name, any case, for code that reads heads without a header map (the
/// HTTP/1.1 fast path).
pub(crate) fn is_hop_by_hop_name(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .chain(std::iter::once(&PROXY_CONNECTION))
        .any(|h| name.eq_ignore_ascii_case(h.as_str()))
}

/// One client connection's address, with its `X-Forwarded-For` value made once per connection
/// rather than formatted for every request.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) ip: IpAddr,
    xff: HeaderValue,
}

impl Client {
    pub(crate) fn new(ip: IpAddr) -> Client {
        let xff = HeaderValue::try_from(ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Client { ip, xff }
    }
}

/// Adds `X-Forwarded-For` (appended to what the client sent), `X-Forwarded-Proto`,
/// `X-Forwarded-Host` (replacing what the client sent) and our `Via`.
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    client: &Client,
    https: bool,
    host: Option<HeaderValue>,
    http2: bool,
) {
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::try_from(format!("{prev}, {}", client.ip)).ok(),
        None => Some(client.xff.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    match host {
        Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    add_via(headers, http2);
}

/// Appends our `Via` entry.
pub(crate) fn add_via(headers: &mut HeaderMap, http2: bool) {
    headers.append(
        header::VIA,
        if http2 { VIA_2.clone() } else { VIA_11.clone() },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_go_including_named_ones() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["accept"]
        );
    }

    #[test]
    fn upgrade_headers_survive_for_websockets() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get("upgrade").map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get("connection").map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
    }

    #[test]
    fn forwarded_headers_append_and_replace() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarded(
            &mut h,
            &Client::new("127.0.0.7".parse().expect("ip")),
            false,
            Some(HeaderValue::from_static("a.caas.localhost")),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.caas.localhost");
        assert_eq!(h["via"], "1.1 caas-gateway");
        let mut fresh = HeaderMap::new();
        add_forwarded(
            &mut fresh,
            &Client::new("::1".parse().expect("ip")),
            true,
            None,
            true,
        );
        assert_eq!(fresh["x-forwarded-for"], "::1");
        assert_eq!(fresh["x-forwarded-proto"], "https");
        assert_eq!(fresh["via"], "2 caas-gateway");
    }

    #[test]
    fn clean_headers_are_left_alone() {
        let mut h = map(&[("accept", "*/*"), ("user-agent", "t")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2);
    }
}
