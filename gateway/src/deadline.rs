//! One timer per connection for deadlines that are checked, never re-armed, on the request
//! path: the timer is set again only when it fires, to the current deadline or `check_every`
//! ahead, whichever comes first. A deadline that moved later since the timer was set costs one
//! early firing; one that moved earlier is noticed at most `check_every` late. Without
//! `check_every` the timer is set to the deadline itself, and set again when a deadline comes
//! earlier than the one it is armed for.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// A lazily armed connection timer.
#[derive(Debug)]
pub(crate) struct LazyDeadline {
    /// Made on first need.
    sleep: Option<Pin<Box<Sleep>>>,
    check_every: Option<Duration>,
}

impl LazyDeadline {
    /// A timer that looks again at most every `check_every` (see the module docs).
    pub(crate) fn new(check_every: Option<Duration>) -> LazyDeadline {
        LazyDeadline {
            sleep: None,
            check_every: check_every.map(|d| d.max(Duration::from_millis(1))),
        }
    }

    fn next(check_every: Option<Duration>, now: Instant, deadline: Instant) -> Instant {
        match check_every.and_then(|c| now.checked_add(c)) {
            Some(t) => t.min(deadline),
            None => deadline,
        }
    }

    /// Ready once `deadline` has passed; otherwise the timer stays armed and wakes `cx`.
    pub(crate) fn poll_passed(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let check_every = self.check_every;
        let sleep = self.sleep.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep_until(Self::next(
                check_every,
                Instant::now(),
                deadline,
            )))
        });
        // Without `check_every` the timer is set to a deadline exactly: one earlier than it is
        // armed for (a body timeout shorter than the response timeout before it) re-arms it.
        if check_every.is_none() && deadline < sleep.deadline() {
            sleep.as_mut().reset(deadline);
        }
        while sleep.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if now >= deadline {
                return Poll::Ready(());
            }
            sleep.as_mut().reset(Self::next(check_every, now, deadline));
        }
        Poll::Pending
    }
}
