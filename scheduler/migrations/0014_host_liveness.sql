-- Host liveness: the leader pings every host's engine and marks a `ready` host `down` after
-- `--host-down-after` failed pings in a row (`host_watch.rs`). `auto_down` says the leader did,
-- not an operator, so that a new leader still brings the host back to `ready` once its engine
-- answers again. An operator's state change (`PATCH /v1/hosts/{name}`) clears it: a state an
-- operator set is never changed by the watch.
ALTER TABLE hosts
    ADD COLUMN auto_down BOOLEAN NOT NULL DEFAULT FALSE;

-- Only a down host can have been marked down by the leader.
ALTER TABLE hosts
    ADD CONSTRAINT hosts_auto_down_is_down CHECK (NOT auto_down OR state = 'down');
