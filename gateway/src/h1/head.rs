//! Request and response heads on the fast path: parsed in place with `httparse` (no allocation,
//! no header map) and written out again with the proxy's hygiene applied, straight into the
//! buffer that goes to the socket.
//!
//! Request heads: hop-by-hop headers (and those `Connection` names) dropped, `X-Forwarded-For`
//! (see [`crate::headers::Client`]), `X-Forwarded-Proto`/`-Host` replaced, `Via` added,
//! origin-form target kept. Response heads: hop-by-hop headers dropped (chunked framing is kept
//! and passed through, a Content-Length beside a Transfer-Encoding dropped), `Via` added, `Connection: close` when the gateway will close the client connection.
//! Anything the fast path does not take on (HTTP/1.0, upgrades, `Expect`, absolute-form or
//! asterisk targets) is reported as [`Verdict::Handover`] so the general hyper path serves it.

use crate::answers;
use http::StatusCode;
use std::mem::MaybeUninit;

/// Most header lines the fast path parses; a configured limit above it is capped here.
pub(crate) const MAX_HEADERS: usize = 128;

/// Uninitialised header slots for one parse (no initialisation cost).
pub(crate) type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Fresh header slots.
pub(crate) fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, passed through as is.
    Chunked,
    /// Until the backend closes the connection (responses only).
    UntilClose,
}

/// Why a request head is refused by the gateway itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Malformed head, conflicting or invalid framing: 400, with this answer.
    BadRequest(&'static str),
    /// Head over the size or header-count limit: 431.
    TooLarge,
    /// A declared body over the body limit: 413.
    BodyTooLarge,
}

/// What a complete request head calls for.
// The big variant lives on the stack for one parse; boxing it would allocate per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Verdict<'b> {
    /// Not complete yet: read more.
    Partial,
    /// Refuse it; the connection closes after the answer.
    Refuse(Refusal),
    /// Serve this connection with the general (hyper) path from this request on.
    Handover,
    /// A request the fast path forwards.
    Forward(Request<'b>),
}

/// A parsed request head, still borrowing the connection's buffer.
#[derive(Debug)]
pub(crate) struct Request<'b> {
    /// Bytes of the head, CRLFCRLF included.
    pub(crate) len: usize,
    /// The Host header's value (port included, as sent).
    pub(crate) host: &'b str,
    method: &'b str,
    target: &'b str,
    headers: &'b [httparse::Header<'b>],
    /// How its body is delimited.
    pub(crate) framing: Framing,
    /// The client asked to close the connection after this exchange.
    pub(crate) close: bool,
    /// Its method is idempotent ([`crate::retry::is_idempotent`]).
    pub(crate) idempotent: bool,
    /// A HEAD request: the response has no body whatever its headers say.
    pub(crate) head: bool,
    /// Header fields `Connection` names (dropped as hop-by-hop), as a small list.
    named: [&'b str; 8],
    named_len: usize,
}

/// Connection-level headers never forwarded (the list `headers` keeps for both paths), except
/// `transfer-encoding`: the fast path passes chunked framing through and handles it with the
/// framing.
fn is_hop_by_hop(name: &str) -> bool {
    !name.eq_ignore_ascii_case("transfer-encoding") && crate::headers::is_hop_by_hop_name(name)
}

fn tokens(v: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(v)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A Content-Length value: digits only, and the same as any seen before (`prev`). The error is
/// the 400 answer's text.
fn content_length(v: &[u8], prev: Option<u64>) -> Result<u64, &'static str> {
    let n = std::str::from_utf8(v)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or("invalid Content-Length\n")?;
    if prev.is_some_and(|p| p != n) {
        return Err("conflicting Content-Length\n");
    }
    Ok(n)
}

/// Whether a Transfer-Encoding value ends with `chunked`: only the final coding frames the body.
fn chunked_last(v: &[u8]) -> bool {
    tokens(v)
        .last()
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
}

