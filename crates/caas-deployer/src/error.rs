//! The deployer's error type, and the one place that turns a Docker Engine failure into it.
//!
//! Docker reports most failures as an HTTP status plus an English message; the scheduler needs to
//! know *what* happened (a taken port is a placement problem, an unknown image is the user's,
//! an unreachable engine is the host's), so [`classify`] reads both and picks a variant.

use std::fmt;

/// What went wrong talking to a Docker Engine. The scheduler maps these to HTTP statuses, so each
/// variant names one cause; [`Error::Docker`] is the rest, with the engine's status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint URL or its TLS files are unusable (a configuration mistake, not an outage).
    #[error("invalid docker endpoint {endpoint}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// The run spec cannot be sent to an engine (e.g. an unreachable host binding).
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),
    /// The engine could not be reached (socket missing, connection refused, timeout).
    #[error("docker engine unreachable: {0}")]
    Unreachable(String),
    /// The engine's TLS endpoint refused us (unknown client certificate, untrusted server
    /// certificate, plain HTTP sent to a TLS port).
    #[error("docker engine refused the connection (tls/auth): {0}")]
    TlsRefused(String),
    /// The image (repository or tag) does not exist in the registry, or locally.
    #[error("image not found: {image}: {message}")]
    ImageNotFound {
        /// The image reference.
        image: String,
        /// The engine's message.
        message: String,
    },
    /// The registry refused the credentials (or demanded some and got none).
    #[error("registry authentication failed for {image}: {message}")]
    RegistryAuth {
        /// The image reference.
        image: String,
        /// The engine's message.
        message: String,
    },
    /// The engine could not reach the registry.
    #[error("registry unreachable for {image}: {message}")]
    RegistryUnreachable {
        /// The image reference.
        image: String,
        /// The engine's message.
        message: String,
    },
    /// The host port (on that address) is already taken, by a container or another process.
    #[error("port already allocated: {0}")]
    PortAllocated(String),
    /// A container with that name exists and is not one of ours for this spec.
    #[error("container name conflict: {0}")]
    NameConflict(String),
    /// No such container.
    #[error("container not found: {0}")]
    ContainerNotFound(String),
    /// The container's network is gone (pruned between its creation and the container's).
    #[error("network not found: {0}")]
    NetworkNotFound(String),
    /// The host could not give the container memory.
    #[error("host out of memory: {0}")]
    HostOutOfMemory(String),
    /// The engine answered with something we could not use (no id, unparsable field).
    #[error("unexpected answer from docker engine: {0}")]
    Unexpected(String),
    /// Any other engine error, with its HTTP status.
    #[error("docker error (status {status}): {message}")]
    Docker {
        /// The engine's HTTP status.
        status: u16,
        /// The engine's message.
        message: String,
    },
}

impl Error {
    /// True when the failure is the engine's or the network's, not the request's: the same call
    /// may succeed later or on another host.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unreachable(_) | Error::RegistryUnreachable { .. } | Error::HostOutOfMemory(_)
        )
    }
}

/// Result with the deployer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the failing call was doing: the same engine message means different things for a pull
/// (registry trouble) and for a container call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    /// Pulling or inspecting this image.
    Image(&'a str),
    /// Creating, starting or otherwise touching this container (id or name).
    Container(&'a str),
    /// Talking to the engine itself (ping, version, list, events).
    Engine,
}

impl fmt::Display for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Image(i) => write!(f, "image {i}"),
            Op::Container(c) => write!(f, "container {c}"),
            Op::Engine => f.write_str("engine"),
        }
    }
}

/// Every message of an error and its sources, joined: hyper and rustls put the useful part
/// (connection refused, certificate unknown) several sources deep.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn has_any(haystack: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| haystack.contains(n))
}

/// Messages that say the host had no memory to give (the kernel's ENOMEM as Go prints it).
const HOST_OOM: &[&str] = &["cannot allocate memory", "out of memory"];
/// Messages of a port binding that failed because the port is taken.
const PORT_TAKEN: &[&str] = &[
    "port is already allocated",
    "address already in use",
    "bind for",
];
/// Registry answers meaning "no such repository or tag".
const IMAGE_MISSING: &[&str] = &[
    "manifest unknown",
    "not found",
    "repository does not exist",
    "no such image",
    "name unknown",
];
/// Registry answers meaning "your credentials are wrong or missing".
const AUTH_FAILED: &[&str] = &[
    "unauthorized",
    "authentication required",
    "access denied",
    "denied:",
    "no basic auth credentials",
    "incorrect username or password",
];
/// Engine messages meaning "I could not reach the registry".
const NET_FAILED: &[&str] = &[
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "network is unreachable",
    "tls handshake timeout",
    "server gave http response to https client",
    "request canceled",
    "connection reset",
    "eof",
];
/// Transport messages meaning "the TLS endpoint refused us".
const TLS_REFUSED: &[&str] = &[
    "certificate",
    "tls",
    "handshake",
    "alert",
    "http request to an https server",
];

