//! What each subcommand does: build the request, call the admin API, print the answer.

use crate::app_config;
use crate::cli::{
    AppsCmd, BlacklistCmd, Cli, Command, DeployArgs, DomainsCmd, HostsCmd, OnFailureArg, Output,
    QuotaArgs, RankArg, TenantsCmd,
};
use crate::client::Client;
use crate::config;
use crate::ndjson::Lines;
use crate::output::{out, outln};
use crate::table::Table;
use anyhow::{bail, Context, Result};
use caas_types::api::{
    AddDomain, App, Autoscale, Blacklist, BlacklistRule, CreateApp, CreateDeployment, CreateHost,
    CreateTenant, DeployEvent, Deployment, HealthSpec, Host, HostState, Instance, OnFailure,
    Placement, Rank, Release, Rollback, Scale, Tag, Tenant, TenantQuota, TenantToken, UpdateApp,
    UpdateHost, UpdateTenant,
};
use caas_types::{AppId, Domain};
use futures::StreamExt;
use reqwest::Method;
use serde::Serialize;

/// Runs one parsed command line; answers the exit code: the job's or workflow's for `caas run`
/// and `caas workflow run`, 0 for the others.
pub async fn run(cli: Cli) -> Result<u8> {
    let env = |k: &str| std::env::var(k).ok();
    let settings = config::resolve(cli.api, cli.token, cli.config, &env)?;
    let client = Client::new(settings)?;
    let out = cli.output;
    match cli.command {
        Command::Run(args) => crate::jobs::run(&client, args).await,
        Command::Workflow(cmd) => crate::workflows::workflow(&client, out, cmd).await,
        other => command(&client, out, other).await.map(|()| 0),
    }
}

/// Runs a command that succeeds or fails, nothing in between.
async fn command(client: &Client, out: Output, command: Command) -> Result<()> {
    match command {
        Command::Apps(cmd) => apps(client, out, cmd).await,
        Command::Deploy(args) => deploy(client, out, args).await,
        Command::Scale {
            app,
            version,
            instances,
        } => {
            let path = format!("/v1/apps/{app}/deployments/{version}");
            let v = client
                .call(Method::PUT, &path, Some(&Scale { instances }))
                .await?;
            print_value(out, &v, || {
                format!("{app} {version}: {instances} instance(s)")
            })
        }
        Command::Undeploy { app, version } => {
            client
                .call::<()>(
                    Method::DELETE,
                    &format!("/v1/apps/{app}/deployments/{version}"),
                    None,
                )
                .await?;
            outln!("undeployed {app} {version}");
            Ok(())
        }
        Command::Tags { app } => tags(client, out, app).await,
        Command::Releases { app, limit, before } => releases(client, out, app, limit, before).await,
        Command::Rollback {
            app,
            release,
            quiet,
        } => rollback(client, out, app, release, quiet).await,
        Command::Ps { app } => ps(client, out, app).await,
        Command::Config(args) => app_config::config(client, out, args).await,
        Command::Secrets(cmd) => app_config::secrets(client, out, cmd).await,
        Command::Restart { app, quiet } => app_config::restart(client, out, app, quiet).await,
        Command::Kill {
            app,
            instance,
            quiet,
        } => app_config::kill(client, out, app, instance, quiet).await,
        Command::Logs(args) => crate::logs::logs(client, out, args).await,
        Command::Top { window, once } => crate::top::top(client, out, &window, once).await,
        Command::Events {
            follow,
            app,
            limit,
            before,
        } => crate::events::events(client, out, follow, app, limit, before).await,
        Command::Webhooks(cmd) => crate::events::webhooks(client, out, cmd).await,
        Command::Hosts(cmd) => hosts(client, out, cmd).await,
        Command::Domains(cmd) => domains(client, cmd).await,
        Command::Blacklist(cmd) => blacklist(client, out, cmd).await,
        Command::Tenants(cmd) => tenants(client, out, cmd).await,
        Command::Jobs(cmd) => crate::jobs::jobs(client, out, cmd).await,
        Command::Schedules(cmd) => crate::schedules::schedules(client, out, cmd).await,
        Command::Run(_) | Command::Workflow(_) => {
            // `run` above takes these: they answer an exit code of their own.
            bail!("internal: an exit-code command reached the plain dispatcher")
        }
    }
}

pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_value(out: Output, v: &serde_json::Value, human: impl FnOnce() -> String) -> Result<()> {
    match out {
        Output::Json => print_json(v),
        Output::Table => {
            outln!("{}", human());
            Ok(())
        }
    }
}

async fn apps(client: &Client, out: Output, cmd: AppsCmd) -> Result<()> {
    match cmd {
        AppsCmd::Ls => {
            let apps: Vec<App> = client.get("/v1/apps").await?;
            if out == Output::Json {
                return print_json(&apps);
            }
            let mut t = Table::new(&["APP", "DOMAIN", "AUTO-DEPLOY", "CUSTOM DOMAINS"]);
            for a in apps {
                let custom: Vec<String> = a.domains.iter().map(ToString::to_string).collect();
                t.row(vec![
                    a.id.to_string(),
                    a.domain,
                    if a.auto_deploy { "on" } else { "off" }.into(),
                    custom.join(","),
                ]);
            }
            out!("{}", t.render());
            Ok(())
        }
        AppsCmd::Create { id, auto_deploy } => {
            let v = client
                .call(
                    Method::POST,
                    "/v1/apps",
                    Some(&CreateApp {
                        id: id.clone(),
                        auto_deploy,
                    }),
                )
                .await?;
            let domain = v
                .get("domain")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_owned();
            print_value(out, &v, || format!("created {id}: http://{domain}/"))
        }
        AppsCmd::Update { id, auto_deploy } => {
            let v = client
                .call(
                    Method::PATCH,
                    &format!("/v1/apps/{id}"),
                    Some(&UpdateApp { auto_deploy }),
                )
                .await?;
            let on = v.get("auto_deploy").and_then(serde_json::Value::as_bool);
            print_value(out, &v, || {
                format!(
                    "{id}: auto-deploy {}",
                    if on == Some(true) { "on" } else { "off" }
                )
            })
        }
        AppsCmd::Rm { id } => {
            client
                .call::<()>(Method::DELETE, &format!("/v1/apps/{id}"), None)
                .await?;
            outln!("removed {id}");
            Ok(())
        }
    }
}

fn deployment_request(a: &DeployArgs) -> CreateDeployment {
    let autoscale = a.autoscale.map(|s| Autoscale {
        min: s.min,
        max: s.max,
        target_concurrency: s
            .target
            .unwrap_or(caas_types::api::DEFAULT_TARGET_CONCURRENCY),
        scale_down_delay_s: a
            .scale_down_delay
            .map_or(caas_types::api::DEFAULT_SCALE_DOWN_DELAY_S, i64::from),
    });
    CreateDeployment {
        version: a.version.clone(),
        // With autoscale, no count is 0: the scheduler starts at `min`.
        instances: a
            .instances
            .unwrap_or(if autoscale.is_some() { 0 } else { 1 }),
        memory_mb: a.memory.mib(),
        cpus: a.cpus.cores(),
        port: (!a.worker).then_some(a.port),
        command: (!a.command.is_empty()).then(|| a.command.clone()),
        env: a.env.iter().cloned().collect(),
        placement: Placement {
            rank: match a.rank {
                RankArg::Memory => Rank::Memory,
                RankArg::Cpu => Rank::Cpu,
            },
            spread: a.spread,
            constraints: a.constraint.iter().cloned().collect(),
            colocate_with: a.colocate_with.clone(),
            global: a.global,
        },
        health: HealthSpec {
            path: a.health_path.clone(),
            on_failure: match a.on_failure {
                OnFailureArg::Restart => OnFailure::Restart,
                OnFailureArg::Replace => OnFailure::Replace,
            },
            ..HealthSpec::default()
        },
        stop_timeout_s: a.stop_timeout,
        recycle_after_s: a.recycle_after,
        autoscale,
        user: a.user.clone(),
        read_only: a.read_only,
    }
}