/// Parses the head at the start of `buf`, if complete, and decides what to do with it.
pub(crate) fn parse_request<'b>(
    buf: &'b [u8],
    slots: &'b mut HeaderSlots<'b>,
    max_headers: usize,
    max_head_bytes: usize,
    max_body: u64,
) -> Verdict<'b> {
    let slots = &mut slots[..max_headers.clamp(1, MAX_HEADERS)];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(n)) if n > max_head_bytes => {
            return Verdict::Refuse(Refusal::TooLarge)
        }
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_head_bytes => {
            return Verdict::Refuse(Refusal::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Verdict::Partial,
        Err(httparse::Error::TooManyHeaders) => return Verdict::Refuse(Refusal::TooLarge),
        // HTTP/2's connection preface, and other versions: hyper knows them.
        Err(httparse::Error::Version) => return Verdict::Handover,
        Err(_) => return Verdict::Refuse(Refusal::BadRequest("malformed request\n")),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Verdict::Refuse(Refusal::BadRequest("malformed request\n"));
    };
    // HTTP/1.0 (keep-alive rules, no chunked answers), CONNECT and targets that are not plain
    // paths are the general path's; so are protocol switches and `Expect: 100-continue`.
    if version != 1 || method == "CONNECT" || !target.starts_with('/') {
        return Verdict::Handover;
    }
    let headers: &'b [httparse::Header<'b>] = req.headers;
    let mut host = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut named = [""; 8];
    let mut named_len = 0;
    for h in headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            if host.is_some() {
                return Verdict::Refuse(Refusal::BadRequest(answers::DUPLICATE_HOST));
            }
            host = std::str::from_utf8(h.value).ok();
        } else if name.eq_ignore_ascii_case("content-length") {
            match content_length(h.value, length) {
                Ok(n) => length = Some(n),
                Err(why) => return Verdict::Refuse(Refusal::BadRequest(why)),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Anything but chunked last is undelimited and refused (RFC 9112 §6.3).
            chunked = chunked_last(h.value);
            if !chunked {
                return Verdict::Refuse(Refusal::BadRequest("unsupported Transfer-Encoding\n"));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case("close") {
                    close = true;
                } else if t.eq_ignore_ascii_case("upgrade") {
                    return Verdict::Handover;
                } else if !t.eq_ignore_ascii_case("keep-alive") {
                    if named_len == named.len() {
                        return Verdict::Handover;
                    }
                    named[named_len] = t;
                    named_len += 1;
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") || name.eq_ignore_ascii_case("expect") {
            return Verdict::Handover;
        }
    }
    // Both framings at once is how smuggling starts: refuse it (RFC 9112 §6.1).
    if chunked && length.is_some() {
        return Verdict::Refuse(Refusal::BadRequest(
            "both Content-Length and Transfer-Encoding\n",
        ));
    }
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return Verdict::Refuse(Refusal::BadRequest(answers::MISSING_HOST));
    };
    if length.is_some_and(|n| n > max_body) {
        return Verdict::Refuse(Refusal::BodyTooLarge);
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(0) | None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    Verdict::Forward(Request {
        len,
        host,
        method,
        target,
        headers,
        framing,
        close,
        idempotent: crate::retry::is_idempotent(method),
        head: method == "HEAD",
        named,
        named_len,
    })
}

impl Request<'_> {
    fn is_named(&self, name: &str) -> bool {
        self.named[..self.named_len]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The values of its `X-Forwarded-For` lines, in order (read only from a trusted proxy).
    pub(crate) fn forwarded_for(&self) -> impl Iterator<Item = &[u8]> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
            .map(|h| h.value)
    }

    /// Writes the head to send upstream into `out`: same method, target and end-to-end
    /// headers, HTTP/1.1, `X-Forwarded-*` and `Via` added. `xff` is the `X-Forwarded-For`
    /// value ([`crate::headers::Client`]: the client's own lines never go as sent); `https`
    /// says how the client reached us.
    pub(crate) fn write_upstream(&self, xff: &[u8], https: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        for h in self.headers {
            let name = h.name;
            if is_hop_by_hop(name) || self.is_named(name) {
                continue;
            }
            if name.eq_ignore_ascii_case("x-forwarded-for")
                || name.eq_ignore_ascii_case("x-forwarded-proto")
                || name.eq_ignore_ascii_case("x-forwarded-host")
            {
                continue;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"x-forwarded-for: ");
        out.extend_from_slice(xff);
        out.extend_from_slice(if https {
            &b"\r\nx-forwarded-proto: https\r\nx-forwarded-host: "[..]
        } else {
            b"\r\nx-forwarded-proto: http\r\nx-forwarded-host: "
        });
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\nvia: 1.1 caas-gateway\r\n\r\n");
    }
}

/// A parsed response head, still borrowing the upstream connection's buffer.
#[derive(Debug)]
pub(crate) struct Response<'b> {
    /// Bytes of the head.
    pub(crate) len: usize,
    /// The status code.
    pub(crate) status: u16,
    reason: &'b str,
    headers: &'b [httparse::Header<'b>],
    /// How its body is delimited (given the request method).
    pub(crate) framing: Framing,
    /// The backend will close the connection after it (or spoke HTTP/1.0).
    pub(crate) close: bool,
    /// It has a Transfer-Encoding: any Content-Length with it is not passed on.
    transfer_encoded: bool,
}

