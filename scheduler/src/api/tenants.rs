//! `/v1/tenants` (operator only): a tenant owns the apps its token creates, may route custom
//! domains under the suffixes given here, and holds no more than its quota.

use super::auth::{new_token, token_hash, Operator};
use super::error::{ApiError, ApiResult};
use super::{parse_path, ApiJson, AppState};
use crate::domain_policy;
use crate::store::{Quota, TenantRow, Usage};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use caas_types::api::{CreateTenant, Tenant, TenantQuota, TenantToken, TenantUsage, UpdateTenant};
use caas_types::{Domain, TenantName};

/// The largest count a quota takes (apps, instances).
const MAX_COUNT: u32 = 1_000_000;
/// The largest memory a quota takes, MiB (1 PiB).
const MAX_MEMORY_MB: u64 = 1 << 30;
/// The largest CPU count a quota takes.
const MAX_CPUS: f64 = 1_000_000.0;
/// The name no tenant may take: the registry's token endpoint reads it as the operator.
const RESERVED_NAME: &str = "operator";
/// Domain suffixes one tenant may be given.
const MAX_SUFFIXES: usize = 100;

/// Checks a quota at the edge and converts it to what is stored; the error names the field.
fn quota_in(q: &TenantQuota) -> ApiResult<Quota> {
    let count = |name: &str, v: Option<u32>| match v {
        Some(v) if v > MAX_COUNT => Err(ApiError::BadRequest(format!(
            "quota.{name}: at most {MAX_COUNT}"
        ))),
        v => Ok(v.map(u64::from)),
    };
    if q.max_memory_mb.is_some_and(|m| m > MAX_MEMORY_MB) {
        return Err(ApiError::BadRequest(format!(
            "quota.max_memory_mb: at most {MAX_MEMORY_MB}"
        )));
    }
    let max_cpu_millis = match q.max_cpus {
        None => None,
        Some(c) if c.is_finite() && (0.0..=MAX_CPUS).contains(&c) => {
            // In range, so the cast cannot overflow.
            Some((c * 1000.0).round() as u64)
        }
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "quota.max_cpus: a number from 0 to {MAX_CPUS}"
            )))
        }
    };
    Ok(Quota {
        max_apps: count("max_apps", q.max_apps)?,
        max_instances: count("max_instances", q.max_instances)?,
        max_memory_mib: q.max_memory_mb,
        max_cpu_millis,
    })
}

fn quota_out(q: &Quota) -> Option<TenantQuota> {
    if *q == Quota::default() {
        return None;
    }
    let small = |v: Option<u64>| v.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
    Some(TenantQuota {
        max_apps: small(q.max_apps),
        max_instances: small(q.max_instances),
        max_memory_mb: q.max_memory_mib,
        max_cpus: q.max_cpu_millis.map(|m| m as f64 / 1000.0),
    })
}

fn usage_out(u: &Usage) -> TenantUsage {
    TenantUsage {
        apps: u32::try_from(u.apps).unwrap_or(u32::MAX),
        instances: u32::try_from(u.instances).unwrap_or(u32::MAX),
        memory_mb: u.memory_bytes >> 20,
        cpus: u.cpu_millis as f64 / 1000.0,
    }
}

fn tenant_out(row: &TenantRow, domains: Vec<Domain>) -> Tenant {
    Tenant {
        name: row.name.clone(),
        token: None,
        domains,
        quota: quota_out(&row.quota),
        usage: None,
    }
}

/// Checks suffixes for `tenant` against the platform's domain and every other tenant's.
async fn check_suffixes(
    state: &AppState,
    tenant: &TenantName,
    domains: &[Domain],
) -> ApiResult<()> {
    if domains.len() > MAX_SUFFIXES {
        return Err(ApiError::BadRequest(format!(
            "domains: at most {MAX_SUFFIXES} suffixes"
        )));
    }
    let others = state.store.all_tenant_domains().await?;
    for d in domains {
        domain_policy::check_suffix(d, &state.config.domain, tenant, &others)?;
    }
    Ok(())
}

/// `GET /v1/tenants`
pub async fn list(State(state): State<AppState>, _op: Operator) -> ApiResult<Json<Vec<Tenant>>> {
    let rows = state.store.list_tenants().await?;
    let mut domains = state.store.all_tenant_domains().await?;
    Ok(Json(
        rows.iter()
            .map(|t| {
                let (mine, rest) = domains.drain(..).partition(|(n, _)| n == &t.name);
                domains = rest;
                tenant_out(t, mine.into_iter().map(|(_, d)| d).collect())
            })
            .collect(),
    ))
}

