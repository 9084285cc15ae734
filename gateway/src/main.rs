//! `switchboard`: the gateway binary. It only parses arguments and configuration;
//! `serve` binds the listener and runs [`switchboard_gateway::start`].
//!
//! `switchboard serve` runs the gateway with zero configuration (SQLite and keys in
//! `./data`, listening on 127.0.0.1:8080); `switchboard admin …` manages tenants
//! and keys from scripts against the same storage; `switchboard config check`
//! validates configuration without starting anything.
//!
//! Exit codes: 0 success, 64 invalid configuration or usage, 1 any other failure.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_actors::scopes::Scopes;
use switchboard_actors::storage::{AuditEntry, LimitOverrides};
use switchboard_actors::{Store, rotation};
use switchboard_gateway::api::ApiError;
use switchboard_gateway::config::{Config, ConfigError, ProcessEnv};
use switchboard_gateway::views::{KeyView, TenantView};
use switchboard_gateway::{admin, bootstrap, server, telemetry};

/// mimalloc: the gateway allocates many small, short-lived buffers across threads
/// (requests, events, deliveries), where it costs a fraction of the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad configuration or usage (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Multi-tenant messaging gateway"
)]
struct Cli {
    /// TOML configuration file (environment variables override it).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Manage tenants and API keys directly in storage.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    #[command(subcommand)]
    Tenant(TenantCommand),
    #[command(subcommand)]
    Key(KeyCommand),
    /// Re-encrypt everything under a new master key. With the key in the data
    /// directory, a new one is generated and the old one retired; with
    /// SWITCHBOARD_MASTER_KEY, data is re-encrypted under that key (list the old
    /// ones in SWITCHBOARD_PREVIOUS_MASTER_KEYS).
    RotateMasterKey,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant; prints it and its first API key (shown once) as JSON.
    Create { name: String },
    /// List tenants as JSON.
    List,
    /// Show one tenant as JSON.
    Get { id: String },
    /// Delete a tenant and everything it owns.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create an API key for a tenant; prints it (shown once) as JSON.
    Create {
        tenant_id: String,
        #[arg(long)]
        name: Option<String>,
        /// Scopes the key holds, comma-separated (e.g. `messages:send,messages:read`);
        /// without it, every scope.
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
    },
    /// List a tenant's keys as JSON.
    List { tenant_id: String },
    /// Revoke a tenant's key.
    Revoke { tenant_id: String, key_id: String },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print a summary (no secrets).
    Check,
}

/// glibc's malloc raises its mmap threshold to the largest buffer freed so far, and
/// keeps buffers under it in its heaps once freed: a gateway that moved a 16 MB file a
/// megabyte at a time would stay that much bigger for good. With the threshold fixed,
/// buffers over 128 KiB go back to the kernel when freed. It is read at process start,
/// so the gateway starts itself again once (`exec`: the same pid) with it set, unless
/// it is set already.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn fixed_mmap_threshold() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_MMAP_THRESHOLD_";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(VAR, "131072")
        .exec();
    eprintln!(
        "warning: could not restart with {VAR} set ({err}); large files may leave the process bigger"
    );
}

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fixed_mmap_threshold();
    // Both rustls back-ends are in the dependency graph; pick one before any TLS use.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let config = match Config::load(&ProcessEnv, cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Admin(cmd) => admin_command(config, cmd).await,
            Command::Config(ConfigCommand::Check) => {
                println!(
                    "configuration ok: listen={} data_dir={} storage={} log_format={}",
                    config.listen,
                    config.data_dir.display(),
                    config.database.backend().as_str(),
                    config.log_format
                );
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_CONFIG)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init_logging(config.log_format);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    switchboard_gateway::start(config, listener, server::shutdown_signal()).await?;
    Ok(())
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn api_err(e: ApiError) -> anyhow::Error {
    anyhow::anyhow!("{} ({})", e.message, e.code)
}

async fn admin_command(config: Config, cmd: AdminCommand) -> anyhow::Result<()> {
    let store = Store::connect(&config.database)
        .await
        .context("opening storage")?;
    let audit = |action| AuditEntry::new("cli", action);
    let result = match cmd {
        AdminCommand::Tenant(TenantCommand::Create { name }) => {
            let (tenant, api_key) = admin::create_tenant(
                &store,
                &config.limits,
                &name,
                LimitOverrides::default(),
                audit("tenant.create"),
            )
            .await
            .map_err(api_err)?;
            print_json(&serde_json::json!({ "tenant": tenant, "api_key": api_key }))
        }
        AdminCommand::Tenant(TenantCommand::List) => {
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store.list_tenants(after.as_deref(), 500).await?;
                after = page.last().map(|t| t.id.clone());
                let done = page.len() < 500;
                all.extend(page.iter().map(|t| TenantView::new(t, &config.limits)));
                if done {
                    break;
                }
            }
            print_json(&all)
        }
        AdminCommand::Tenant(TenantCommand::Get { id }) => {
            let t = store
                .get_tenant(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("tenant {id} not found"))?;
            print_json(&TenantView::new(&t, &config.limits))
        }
        AdminCommand::Tenant(TenantCommand::Delete { id }) => {
            if !store.delete_tenant(&id, &audit("tenant.delete")).await? {
                anyhow::bail!("tenant {id} not found");
            }
            print_json(&serde_json::json!({ "deleted": id }))
        }
        AdminCommand::Key(KeyCommand::Create {
            tenant_id,
            name,
            scopes,
        }) => {
            let scopes = match scopes {
                None => Scopes::all(),
                Some(names) => Scopes::parse(names.iter().map(|n| n.trim()))
                    .map_err(|bad| anyhow::anyhow!("`{bad}` is not a scope"))?,
            };
            let created = admin::create_key(
                &store,
                &tenant_id,
                name.as_deref(),
                scopes,
                audit("api_key.create"),
            )
            .await
            .map_err(api_err)?;
            print_json(&created)
        }
        AdminCommand::Key(KeyCommand::List { tenant_id }) => {
            let keys = store.list_api_keys(&tenant_id).await?;
            print_json(&keys.iter().map(KeyView::from).collect::<Vec<_>>())
        }
        AdminCommand::RotateMasterKey => {
            let (keyring, retired) = match &config.master_key {
                Some(key) => (bootstrap::keyring(&config, key.clone())?, None),
                None => {
                    bootstrap::prepare(&config)?;
                    let (new, old) = bootstrap::rotate_key_file(&config)?;
                    (bootstrap::keyring(&config, new)?, Some(old.key_id()))
                }
            };
            let resealed = rotation::reseal_all(&store, &keyring).await?;
            print_json(&serde_json::json!({
                "current_key_id": keyring.current_id(),
                "retired_key_id": retired,
                "resealed": resealed,
                "note": "restart running gateways so they encrypt with the new key; run this again afterwards to re-seal anything they wrote meanwhile",
            }))
        }
        AdminCommand::Key(KeyCommand::Revoke { tenant_id, key_id }) => {
            if !store
                .revoke_api_key(&tenant_id, &key_id, &audit("api_key.revoke"))
                .await?
            {
                anyhow::bail!("no active key {key_id} for tenant {tenant_id}");
            }
            print_json(&serde_json::json!({ "revoked": key_id }))
        }
    };
    store.close().await;
    result
}