async fn deploy(client: &Client, out: Output, args: DeployArgs) -> Result<()> {
    let body = deployment_request(&args);
    let path = format!("/v1/apps/{}/deployments", args.app);
    let req = client.request(Method::POST, &path).json(&body);
    let deployment = with_progress(client, req, args.quiet).await?;
    if out == Output::Json {
        return print_json(&deployment);
    }
    outln!(
        "deployed {} {} ({} instance(s){})",
        deployment.app,
        deployment.version,
        deployment.instance_list.len(),
        deployment
            .autoscale
            .map(|a| format!(", autoscaling {}", autoscale_text(&a)))
            .unwrap_or_default()
    );
    out!("{}", instance_table(&deployment.instance_list).render());
    Ok(())
}

/// Sends a deploy-like request (deploy, rollback), asking for the progress stream unless
/// `quiet`, and answers the resulting deployment.
async fn with_progress(
    client: &Client,
    mut req: reqwest::RequestBuilder,
    quiet: bool,
) -> Result<Deployment> {
    if !quiet {
        req = req.header(reqwest::header::ACCEPT, "application/x-ndjson");
    }
    let resp = client.send(req).await?;
    let streamed = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    if streamed {
        follow_progress(resp).await
    } else {
        resp.json::<Deployment>()
            .await
            .context("the admin API answered with unexpected JSON")
    }
}

async fn releases(
    client: &Client,
    out: Output,
    app: AppId,
    limit: u32,
    before: Option<u32>,
) -> Result<()> {
    let mut path = format!("/v1/apps/{app}/releases?limit={limit}");
    if let Some(b) = before {
        path.push_str(&format!("&before={b}"));
    }
    let list: Vec<Release> = client.get(&path).await?;
    match out {
        Output::Json => print_json(&list),
        Output::Table => {
            out!("{}", release_table(&list).render());
            Ok(())
        }
    }
}

fn release_table(releases: &[Release]) -> Table {
    let mut t = Table::new(&[
        "RELEASE", "VERSION", "DIGEST", "CONFIG", "ACTIVE", "CREATED", "BY",
    ]);
    for r in releases {
        t.row(vec![
            r.number.to_string(),
            r.version.to_string(),
            short_digest(&r.digest),
            r.config_version.to_string(),
            if r.active { "*" } else { "" }.into(),
            r.created_at.clone(),
            r.created_by.clone(),
        ]);
    }
    t
}

async fn rollback(
    client: &Client,
    out: Output,
    app: AppId,
    release: Option<u32>,
    quiet: bool,
) -> Result<()> {
    let req = client
        .request(Method::POST, &format!("/v1/apps/{app}/rollback"))
        .json(&Rollback { release });
    let deployment = with_progress(client, req, quiet).await?;
    if out == Output::Json {
        return print_json(&deployment);
    }
    outln!(
        "rolled {} back to {} ({} instance(s), {})",
        deployment.app,
        deployment.version,
        deployment.instance_list.len(),
        deployment.image
    );
    out!("{}", instance_table(&deployment.instance_list).render());
    Ok(())
}

/// Like `docker images`: the algorithm and 12 hex digits are enough to tell images apart.
fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", &hex[..12.min(hex.len())]),
        None => digest.to_owned(),
    }
}

/// Prints a deploy's progress lines to stderr until the stream says `done` or `failed`.
async fn follow_progress(resp: reqwest::Response) -> Result<Deployment> {
    follow_progress_of(resp, "deployment").await
}

