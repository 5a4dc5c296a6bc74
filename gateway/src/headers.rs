//! Proxy header hygiene: hop-by-hop headers removed in both directions, `X-Forwarded-*` and
//! `Via` added.

use caas_registry::IpRule;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

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
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
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

/// Who a request comes from, and the `X-Forwarded-For` the backend gets for it. Made once per
/// connection from the peer address; only a trusted proxy's requests are looked at again
/// ([`Client::behind`]), so everyone else's cost nothing per request.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// The real client: the blacklist applies to it.
    pub(crate) ip: IpAddr,
    /// The peer is a trusted proxy (`--trusted-proxies`): its `X-Forwarded-For` is believed.
    pub(crate) peer_trusted: bool,
    xff: HeaderValue,
}

impl Client {
    /// The client of a connection from `peer`; `trusted` are the proxies whose
    /// `X-Forwarded-For` is believed.
    pub(crate) fn new(peer: IpAddr, trusted: &[IpRule]) -> Client {
        let xff = HeaderValue::try_from(peer.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Client {
            ip: peer,
            peer_trusted: is_trusted(peer, trusted),
            xff,
        }
    }

    /// The client behind this connection's trusted proxy, from the request's `X-Forwarded-For`
    /// lines (`values`, in order): walking from the right, past every trusted proxy, the first
    /// address that is not one (or the left-most, if all are; or the last trusted one, if the
    /// next does not parse). What goes upstream is that address and the proxies after it, then
    /// the peer: whatever the client wrote further left is dropped, so the left-most entry a
    /// backend sees is always the client the gateway believes. Only for a trusted peer.
    pub(crate) fn behind<'a>(
        &self,
        values: impl Iterator<Item = &'a [u8]>,
        trusted: &[IpRule],
    ) -> Client {
        let entries: Vec<&str> = values
            .flat_map(|v| std::str::from_utf8(v).unwrap_or("").split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        // Right to left: the addresses believed, the real client last.
        let mut chain: Vec<IpAddr> = Vec::new();
        let mut real = self.ip;
        for entry in entries.iter().rev() {
            if !is_trusted(real, trusted) {
                break;
            }
            match forwarded_ip(entry) {
                Some(ip) => {
                    chain.push(ip);
                    real = ip;
                }
                None => break,
            }
        }
        let mut text = String::with_capacity(16 * (chain.len() + 1));
        for ip in chain.iter().rev() {
            text.push_str(&ip.to_string());
            text.push_str(", ");
        }
        text.push_str(&self.ip.to_string());
        Client {
            ip: real,
            peer_trusted: true,
            xff: HeaderValue::try_from(text).unwrap_or_else(|_| self.xff.clone()),
        }
    }

    /// The `X-Forwarded-For` value for the backend.
    pub(crate) fn xff(&self) -> &[u8] {
        self.xff.as_bytes()
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpRule]) -> bool {
    !trusted.is_empty() && trusted.iter().any(|r| r.contains(ip))
}

/// One `X-Forwarded-For` entry as an address: `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })
}

/// Sets `X-Forwarded-For` (the client's, see [`Client`]: never what an untrusted client sent),
/// `X-Forwarded-Proto`, `X-Forwarded-Host` (replacing what the client sent) and adds our `Via`.
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    client: &Client,
    https: bool,
    host: Option<HeaderValue>,
    http2: bool,
) {
    headers.insert(X_FORWARDED_FOR.clone(), client.xff.clone());
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

    fn rules(list: &[&str]) -> Vec<IpRule> {
        list.iter().map(|r| r.parse().expect("rule")).collect()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = rules(&["10.0.0.0/8", "192.0.2.1"]);
        let behind = |peer: &str, lines: &[&str]| {
            let c = Client::new(peer.parse().expect("ip"), &trusted);
            let c = if c.peer_trusted {
                c.behind(lines.iter().map(|l| l.as_bytes()), &trusted)
            } else {
                c
            };
            (
                c.ip.to_string(),
                String::from_utf8_lossy(c.xff()).into_owned(),
            )
        };
        let pair = |ip: &str, xff: &str| (ip.to_owned(), xff.to_owned());
        // An untrusted peer: it is the client, whatever it wrote.
        assert_eq!(
            behind("203.0.113.5", &["198.51.100.1"]),
            pair("203.0.113.5", "203.0.113.5")
        );
        // A trusted proxy: the right-most address that is not a trusted proxy; forged entries
        // further left are dropped.
        assert_eq!(
            behind("10.1.1.1", &["1.1.1.1, 198.51.100.7, 192.0.2.1"]),
            pair("198.51.100.7", "198.51.100.7, 192.0.2.1, 10.1.1.1")
        );
        assert_eq!(
            behind("10.1.1.1", &["1.1.1.1", "198.51.100.7:4321"]),
            pair("198.51.100.7", "198.51.100.7, 10.1.1.1")
        );
        assert_eq!(
            behind("10.1.1.1", &["[2001:db8::1]:80"]),
            pair("2001:db8::1", "2001:db8::1, 10.1.1.1")
        );
        // Nothing forwarded, or garbage: the proxy itself.
        assert_eq!(behind("10.1.1.1", &[]), pair("10.1.1.1", "10.1.1.1"));
        assert_eq!(
            behind("10.1.1.1", &["1.1.1.1, nonsense"]),
            pair("10.1.1.1", "10.1.1.1")
        );
        // Every entry a trusted proxy: the left-most.
        assert_eq!(
            behind("10.1.1.1", &["10.2.2.2, 10.3.3.3"]),
            pair("10.2.2.2", "10.2.2.2, 10.3.3.3, 10.1.1.1")
        );
        // With no trusted proxies nobody is one.
        let c = Client::new("10.1.1.1".parse().expect("ip"), &[]);
        assert!(!c.peer_trusted);
    }

    #[test]
    fn forwarded_headers_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarded(
            &mut h,
            &Client::new("127.0.0.7".parse().expect("ip"), &[]),
            false,
            Some(HeaderValue::from_static("a.caas.localhost")),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "a.caas.localhost");
        assert_eq!(h["via"], "1.1 caas-gateway");
        let mut fresh = HeaderMap::new();
        add_forwarded(
            &mut fresh,
            &Client::new("::1".parse().expect("ip"), &[]),
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
