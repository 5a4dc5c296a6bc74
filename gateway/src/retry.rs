//! The one retry policy of both request paths (`h1` and `proxy`): which methods are idempotent,
//! and whether a failed try may go out again, on a fresh connection to the same backend or to the
//! next backend. The paths differ in how they find out what failed, not in what they do about it.
//!
//! The rule is Go's transport's: a request that never reached the backend may go again whatever
//! its method; one the backend may have seen (even half of it) goes again only if sending it twice
//! means the same as sending it once (RFC 9110 §9.2.2), and never after a response timeout (the
//! backend may still be working on it). Either way the whole request must still be in hand.

/// Whether `method` is idempotent (RFC 9110 §9.2.2): GET, HEAD, OPTIONS, TRACE, PUT, DELETE.
/// Method names are case-sensitive, so `get` is not GET.
pub(crate) fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    )
}

/// What went wrong with one try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No usable new connection: connecting failed (or, on the fast path, the first write on the
    /// new connection did). The backend took nothing, and looks unreachable.
    Connect,
    /// A pooled keep-alive connection turned out closed before it took the request (hyper handed
    /// the request back unsent, or the write failed). Says nothing about the backend.
    StaleUnsent,
    /// The request went out whole on a pooled keep-alive connection that then closed without a
    /// byte of answer: most likely the backend closed it idle as the request went out, but it
    /// may have acted on it.
    StaleSent,
    /// The backend may have seen the request (or part of it), and the connection broke or the
    /// answer was not HTTP.
    Sent,
    /// No response head within the response timeout.
    TimedOut,
}

/// Where a failed try may go next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Nowhere: the client gets 502 (504 after a timeout).
    No,
    /// Again to the same backend on a fresh connection (not counted as another try).
    FreshConnection,
    /// To the next backend, if `--max-tries` allows another.
    NextBackend,
}

impl Failure {
    /// Where a request whose try failed this way may go: `idempotent` is its method's (see
    /// [`is_idempotent`]), `replayable` whether the whole request is still in hand to send again
    /// (a body read up front, or a request hyper handed back unsent).
    pub(crate) fn retry(self, idempotent: bool, replayable: bool) -> Retry {
        if !replayable {
            return Retry::No;
        }
        match self {
            Failure::Connect => Retry::NextBackend,
            Failure::StaleUnsent => Retry::FreshConnection,
            Failure::StaleSent if idempotent => Retry::FreshConnection,
            Failure::Sent if idempotent => Retry::NextBackend,
            Failure::StaleSent | Failure::Sent | Failure::TimedOut => Retry::No,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotent_methods_are_the_rfc_ones() {
        for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
            assert!(is_idempotent(m), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "get", "PROPFIND", ""] {
            assert!(!is_idempotent(m), "{m}");
        }
        // The hyper path asks with `http::Method::as_str`.
        assert!(is_idempotent(http::Method::TRACE.as_str()));
        assert!(!is_idempotent(http::Method::PATCH.as_str()));
    }

    #[test]
    fn the_policy_table() {
        use Failure::*;
        use Retry::*;
        // (what failed, idempotent, replayable) → where it may go.
        let table = [
            (Connect, true, true, NextBackend),
            (Connect, false, true, NextBackend),
            (Connect, true, false, No),
            (Connect, false, false, No),
            (StaleUnsent, true, true, FreshConnection),
            (StaleUnsent, false, true, FreshConnection),
            (StaleUnsent, true, false, No),
            (StaleUnsent, false, false, No),
            (StaleSent, true, true, FreshConnection),
            (StaleSent, false, true, No),
            (StaleSent, true, false, No),
            (StaleSent, false, false, No),
            (Sent, true, true, NextBackend),
            (Sent, false, true, No),
            (Sent, true, false, No),
            (Sent, false, false, No),
            (TimedOut, true, true, No),
            (TimedOut, false, true, No),
            (TimedOut, true, false, No),
            (TimedOut, false, false, No),
        ];
        for (failure, idempotent, replayable, want) in table {
            assert_eq!(
                failure.retry(idempotent, replayable),
                want,
                "{failure:?} idempotent={idempotent} replayable={replayable}"
            );
        }
    }
}