/// `GET /v1/tenants/{name}`: the tenant with what it holds now.
pub async fn show(
    State(state): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<Tenant>> {
    let name: TenantName = parse_path("tenant name", &name)?;
    let row = state.store.get_tenant(&name).await?;
    let mut out = tenant_out(&row, state.store.tenant_domains(&name).await?);
    out.usage = Some(usage_out(&state.store.tenant_usage(&name).await?));
    Ok(Json(out))
}

/// `POST /v1/tenants` → 201 with the token, shown this once (only its hash is stored).
pub async fn create(
    State(state): State<AppState>,
    _op: Operator,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    if req.name.as_str() == RESERVED_NAME {
        return Err(ApiError::BadRequest(format!(
            "name: {RESERVED_NAME} is reserved (the operator's registry login)"
        )));
    }
    let quota = req
        .quota
        .as_ref()
        .map(quota_in)
        .transpose()?
        .unwrap_or_default();
    check_suffixes(&state, &req.name, &req.domains).await?;
    let token = new_token();
    let row = state
        .store
        .create_tenant(&req.name, &token_hash(&token), &req.domains, quota)
        .await?;
    tracing::info!(tenant = %row.name, "tenant created");
    let mut out = tenant_out(&row, state.store.tenant_domains(&row.name).await?);
    out.token = Some(token);
    Ok((StatusCode::CREATED, Json(out)))
}

/// `PATCH /v1/tenants/{name}` `{"domains"?, "quota"?}`: replaces what is given. Lowering a
/// quota below what the tenant holds stops nothing; it only refuses new claims.
pub async fn update(
    State(state): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateTenant>,
) -> ApiResult<Json<Tenant>> {
    let name: TenantName = parse_path("tenant name", &name)?;
    if req.domains.is_none() && req.quota.is_none() {
        return Err(ApiError::BadRequest(
            "nothing to change: give domains or quota".into(),
        ));
    }
    let quota = match &req.quota {
        None => None,
        Some(None) => Some(Quota::default()),
        Some(Some(q)) => Some(quota_in(q)?),
    };
    if let Some(domains) = &req.domains {
        check_suffixes(&state, &name, domains).await?;
        let mut routed = Vec::new();
        for app in state.store.list_apps(Some(&name)).await? {
            routed.extend(
                state
                    .store
                    .list_domains(&app.id)
                    .await?
                    .into_iter()
                    .map(|d| d.domain),
            );
        }
        domain_policy::check_suffixes_keep_routed(&routed, domains)?;
    }
    state
        .store
        .update_tenant(&name, req.domains.as_deref(), quota)
        .await?;
    tracing::info!(tenant = %name, "tenant changed");
    let row = state.store.get_tenant(&name).await?;
    Ok(Json(tenant_out(
        &row,
        state.store.tenant_domains(&name).await?,
    )))
}

/// `POST /v1/tenants/{name}/token` (no body) → 200 `{"name", "token"}`: a new token; the old
/// one fails from the next request on (tokens are looked up per request, never cached).
pub async fn rotate_token(
    State(state): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<Json<TenantToken>> {
    let name: TenantName = parse_path("tenant name", &name)?;
    let token = new_token();
    state
        .store
        .set_tenant_token(&name, &token_hash(&token))
        .await?;
    tracing::info!(tenant = %name, "tenant token rotated");
    Ok(Json(TenantToken { name, token }))
}

/// `DELETE /v1/tenants/{name}` → 204; refused (409) while it owns apps.
pub async fn remove(
    State(state): State<AppState>,
    _op: Operator,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let name: TenantName = parse_path("tenant name", &name)?;
    state.store.delete_tenant(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_checked_and_round_trip() {
        let q = TenantQuota {
            max_apps: Some(20),
            max_instances: Some(50),
            max_memory_mb: Some(65536),
            max_cpus: Some(0.5),
        };
        let stored = quota_in(&q).expect("valid");
        assert_eq!(stored.max_cpu_millis, Some(500));
        assert_eq!(quota_out(&stored), Some(q));
        assert_eq!(quota_out(&Quota::default()), None);
        for (bad, field) in [
            (
                TenantQuota {
                    max_cpus: Some(-1.0),
                    ..TenantQuota::default()
                },
                "max_cpus",
            ),
            (
                TenantQuota {
                    max_cpus: Some(f64::NAN),
                    ..TenantQuota::default()
                },
                "max_cpus",
            ),
            (
                TenantQuota {
                    max_apps: Some(MAX_COUNT + 1),
                    ..TenantQuota::default()
                },
                "max_apps",
            ),
            (
                TenantQuota {
                    max_memory_mb: Some(MAX_MEMORY_MB + 1),
                    ..TenantQuota::default()
                },
                "max_memory_mb",
            ),
        ] {
            let e = quota_in(&bad).expect_err(field);
            assert!(e.to_string().contains(field), "{e} names {field}");
        }
    }
}