/// What the backend's bytes so far make of a response head.
#[derive(Debug)]
pub(crate) enum ResponseVerdict<'b> {
    /// Not complete yet.
    Partial,
    /// Not a response a proxy can pass on.
    Invalid(&'static str),
    /// A complete head.
    Head(Response<'b>),
}

/// Parses the response head at the start of `buf` for a request that was (`head`) a HEAD.
pub(crate) fn parse_response<'b>(
    buf: &'b [u8],
    slots: &'b mut HeaderSlots<'b>,
    head: bool,
) -> ResponseVerdict<'b> {
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > 64 * 1024 => {
            return ResponseVerdict::Invalid("response head too large")
        }
        Ok(httparse::Status::Partial) => return ResponseVerdict::Partial,
        Err(_) => return ResponseVerdict::Invalid("malformed response head"),
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return ResponseVerdict::Invalid("malformed status line");
    };
    let headers: &'b [httparse::Header<'b>] = resp.headers;
    let mut close = version == 0;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            match content_length(h.value, length) {
                Ok(n) => length = Some(n),
                Err(why) => return ResponseVerdict::Invalid(why),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = chunked_last(h.value);
            if !chunked {
                // Not chunked last: the body runs until the connection closes.
                close = true;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case("close") {
                    close = true;
                } else if version == 0 && t.eq_ignore_ascii_case("keep-alive") {
                    close = false;
                }
            }
        }
    }
    let te_not_chunked = !chunked
        && headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
    let framing = if head || status == 204 || status == 304 || (100..200).contains(&status) {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if te_not_chunked {
        Framing::UntilClose
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => {
                close = true;
                Framing::UntilClose
            }
        }
    };
    ResponseVerdict::Head(Response {
        len,
        status,
        reason: resp.reason.unwrap_or(""),
        headers,
        framing,
        close,
        transfer_encoded: chunked || te_not_chunked,
    })
}

