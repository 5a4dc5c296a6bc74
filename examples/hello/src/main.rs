//! `hello`: the caas sample app. No dependencies, so it builds in seconds into a static binary.
//!
//! Routes:
//! - `GET /` → `{"app", "version", "hostname"}` (app and version from `HELLO_APP`/`HELLO_VERSION`)
//! - `GET /_ping` → `200 pong`
//! - `POST /echo` → the request body streamed back (for the gateway's large-upload tests)
//! - `GET /bytes/{n}` → `n` bytes (for large downloads)
//! - `GET /alloc/{mb}` → allocates and touches `mb` MiB (for OOM tests); answers only if it survives
//! - `GET /sleep/{ms}` → waits `ms` milliseconds (at most 60,000: more is cut to that), then
//!   `200 slept {ms}`; not a whole number → `400` (keeps requests in flight for the autoscale
//!   benchmark)
//!
//! Listens on `0.0.0.0:$PORT` (default 8080), one thread per connection, HTTP/1.1 keep-alive.
//!
//! Output (for the logs tests and benchmark): one line on stderr once listening; with
//! `HELLO_REQUEST_LOG=1`, one stdout line per request other than `/_ping` (`{method} {path}`;
//! off by default so the gateway benchmarks measure the proxy, not a log pipe); with
//! `HELLO_LOG_LINES=n`, `n` lines `hello-log {i} {unix_nanos}` written once listening, every
//! tenth (i divisible by 10) on stderr and the rest on stdout, at `HELLO_LOG_RATE` lines a
//! second (default: as fast as it can).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Longest `/sleep/{ms}` wait, milliseconds.
const MAX_SLEEP_MS: u64 = 60_000;

/// `HELLO_REQUEST_LOG=1`: log every request but health probes.
static REQUEST_LOG: AtomicBool = AtomicBool::new(false);

extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn _exit(status: i32) -> !;
}

extern "C" fn on_term(_: i32) {
    // Async-signal-safe: exit at once. The app holds no state worth flushing.
    unsafe { _exit(0) }
}

fn main() {
    // As PID 1 in a container, SIGTERM is ignored unless handled: `docker stop` would wait its
    // whole grace period. Handle it so stops take milliseconds.
    unsafe {
        signal(15, on_term);
        signal(2, on_term);
    }
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hello: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("hello: listening on 0.0.0.0:{port}");
    REQUEST_LOG.store(
        std::env::var("HELLO_REQUEST_LOG").is_ok_and(|v| v == "1"),
        Ordering::Relaxed,
    );
    if let Some(n) = env_u64("HELLO_LOG_LINES") {
        let rate = env_u64("HELLO_LOG_RATE").unwrap_or(0);
        std::thread::spawn(move || write_lines(n, rate));
    }
    let info = Info::from_env();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let info = info.clone();
        std::thread::spawn(move || {
            let _ = serve(stream, &info);
        });
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Writes `n` numbered lines with their write time, `rate` a second (0: unpaced).
fn write_lines(n: u64, rate: u64) {
    let start = Instant::now();
    for i in 1..=n {
        // rate 0: no pacing.
        if let Some(due_ns) = i.saturating_mul(1_000_000_000).checked_div(rate) {
            let due = start + Duration::from_nanos(due_ns);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        if i % 10 == 0 {
            eprintln!("hello-log {i} {ns}");
        } else {
            println!("hello-log {i} {ns}");
        }
    }
}

#[derive(Clone)]
struct Info {
    root_body: String,
}

impl Info {
    fn from_env() -> Info {
        let app = std::env::var("HELLO_APP").unwrap_or_else(|_| "hello".into());
        let version = std::env::var("HELLO_VERSION").unwrap_or_else(|_| "v1".into());
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .unwrap_or_default();
        Info {
            root_body: format!(
                "{{\"app\":\"{}\",\"version\":\"{}\",\"hostname\":\"{}\"}}\n",
                escape(&app),
                escape(&version),
                escape(hostname.trim())
            ),
        }
    }
}

fn escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c => vec![c],
        })
        .collect()
}

struct Request {
    method: String,
    path: String,
    content_length: u64,
    chunked: bool,
    close: bool,
}

fn read_request(r: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    let mut total = 0;
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("/").to_owned();
    let http10 = parts.next() == Some("HTTP/1.0");
    let mut req = Request {
        method,
        path,
        content_length: 0,
        chunked: false,
        close: http10,
    };
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        total += n;
        if n == 0 || total > MAX_HEADER_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "headers too large or truncated",
            ));
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => req.content_length = v.parse().unwrap_or(0),
                "transfer-encoding" => req.chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => {
                    if v.eq_ignore_ascii_case("close") {
                        req.close = true
                    } else if v.eq_ignore_ascii_case("keep-alive") {
                        req.close = false
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Some(req))
}

