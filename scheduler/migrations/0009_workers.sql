-- Workers and commands on deployments. A deployment whose `port` is NULL is a worker: its
-- instances publish nothing, so their claims hold no host port (`host_port` NULL; the unique
-- (host_id, host_port) key allows any number of NULLs, and the port CHECK passes on NULL).
-- `command` overrides the image's CMD (a JSON array of strings; NULL: the image's own).
ALTER TABLE deployments
    MODIFY COLUMN port INT NULL,
    ADD COLUMN command JSON NULL;
ALTER TABLE instances
    MODIFY COLUMN host_port INT NULL;