impl Response<'_> {
    /// Writes the head to send to the client into `out`: HTTP/1.1, end-to-end headers,
    /// chunked framing kept, `Via` added, and `Connection: close` when `close_client`.
    pub(crate) fn write_client(&self, close_client: bool, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(&itoa_3(self.status));
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut framing_kept = false;
        for h in self.headers {
            let name = h.name;
            if is_hop_by_hop(name) {
                continue;
            }
            // Transfer-Encoding frames the body (RFC 9112 §6.3): a Content-Length beside it is
            // ignored, and never reaches the client beside the chunked framing we pass on.
            if self.transfer_encoded && name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                // Passed through only when it is the framing we forward as is.
                if self.framing != Framing::Chunked || framing_kept {
                    continue;
                }
                framing_kept = true;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"via: 1.1 caas-gateway\r\n");
        if close_client {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The three digits of a status code.
fn itoa_3(n: u16) -> [u8; 3] {
    let n = n.min(999);
    [
        b'0' + (n / 100) as u8,
        b'0' + (n / 10 % 10) as u8,
        b'0' + (n % 10) as u8,
    ]
}

/// A complete answer from the gateway itself, with a short plain-text body (the reason phrase
/// is the status code's canonical one).
pub(crate) fn write_own(status: StatusCode, body: &str, close: bool, out: &mut Vec<u8>) {
    write_own_with(status, body, close, b"", out);
}

/// [`write_own`] with `extra` header lines (each ending in `\r\n`), e.g. `retry-after: 1\r\n`.
pub(crate) fn write_own_with(
    status: StatusCode,
    body: &str,
    close: bool,
    extra: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\nvia: 1.1 caas-gateway\r\n");
    out.extend_from_slice(extra);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: (usize, usize, u64) = (100, 16 * 1024, 1 << 20);

    fn verdict(raw: &[u8]) -> String {
        let mut slots = header_slots();
        match parse_request(raw, &mut slots, LIMITS.0, LIMITS.1, LIMITS.2) {
            Verdict::Partial => "partial".into(),
            Verdict::Refuse(r) => format!("refuse {r:?}"),
            Verdict::Handover => "handover".into(),
            Verdict::Forward(r) => format!("forward {:?} close={}", r.framing, r.close),
        }
    }

    fn upstream(raw: &[u8]) -> String {
        let mut slots = header_slots();
        let Verdict::Forward(r) = parse_request(raw, &mut slots, LIMITS.0, LIMITS.1, LIMITS.2)
        else {
            panic!("not forwarded: {}", verdict(raw));
        };
        let mut out = Vec::new();
        r.write_upstream(b"127.0.0.1", false, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn framing_and_what_is_handed_over() {
        assert_eq!(verdict(b"GET / HTTP/1.1\r\nHost: a\r\n"), "partial");
        assert_eq!(
            verdict(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            "forward Empty close=false"
        );
        assert_eq!(
            verdict(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"),
            "forward Length(5) close=false"
        );
        assert_eq!(
            verdict(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n"),
            "forward Chunked close=true"
        );
        for raw in [
            &b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(verdict(raw), "handover", "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn bad_and_oversized_heads_are_refused() {
        let bad = [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for raw in bad {
            assert!(
                verdict(raw).starts_with("refuse BadRequest"),
                "{}: {}",
                String::from_utf8_lossy(raw),
                verdict(raw)
            );
        }
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n",
            "a".repeat(17 * 1024)
        );
        assert_eq!(verdict(big.as_bytes()), "refuse TooLarge");
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(verdict(raw.as_bytes()), "refuse TooLarge");
        assert_eq!(
            verdict(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n"),
            "refuse BodyTooLarge"
        );
    }

    #[test]
    fn upstream_head_has_the_proxy_headers_and_no_hop_by_hop_ones() {
        let up = upstream(
            b"GET /p?q=1 HTTP/1.1\r\nHost: shop.caas.localhost:8080\r\nConnection: keep-alive, X-Private\r\n\
              X-Private: s\r\nKeep-Alive: 5\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\
              X-Forwarded-Host: evil\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(
            up,
            "GET /p?q=1 HTTP/1.1\r\nHost: shop.caas.localhost:8080\r\nAccept: */*\r\n\
             x-forwarded-for: 127.0.0.1\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: shop.caas.localhost:8080\r\nvia: 1.1 caas-gateway\r\n\r\n"
        );
        let chunked = upstream(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n",
        );
        assert!(
            chunked.contains("Transfer-Encoding: chunked\r\n"),
            "{chunked}"
        );
        assert!(!chunked.contains("TE:"), "{chunked}");
    }

    fn response(raw: &[u8], head: bool) -> (Framing, bool, String) {
        let mut slots = header_slots();
        let ResponseVerdict::Head(r) = parse_response(raw, &mut slots, head) else {
            panic!("no head: {}", String::from_utf8_lossy(raw));
        };
        let mut out = Vec::new();
        r.write_client(false, &mut out);
        (
            r.framing,
            r.close,
            String::from_utf8(out).unwrap_or_default(),
        )
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", false).0,
            Framing::Length(6)
        );
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n", true).0,
            Framing::Empty
        );
        assert_eq!(
            response(b"HTTP/1.1 204 No Content\r\n\r\n", false).0,
            Framing::Empty
        );
        let (f, close, out) = response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
            false,
        );
        assert_eq!((f, close), (Framing::Chunked, false));
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nvia: 1.1 caas-gateway\r\n\r\n"
        );
        assert_eq!(
            response(b"HTTP/1.1 200 OK\r\n\r\n", false).0,
            Framing::UntilClose
        );
        // Both framings from a backend: chunked wins, the length never reaches the client.
        let (f, _, out) = response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(f, Framing::Chunked);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nvia: 1.1 caas-gateway\r\n\r\n"
        );
        let (f, _, out) = response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 9\r\n\r\n",
            false,
        );
        assert_eq!(f, Framing::UntilClose);
        assert!(
            !out.to_ascii_lowercase().contains("content-length"),
            "{out}"
        );
        let (f, close, _) = response(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", false);
        assert_eq!((f, close), (Framing::Length(2), true));
        let mut slots = header_slots();
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                &mut slots,
                false
            ),
            ResponseVerdict::Invalid(_)
        ));
    }

    /// A small deterministic generator, so the mutation test needs no dependency and repeats.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn mutated_heads_never_panic_and_never_claim_more_than_was_read() {
        let seeds: [&[u8]; 4] = [
            b"GET /a?b=c HTTP/1.1\r\nHost: shop.caas.localhost\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
            b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close, x\r\n\r\nhello",
            b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok",
        ];
        let alphabet = b":\r\n 0aZ,;\t\x00\xff-/";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20_000 {
            let mut buf = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + xorshift(&mut state) % 4 {
                let at = (xorshift(&mut state) as usize) % (buf.len() + 1);
                let byte = alphabet[(xorshift(&mut state) as usize) % alphabet.len()];
                match xorshift(&mut state) % 4 {
                    0 if at < buf.len() => buf[at] = byte,
                    1 => buf.insert(at, byte),
                    2 if at < buf.len() => {
                        buf.remove(at);
                    }
                    _ => buf.truncate(at),
                }
            }
            let mut slots = header_slots();
            if let Verdict::Forward(r) =
                parse_request(&buf, &mut slots, LIMITS.0, LIMITS.1, LIMITS.2)
            {
                assert!(r.len <= buf.len());
                assert!(!r.host.is_empty());
                let mut out = Vec::new();
                r.write_upstream(b"127.0.0.1", false, &mut out);
                assert!(out.ends_with(b"\r\n\r\n"));
            }
            for head in [false, true] {
                let mut slots = header_slots();
                if let ResponseVerdict::Head(r) = parse_response(&buf, &mut slots, head) {
                    assert!(r.len <= buf.len());
                    assert!(!(head && r.framing != Framing::Empty));
                }
            }
            let mut scan = crate::h1::chunked::Chunked::default();
            if let Ok(n) = scan.scan(&buf) {
                assert!(n <= buf.len());
            }
        }
    }

    #[test]
    fn own_answers_are_complete_messages() {
        let mut out = Vec::new();
        write_own(StatusCode::NOT_FOUND, "no app\n", true, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap_or_default(),
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 7\r\n\
             via: 1.1 caas-gateway\r\nconnection: close\r\n\r\nno app\n"
        );
    }
}
