-- Container hardening per deployment (issue 16): the user its containers run as (Docker's
-- `User`: uid, uid:gid or names; NULL: the image's) and whether their root filesystem is
-- read-only (a tmpfs at /tmp stays writable). Log rotation and the nofile ulimit are the
-- scheduler's flags, not stored.
ALTER TABLE deployments
    ADD COLUMN run_as_user VARCHAR(65) NULL,
    ADD COLUMN read_only   BOOLEAN     NOT NULL DEFAULT FALSE;
