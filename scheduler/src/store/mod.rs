//! The MySQL store: hosts, apps, deployments, instances, tenants.