/// Prints progress lines to stderr until the stream says `failed`, or `done` with its result
/// under `key` (`{"event": "done", "deployment": {...}}`).
pub(crate) async fn follow_progress_of<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
    key: &str,
) -> Result<T> {
    let mut stream = resp.bytes_stream();
    let mut lines = Lines::default();
    let mut result: Option<T> = None;
    while let Some(chunk) = stream.next().await {
        lines.push(&chunk.context("the progress stream broke off")?, |line| {
            if result.is_some() {
                return Ok(());
            }
            let mut v: serde_json::Value =
                serde_json::from_slice(line).context("unexpected line in the progress stream")?;
            if v.get("event").and_then(serde_json::Value::as_str) == Some("done") {
                result = Some(
                    serde_json::from_value(v[key].take())
                        .context("unexpected result at the end of the progress stream")?,
                );
                return Ok(());
            }
            match serde_json::from_value::<DeployEvent>(v)
                .context("unexpected line in the progress stream")?
            {
                DeployEvent::Progress {
                    instance,
                    stage,
                    message,
                } => {
                    let who = instance.map(|i| format!("{i}: ")).unwrap_or_default();
                    eprintln!("  {who}{stage} {message}");
                }
                DeployEvent::Done { .. } => {}
                DeployEvent::Failed { error } => bail!("{} ({})", error.message, error.code),
            }
            Ok(())
        })?;
        if let Some(done) = result {
            return Ok(done);
        }
    }
    bail!("the progress stream ended without a result; check `caas ps`")
}

/// Sends `req`, asking for NDJSON progress unless `quiet`, and returns the result: from the
/// stream's `done` line (under `key`) or from the plain JSON answer.
pub(crate) async fn send_with_progress<T: serde::de::DeserializeOwned>(
    client: &Client,
    mut req: reqwest::RequestBuilder,
    quiet: bool,
    key: &str,
) -> Result<T> {
    if !quiet {
        req = req.header(reqwest::header::ACCEPT, "application/x-ndjson");
    }
    let resp = client.send(req).await?;
    let streamed = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-ndjson"));
    if streamed {
        return follow_progress_of(resp, key).await;
    }
    resp.json::<T>()
        .await
        .context("the admin API answered with unexpected JSON")
}