fn serve(stream: TcpStream, info: &Info) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut out = stream.try_clone()?;
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    while let Some(req) = read_request(&mut r)? {
        let keep = !req.close;
        if REQUEST_LOG.load(Ordering::Relaxed) && req.path != "/_ping" {
            println!("{} {}", req.method, req.path);
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("GET" | "HEAD", "/") => respond(
                &mut out,
                200,
                "application/json",
                info.root_body.as_bytes(),
                keep,
            )?,
            ("GET" | "HEAD", "/_ping") => respond(&mut out, 200, "text/plain", b"pong", keep)?,
            ("POST" | "PUT", "/echo") => echo(&mut r, &mut out, &req, keep)?,
            ("GET", p) if p.starts_with("/bytes/") => {
                let n: u64 = p["/bytes/".len()..].parse().unwrap_or(0);
                write!(out, "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {n}\r\n{}\r\n", conn(keep))?;
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let k = left.min(chunk.len() as u64) as usize;
                    out.write_all(&chunk[..k])?;
                    left -= k as u64;
                }
            }
            ("GET", p) if p.starts_with("/alloc/") => {
                let mb: usize = p["/alloc/".len()..].parse().unwrap_or(0);
                let mut hold: Vec<Vec<u8>> = Vec::new();
                for _ in 0..mb {
                    hold.push(vec![1u8; 1 << 20]);
                }
                let body = format!("allocated {} MiB\n", hold.len());
                respond(&mut out, 200, "text/plain", body.as_bytes(), keep)?;
            }
            ("GET", p) if p.starts_with("/sleep/") => match parse_sleep(&p["/sleep/".len()..]) {
                Some(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    let body = format!("slept {ms}\n");
                    respond(&mut out, 200, "text/plain", body.as_bytes(), keep)?;
                }
                None => respond(
                    &mut out,
                    400,
                    "text/plain",
                    b"expected /sleep/{ms} with ms a whole number\n",
                    keep,
                )?,
            },
            _ => {
                skip_body(&mut r, &req)?;
                respond(&mut out, 404, "text/plain", b"not found\n", keep)?
            }
        }
        if !keep {
            break;
        }
    }
    Ok(())
}

/// The milliseconds of `/sleep/{ms}`: digits only, cut to `MAX_SLEEP_MS`; `None` if not a number.
fn parse_sleep(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // All digits: a parse failure can only be an overflow, which is over the cap anyway.
    Some(
        s.parse::<u64>()
            .map_or(MAX_SLEEP_MS, |ms| ms.min(MAX_SLEEP_MS)),
    )
}

fn conn(keep: bool) -> &'static str {
    if keep {
        ""
    } else {
        "connection: close\r\n"
    }
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &[u8],
    keep: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let mut buf = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n{}\r\n",
        body.len(),
        conn(keep)
    )
    .into_bytes();
    buf.extend_from_slice(body);
    out.write_all(&buf)
}

fn skip_body(r: &mut BufReader<TcpStream>, req: &Request) -> io::Result<()> {
    if req.chunked {
        let mut sink = io::sink();
        return copy_chunked(r, &mut sink, false);
    }
    io::copy(&mut r.by_ref().take(req.content_length), &mut io::sink())?;
    Ok(())
}

/// Streams the request body back as a chunked response, never holding it whole.
fn echo(
    r: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    req: &Request,
    keep: bool,
) -> io::Result<()> {
    write!(out, "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n{}\r\n", conn(keep))?;
    if req.chunked {
        copy_chunked(r, out, true)?;
    } else {
        let mut left = req.content_length;
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let k = r.read(&mut buf[..want])?;
            if k == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            write!(out, "{k:x}\r\n")?;
            out.write_all(&buf[..k])?;
            out.write_all(b"\r\n")?;
            left -= k as u64;
        }
    }
    out.write_all(b"0\r\n\r\n")
}

/// Copies a chunked body from `r` to `w`, re-chunking it when `rechunk`.
fn copy_chunked(r: &mut BufReader<TcpStream>, w: &mut dyn Write, rechunk: bool) -> io::Result<()> {
    let mut line = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                line.clear();
                if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let k = r.read(&mut buf[..want])?;
            if k == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if rechunk {
                write!(w, "{k:x}\r\n")?;
                w.write_all(&buf[..k])?;
                w.write_all(b"\r\n")?;
            } else {
                w.write_all(&buf[..k])?;
            }
            left -= k as u64;
        }
        line.clear();
        r.read_line(&mut line)?; // CRLF after the chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_takes_whole_milliseconds_cut_to_the_cap() {
        assert_eq!(parse_sleep("0"), Some(0));
        assert_eq!(parse_sleep("500"), Some(500));
        assert_eq!(parse_sleep("60000"), Some(60_000));
        assert_eq!(parse_sleep("60001"), Some(MAX_SLEEP_MS));
        assert_eq!(parse_sleep("99999999999999999999999"), Some(MAX_SLEEP_MS));
        for bad in ["", "-1", "+5", "1.5", "abc", "10ms", "5?x=1", " 5"] {
            assert_eq!(parse_sleep(bad), None, "{bad:?}");
        }
    }
}