/// Classifies an engine message (from an HTTP error or from an error line inside a pull stream).
pub(crate) fn classify_message(op: Op<'_>, status: u16, message: String) -> Error {
    let lower = message.to_ascii_lowercase();
    match op {
        Op::Image(image) => {
            let image = image.to_owned();
            if has_any(&lower, AUTH_FAILED) || status == 401 {
                Error::RegistryAuth { image, message }
            } else if has_any(&lower, IMAGE_MISSING) || status == 404 {
                Error::ImageNotFound { image, message }
            } else if has_any(&lower, NET_FAILED) {
                Error::RegistryUnreachable { image, message }
            } else {
                Error::Docker { status, message }
            }
        }
        Op::Container(_) | Op::Engine => {
            if has_any(&lower, PORT_TAKEN) {
                Error::PortAllocated(message)
            } else if status == 409 && lower.contains("already in use") {
                Error::NameConflict(message)
            } else if lower.contains("network") && lower.contains("not found") {
                Error::NetworkNotFound(message)
            } else if status == 404 && lower.contains("no such image") {
                Error::ImageNotFound {
                    image: String::new(),
                    message,
                }
            } else if status == 404 {
                Error::ContainerNotFound(message)
            } else if has_any(&lower, HOST_OOM) {
                Error::HostOutOfMemory(message)
            } else {
                Error::Docker { status, message }
            }
        }
    }
}

/// Turns a bollard error into ours, knowing what the call was doing.
pub(crate) fn classify(op: Op<'_>, err: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    match err {
        B::DockerResponseServerError {
            status_code,
            message,
        } => {
            // Go's TLS server answers plain HTTP with a bare 400 saying so.
            if status_code == 400 && message.contains("HTTP request to an HTTPS server") {
                return Error::TlsRefused(message);
            }
            classify_message(op, status_code, message)
        }
        B::RequestTimeoutError => Error::Unreachable(format!("{op}: request timed out")),
        B::SocketNotFoundError(path) => Error::Unreachable(format!("no socket at {path}")),
        B::CertPathError { path } => Error::InvalidEndpoint {
            endpoint: path.display().to_string(),
            reason: "cannot read certificate file".into(),
        },
        B::CertParseError { path } | B::CertMultipleKeys { path, .. } => Error::InvalidEndpoint {
            endpoint: path.display().to_string(),
            reason: "cannot parse key file".into(),
        },
        other => {
            let text = chain(&other);
            let lower = text.to_ascii_lowercase();
            let transport = matches!(
                other,
                B::HyperResponseError { .. }
                    | B::HttpClientError { .. }
                    | B::HyperLegacyError { .. }
                    | B::IOError { .. }
            );
            if transport && has_any(&lower, TLS_REFUSED) {
                Error::TlsRefused(format!("{op}: {text}"))
            } else if transport {
                Error::Unreachable(format!("{op}: {text}"))
            } else {
                Error::Unexpected(format!("{op}: {text}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status: u16, msg: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code: status,
            message: msg.into(),
        }
    }

    #[test]
    fn container_messages() {
        let taken = server(500, "driver failed programming external connectivity on endpoint caas-x (abc): Bind for 127.0.0.2:25700 failed: port is already allocated");
        assert!(matches!(
            classify(Op::Container("x"), taken),
            Error::PortAllocated(_)
        ));
        let proxy = server(500, "driver failed programming external connectivity on endpoint caas-x: Error starting userland proxy: listen tcp4 127.0.0.2:25700: bind: address already in use");
        assert!(matches!(
            classify(Op::Container("x"), proxy),
            Error::PortAllocated(_)
        ));
        let conflict = server(409, "Conflict. The container name \"/caas-a\" is already in use by container \"0123\". You have to remove (or rename) that container to be able to reuse that name.");
        assert!(matches!(
            classify(Op::Container("x"), conflict),
            Error::NameConflict(_)
        ));
        assert!(matches!(
            classify(Op::Container("x"), server(404, "No such container: x")),
            Error::ContainerNotFound(_)
        ));
        assert!(matches!(
            classify(
                Op::Container("x"),
                server(404, "No such image: 127.0.0.1:5000/a:b")
            ),
            Error::ImageNotFound { .. }
        ));
        assert!(matches!(
            classify(Op::Container("x"), server(500, "OCI runtime create failed: container_linux.go:380: starting container process caused: fork/exec: cannot allocate memory")),
            Error::HostOutOfMemory(_)
        ));
        assert!(matches!(
            classify(Op::Container("x"), server(500, "something else")),
            Error::Docker { status: 500, .. }
        ));
    }

    #[test]
    fn image_messages() {
        let img = Op::Image("127.0.0.1:5000/a:b");
        assert!(matches!(
            classify(
                img,
                server(
                    404,
                    "manifest for 127.0.0.1:5000/a:b not found: manifest unknown: manifest unknown"
                )
            ),
            Error::ImageNotFound { .. }
        ));
        assert!(matches!(
            classify_message(
                img,
                500,
                "Head \"https://r/v2/a/manifests/b\": no basic auth credentials".into()
            ),
            Error::RegistryAuth { .. }
        ));
        assert!(matches!(
            classify(img, server(500, "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused")),
            Error::RegistryUnreachable { .. }
        ));
        assert!(matches!(
            classify(
                img,
                server(400, "Client sent an HTTP request to an HTTPS server.")
            ),
            Error::TlsRefused(_)
        ));
    }

    #[test]
    fn transient_kinds() {
        assert!(Error::Unreachable("x".into()).is_transient());
        assert!(!Error::PortAllocated("x".into()).is_transient());
    }
}
