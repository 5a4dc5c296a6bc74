//! Placement: filter → rank → pick → claim with optimistic locking.