pub(crate) fn instance_table(instances: &[Instance]) -> Table {
    let mut t = Table::new(&[
        "INSTANCE",
        "APP",
        "VERSION",
        "HOST",
        "ADDRESS",
        "STATE",
        "HEALTH",
        "CONTAINER",
    ]);
    for i in instances {
        let container = i
            .container_id
            .as_ref()
            .map(|c| c.as_str()[..12.min(c.as_str().len())].to_owned());
        t.row(vec![
            i.id.to_string(),
            i.app.to_string(),
            i.version.to_string(),
            i.host.to_string(),
            i.address.map_or_else(|| "-".to_owned(), |a| a.to_string()),
            serde_json::to_value(i.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            if i.healthy { "healthy" } else { "unhealthy" }.into(),
            container.unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

async fn tags(client: &Client, out: Output, app: AppId) -> Result<()> {
    let list: Vec<Tag> = client.get(&format!("/v1/apps/{app}/tags")).await?;
    match out {
        Output::Json => print_json(&list),
        Output::Table => {
            out!("{}", tag_table(&list).render());
            Ok(())
        }
    }
}

fn tag_table(tags: &[Tag]) -> Table {
    let mut t = Table::new(&["TAG", "DIGEST", "PUSHED", "BY"]);
    for tag in tags {
        t.row(vec![
            tag.tag.to_string(),
            short_digest(&tag.digest),
            tag.pushed_at.clone(),
            tag.pushed_by.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    t
}

/// An autoscale policy in a few words: `0-10, target 10, down after 60s`.
fn autoscale_text(a: &Autoscale) -> String {
    format!(
        "{}-{}, target {}, down after {}s",
        a.min, a.max, a.target_concurrency, a.scale_down_delay_s
    )
}

/// The autoscaled deployments among `deployments`: their counts and bounds (`None`: none
/// autoscales).
fn autoscale_table(deployments: &[Deployment]) -> Option<Table> {
    let mut t = Table::new(&["APP", "VERSION", "INSTANCES", "DESIRED", "AUTOSCALE"]);
    let mut any = false;
    for d in deployments {
        let Some(a) = &d.autoscale else { continue };
        any = true;
        t.row(vec![
            d.app.to_string(),
            d.version.to_string(),
            d.instance_list.len().to_string(),
            d.desired.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            autoscale_text(a),
        ]);
    }
    any.then_some(t)
}

async fn ps(client: &Client, out: Output, app: Option<AppId>) -> Result<()> {
    let apps = match app {
        Some(a) => vec![a],
        None => client
            .get::<Vec<App>>("/v1/apps")
            .await?
            .into_iter()
            .map(|a| a.id)
            .collect(),
    };
    let mut all = Vec::new();
    let mut deployments = Vec::new();
    for a in apps {
        let list: Vec<Instance> = client.get(&format!("/v1/apps/{a}/instances")).await?;
        all.extend(list);
        if out == Output::Table {
            let list: Vec<Deployment> = client.get(&format!("/v1/apps/{a}/deployments")).await?;
            deployments.extend(list);
        }
    }
    match out {
        Output::Json => print_json(&all),
        Output::Table => {
            out!("{}", instance_table(&all).render());
            // An app asleep has no instance: its bounds and desired count say why.
            if let Some(t) = autoscale_table(&deployments) {
                out!("\n{}", t.render());
            }
            Ok(())
        }
    }
}

async fn hosts(client: &Client, out: Output, cmd: HostsCmd) -> Result<()> {
    match cmd {
        HostsCmd::Ls => {
            let hosts: Vec<Host> = client.get("/v1/hosts").await?;
            if out == Output::Json {
                return print_json(&hosts);
            }
            let mut t = Table::new(&[
                "HOST",
                "ADDRESS",
                "STATE",
                "MEMORY FREE",
                "CPUS FREE",
                "PORTS",
                "LABELS",
                "DOCKER",
            ]);
            for h in hosts {
                let labels: Vec<String> =
                    h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                t.row(vec![
                    h.name.to_string(),
                    h.address.to_string(),
                    serde_json::to_value(h.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    format!("{}/{} MiB", h.memory_free_mb, h.memory_mb),
                    format!("{}/{}", h.cpus_free, h.cpus),
                    h.ports.to_string(),
                    labels.join(","),
                    h.docker,
                ]);
            }
            out!("{}", t.render());
            Ok(())
        }
        HostsCmd::Add {
            name,
            address,
            docker,
            memory,
            cpus,
            label,
            ports,
        } => {
            let body = CreateHost {
                name: name.clone(),
                address,
                docker,
                memory_mb: memory.mib(),
                cpus: cpus.cores(),
                labels: label.into_iter().collect(),
                ports,
            };
            let v = client.call(Method::POST, "/v1/hosts", Some(&body)).await?;
            print_value(out, &v, || format!("added host {name}"))
        }
        HostsCmd::Drain { name } => set_host_state(client, out, name, HostState::Draining).await,
        HostsCmd::Ready { name } => set_host_state(client, out, name, HostState::Ready).await,
        HostsCmd::Rm { name } => {
            client
                .call::<()>(Method::DELETE, &format!("/v1/hosts/{name}"), None)
                .await?;
            outln!("removed host {name}");
            Ok(())
        }
    }
}

async fn set_host_state(
    client: &Client,
    out: Output,
    name: caas_types::HostName,
    state: HostState,
) -> Result<()> {
    let body = UpdateHost {
        state: Some(state),
        labels: None,
    };
    let v = client
        .call(Method::PATCH, &format!("/v1/hosts/{name}"), Some(&body))
        .await?;
    print_value(out, &v, || {
        format!(
            "host {name}: {}",
            serde_json::to_string(&state)
                .unwrap_or_default()
                .trim_matches('"')
        )
    })
}

async fn domains(client: &Client, cmd: DomainsCmd) -> Result<()> {
    match cmd {
        DomainsCmd::Add { app, domain } => {
            client
                .call(
                    Method::POST,
                    &format!("/v1/apps/{app}/domains"),
                    Some(&AddDomain {
                        domain: domain.clone(),
                    }),
                )
                .await?;
            outln!("{domain} → {app}");
        }
        DomainsCmd::Rm { app, domain } => {
            client
                .call::<()>(
                    Method::DELETE,
                    &format!("/v1/apps/{app}/domains/{domain}"),
                    None,
                )
                .await?;
            outln!("removed {domain}");
        }
    }
    Ok(())
}

async fn blacklist(client: &Client, out: Output, cmd: BlacklistCmd) -> Result<()> {
    match cmd {
        BlacklistCmd::Ls => {
            let list: Blacklist = client.get("/v1/blacklist").await?;
            match out {
                Output::Json => print_json(&list)?,
                Output::Table => {
                    for r in &list.rules {
                        outln!("{r}");
                    }
                }
            }
        }
        BlacklistCmd::Add { rule } => {
            client
                .call(
                    Method::POST,
                    "/v1/blacklist",
                    Some(&BlacklistRule { rule: rule.clone() }),
                )
                .await?;
            outln!("refusing {rule}");
        }
        BlacklistCmd::Rm { rule } => {
            client
                .send(
                    client
                        .request(Method::DELETE, "/v1/blacklist")
                        .query(&[("rule", &rule)]),
                )
                .await?;
            outln!("no longer refusing {rule}");
        }
    }
    Ok(())
}

/// The quota the flags give, `None` when no flag was given.
fn quota_of(q: &QuotaArgs) -> Option<TenantQuota> {
    let quota = TenantQuota {
        max_apps: q.max_apps,
        max_instances: q.max_instances,
        max_memory_mb: q.max_memory_mb,
        max_cpus: q.max_cpus,
    };
    (quota != TenantQuota::default()).then_some(quota)
}

fn print_tenant(t: &Tenant) -> Result<()> {
    outln!("tenant   {}", t.name);
    let domains: Vec<&str> = t.domains.iter().map(Domain::as_str).collect();
    outln!(
        "domains  {}",
        if domains.is_empty() {
            "-".to_owned()
        } else {
            domains.join(", ")
        }
    );
    let limit = |v: Option<String>| v.unwrap_or_else(|| "unlimited".into());
    let q = t.quota.unwrap_or_default();
    let u = t.usage.unwrap_or_default();
    outln!(
        "apps     {} of {}",
        u.apps,
        limit(q.max_apps.map(|v| v.to_string()))
    );
    outln!(
        "instances {} of {}",
        u.instances,
        limit(q.max_instances.map(|v| v.to_string()))
    );
    outln!(
        "memory   {} MiB of {}",
        u.memory_mb,
        limit(q.max_memory_mb.map(|v| format!("{v} MiB")))
    );
    outln!(
        "cpus     {} of {}",
        u.cpus,
        limit(q.max_cpus.map(|v| v.to_string()))
    );
    Ok(())
}

async fn tenants(client: &Client, out: Output, cmd: TenantsCmd) -> Result<()> {
    match cmd {
        TenantsCmd::Ls => {
            let list: Vec<Tenant> = client.get("/v1/tenants").await?;
            match out {
                Output::Json => print_json(&list)?,
                Output::Table => {
                    for t in &list {
                        outln!("{}", t.name);
                    }
                }
            }
        }
        TenantsCmd::Create {
            name,
            domains,
            quota,
        } => {
            let req = CreateTenant {
                name,
                domains,
                quota: quota_of(&quota),
            };
            let resp = client
                .send(client.request(Method::POST, "/v1/tenants").json(&req))
                .await?;
            let tenant: Tenant = resp
                .json()
                .await
                .context("the admin API answered with unexpected JSON")?;
            match out {
                Output::Json => print_json(&tenant)?,
                Output::Table => {
                    outln!("created tenant {}; its token (shown once):", tenant.name);
                    outln!("{}", tenant.token.unwrap_or_default());
                }
            }
        }
        TenantsCmd::Show { name } => {
            let t: Tenant = client.get(&format!("/v1/tenants/{name}")).await?;
            match out {
                Output::Json => print_json(&t)?,
                Output::Table => print_tenant(&t)?,
            }
        }
        TenantsCmd::Set {
            name,
            domains,
            no_domains,
            quota,
            unlimited,
        } => {
            let req = UpdateTenant {
                domains: (no_domains || !domains.is_empty()).then_some(domains),
                quota: if unlimited {
                    Some(None)
                } else {
                    quota_of(&quota).map(Some)
                },
            };
            let t: Tenant = client
                .send(
                    client
                        .request(Method::PATCH, &format!("/v1/tenants/{name}"))
                        .json(&req),
                )
                .await?
                .json()
                .await
                .context("the admin API answered with unexpected JSON")?;
            match out {
                Output::Json => print_json(&t)?,
                Output::Table => print_tenant(&t)?,
            }
        }
        TenantsCmd::Token { name } => {
            let t: TenantToken = client
                .send(client.request(Method::POST, &format!("/v1/tenants/{name}/token")))
                .await?
                .json()
                .await
                .context("the admin API answered with unexpected JSON")?;
            match out {
                Output::Json => print_json(&t)?,
                Output::Table => {
                    outln!(
                        "new token for tenant {} (shown once; the old one no longer works):",
                        t.name
                    );
                    outln!("{}", t.token);
                }
            }
        }
        TenantsCmd::Rm { name } => {
            client
                .call::<()>(Method::DELETE, &format!("/v1/tenants/{name}"), None)
                .await?;
            outln!("removed tenant {name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscale_flags_make_the_request_and_ps_shows_bounds_and_desired() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "caas",
            "deploy",
            "hello",
            "v1",
            "--autoscale",
            "0:10",
            "--scale-down-delay",
            "30",
        ])
        .expect("valid command line");
        let Command::Deploy(args) = cli.command else {
            panic!("not a deploy")
        };
        let req = deployment_request(&args);
        assert_eq!(req.instances, 0, "absent: the scheduler starts at min");
        assert_eq!(
            req.autoscale,
            Some(Autoscale {
                min: 0,
                max: 10,
                target_concurrency: 10,
                scale_down_delay_s: 30
            })
        );
        let cli = Cli::try_parse_from(["caas", "deploy", "hello", "v1"]).expect("valid");
        let Command::Deploy(args) = cli.command else {
            panic!("not a deploy")
        };
        let req = deployment_request(&args);
        assert_eq!((req.instances, req.autoscale), (1, None));

        let d: Deployment = serde_json::from_value(serde_json::json!({
            "app": "hello", "version": "v1", "image": "r/hello@sha256:00", "instances": 0,
            "memory_mb": 64, "cpus": 0.1, "port": 8080, "instance_list": [], "desired": 0,
            "autoscale": {"min": 0, "max": 10, "target_concurrency": 10, "scale_down_delay_s": 60}
        }))
        .expect("a deployment");
        let shown = autoscale_table(std::slice::from_ref(&d))
            .expect("an autoscaled deployment")
            .render();
        assert!(shown.contains("DESIRED"), "{shown}");
        assert!(shown.contains("0-10, target 10, down after 60s"), "{shown}");
        let plain = Deployment {
            autoscale: None,
            desired: None,
            ..d
        };
        assert!(autoscale_table(&[plain]).is_none());
    }

    #[test]
    fn release_table_marks_the_active_release() {
        let r: Release = serde_json::from_value(serde_json::json!({
            "number": 3, "version": "v1",
            "digest": "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
            "config_version": 0,
            "spec": {"version": "v1", "memory_mb": 64, "cpus": 0.1},
            "created_at": "2026-11-22T06:10:01.123Z", "created_by": "operator", "active": true
        }))
        .expect("a release");
        assert_eq!(
            release_table(&[r]).render(),
            "RELEASE   VERSION   DIGEST                CONFIG   ACTIVE   CREATED                    BY\n\
             3         v1        sha256:fea8895f4509   0        *        2026-11-22T06:10:01.123Z   operator\n"
        );
    }

    #[test]
    fn tag_table_shortens_digests() {
        let tag: Tag = serde_json::from_value(serde_json::json!({
            "app": "hello", "tag": "v2",
            "digest": "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
            "media_type": "application/vnd.docker.distribution.manifest.v2+json",
            "pushed_at": "2026-11-22T06:10:01.123Z"
        }))
        .expect("a tag");
        assert_eq!(
            tag_table(&[tag]).render(),
            "TAG   DIGEST                PUSHED                     BY\n\
             v2    sha256:fea8895f4509   2026-11-22T06:10:01.123Z   -\n"
        );
    }
}
