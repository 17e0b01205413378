//! `control-plane.yaml`: where the control plane listens and how long things live.
//!
//! Every field has a documented default; unknown fields are errors naming the file and
//! line. Command-line flags override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use outpost_common::yamlcfg::{self, ConfigError};
use serde::Deserialize;

mod oidc;
pub use oidc::{ClientSecret, OidcConfig, OidcMapBy};

/// Default agent listener (mutual TLS).
pub const DEFAULT_AGENT_LISTEN: &str = "127.0.0.1:7443";
/// Where the packages put control-plane.yaml; used when no --config or --data-dir is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/outpost/control-plane.yaml";
/// The environment variable that names control-plane.yaml instead of the default path.
pub const CONFIG_ENV: &str = "OUTPOST_CONTROL_PLANE_CONFIG";

/// The config file to use when none was given on the command line: `$OUTPOST_CONTROL_PLANE_CONFIG`,
/// else the packaged path.
pub fn default_config_path() -> std::path::PathBuf {
    std::env::var_os(CONFIG_ENV).map(std::path::PathBuf::from).unwrap_or_else(|| DEFAULT_CONFIG_PATH.into())
}
/// Default API listener (TLS + bearer token).
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8443";
/// A job must reach its agent within this time (seconds); it never runs after.
pub const DEFAULT_JOB_TTL_SECS: u64 = 300;
/// Agent certificates live this long (seconds): short, renewed over mTLS.
pub const DEFAULT_CERT_LIFETIME_SECS: u64 = 24 * 3600;
/// Shortest certificate lifetime accepted; short lifetimes exist for renewal tests.
pub const MIN_CERT_LIFETIME_SECS: u64 = 10;
/// A leased job not completed within this time is handed out again (seconds).
pub const DEFAULT_LEASE_SECS: u64 = 120;
/// Longest a long-poll is held open (seconds), below common proxy idle timeouts.
pub const DEFAULT_LONG_POLL_SECS: u64 = 25;
/// An agent silent this long is offline: a long-poll plus a heartbeat interval, with margin.
pub const DEFAULT_OFFLINE_AFTER_SECS: u64 = 90;
/// Default of `schema_cache_secs`: a catalog changes rarely, and five minutes keep the
/// schema panel quick without hiding a new table for long (`?refresh=true` asks at once).
pub const DEFAULT_SCHEMA_CACHE_SECS: u64 = 300;
/// Default lifetime of an enrolment token (seconds).
pub const DEFAULT_ENROL_TOKEN_TTL_SECS: u64 = 3600;

/// The file's shape.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// Directory made by `init`: CA, keys, database.
    pub data_dir: PathBuf,
    /// Address of the agent listener (mutual TLS).
    #[serde(default = "default_agent_listen")]
    pub agent_listen: SocketAddr,
    /// Address of the API listener (TLS, bearer tokens).
    #[serde(default = "default_api_listen")]
    pub api_listen: SocketAddr,
    /// `host:port` agents dial; goes into enrolment tokens. Defaults to `agent_listen`, or
    /// to the `init` hostname with its port when `agent_listen` is a wildcard address.
    #[serde(default)]
    pub agent_address: Option<String>,
    /// Lifetimes.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<JobsConfig>")]
    pub jobs: JobsConfig,
    /// Agent certificate lifetime, seconds.
    #[serde(default = "default_cert_lifetime")]
    pub cert_lifetime_secs: u64,
    /// An agent not heard from for this long is shown `offline`, seconds.
    #[serde(default = "default_offline_after")]
    pub offline_after_secs: u64,
    /// How long the schema browser's catalog of a connection (tables, columns, types,
    /// row estimates) is kept and served again before a new catalog job asks the agent,
    /// seconds (0..86400; 0: every request asks). `?refresh=true` always asks.
    #[serde(default = "default_schema_cache")]
    pub schema_cache_secs: u64,
    /// Sign-in sessions (cookies) of the API and console.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<SessionsConfig>")]
    pub sessions: SessionsConfig,
    /// How long rendered results are kept.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<ResultsConfig>")]
    pub results: ResultsConfig,
    /// Embed tokens (short-lived JWTs for one project and one end customer).
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<EmbedConfig>")]
    pub embed: EmbedConfig,
    /// Project (dashboard) schedules: how often they may run, and how many of their jobs
    /// may wait at one agent.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<SchedulesConfig>")]
    pub schedules: SchedulesConfig,
    /// API tokens.
    #[serde(default, deserialize_with = "yamlcfg::null_as_default")]
    #[schemars(with = "Option<ApiTokensConfig>")]
    pub api_tokens: ApiTokensConfig,
    /// Single sign-on for the console by OpenID Connect; absent: local accounts only.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// Where the state lives: `sqlite` (the default: a database file in `data_dir`, one
    /// machine) or `postgres://USER@HOST:PORT/DATABASE` (add `?sslmode=require` for TLS),
    /// shared by several `serve` replicas. Keys never go into it: each replica reads them
    /// from its own `data_dir`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub store: StoreUrl,
    /// A file holding the PostgreSQL password (e.g. a systemd credential); better than a
    /// password in the `store` URL.
    #[serde(default)]
    pub store_password_file: Option<PathBuf>,
    /// PEM file of the CAs trusted for PostgreSQL's TLS certificate (with
    /// `sslmode=require`); default: the system bundle.
    #[serde(default)]
    pub store_ca_file: Option<PathBuf>,
    /// Most PostgreSQL connections one replica opens (2..256), besides the one that
    /// listens for other replicas' wake-ups.
    #[serde(default = "default_store_connections")]
    pub store_max_connections: usize,
}

/// Default size of a replica's PostgreSQL connection pool.
pub const DEFAULT_STORE_CONNECTIONS: usize = 16;

fn default_store_connections() -> usize {
    DEFAULT_STORE_CONNECTIONS
}

/// `store:` — `sqlite` or a PostgreSQL URL (whose password is redacted in `Debug`).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(String);

impl Default for StoreUrl {
    fn default() -> Self {
        Self("sqlite".into())
    }
}

impl StoreUrl {
    /// Wraps a URL given on the command line.
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// The PostgreSQL URL, or `None` for the embedded database.
    pub fn postgres(&self) -> Option<&str> {
        (self.0 != "sqlite").then_some(self.0.as_str())
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::store::postgres::redact_url(&self.0).replace("<not a URL>", &self.0))
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Default idle expiry of a session (seconds): 30 minutes without a request.
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 1800;
/// Default absolute expiry of a session (seconds): 12 hours after sign-in.
pub const DEFAULT_SESSION_ABSOLUTE_SECS: u64 = 12 * 3600;
/// Default retention of rendered results (seconds): 24 hours.
pub const DEFAULT_RESULT_RETENTION_SECS: u64 = 24 * 3600;
/// Default of `results.keep_latest_secs`: a dashboard opened after a month without a
/// refresh still shows its last result.
pub const DEFAULT_KEEP_LATEST_SECS: u64 = 30 * 86_400;
/// Default of `results.keep_variants_per_tile`: enough for every region or team a
/// dashboard is looked at by, bounded so that filter values chosen freely (a text, a
/// number, a date range) cannot pile up results without end.
pub const DEFAULT_KEEP_VARIANTS_PER_TILE: u32 = 50;
/// Most `results.keep_variants_per_tile` allowed.
pub const MAX_KEEP_VARIANTS_PER_TILE: u32 = 10_000;
/// Default lifetime of an embed token (seconds): 15 minutes.
pub const DEFAULT_EMBED_TTL_SECS: u64 = 900;
/// Default cap on an embed token's lifetime (seconds): 1 hour.
pub const DEFAULT_EMBED_MAX_TTL_SECS: u64 = 3600;
/// Default age under which an embed viewer's filter change reuses a result (seconds).
pub const DEFAULT_EMBED_VIEWER_REFRESH_SECS: u64 = 300;
/// Default lifetime of an API token (days).
pub const DEFAULT_API_TOKEN_TTL_DAYS: u64 = 90;
/// Default cap on an API token's lifetime (days).
pub const DEFAULT_API_TOKEN_MAX_TTL_DAYS: u64 = 365;

/// Sessions.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// A session unused for this long ends, seconds (60..86400).
    #[serde(default = "default_session_idle")]
    pub idle_secs: u64,
    /// A session ends this long after sign-in whatever its use, seconds (300..604800).
    #[serde(default = "default_session_absolute")]
    pub absolute_secs: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self { idle_secs: DEFAULT_SESSION_IDLE_SECS, absolute_secs: DEFAULT_SESSION_ABSOLUTE_SECS }
    }
}

/// Rendered results.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultsConfig {
    /// A job and its rendered result are deleted from the database this long after the
    /// job ended, seconds (1..2592000).
    #[serde(default = "default_retention")]
    pub retention_secs: u64,
    /// The newest successful result of each project query (per end customer) is kept
    /// this long after its job ended, even past `retention_secs`, so a project (a
    /// dashboard) still shows its latest result the next day; an older or failed run of
    /// the same query, and ad-hoc jobs, go after `retention_secs`. Seconds
    /// (0..31536000, 365 days; 0: no longer than `retention_secs`).
    #[serde(default = "default_keep_latest")]
    pub keep_latest_secs: u64,
    /// A dashboard tile keeps results for at most this many filter sets (per end
    /// customer): the results of the filter values least recently run beyond it are
    /// deleted by retention, except those run with the dashboard's defaults (what it
    /// opens with) and runs still going (1..10000).
    #[serde(default = "default_keep_variants")]
    pub keep_variants_per_tile: u32,
}

impl Default for ResultsConfig {
    fn default() -> Self {
        Self {
            retention_secs: DEFAULT_RESULT_RETENTION_SECS,
            keep_latest_secs: DEFAULT_KEEP_LATEST_SECS,
            keep_variants_per_tile: DEFAULT_KEEP_VARIANTS_PER_TILE,
        }
    }
}

/// Default of `schedules.min_interval_secs`: a schedule runs at most every 5 minutes.
pub const DEFAULT_SCHEDULE_MIN_INTERVAL_SECS: u64 = 300;
/// Default of `schedules.max_queued_per_agent`.
pub const DEFAULT_SCHEDULE_MAX_QUEUED: u32 = 4;

/// Project (dashboard) schedules.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulesConfig {
    /// The shortest time allowed between two runs of one schedule, seconds (60..86400): a
    /// cron pattern that would run more often is refused.
    #[serde(default = "default_schedule_min_interval")]
    pub min_interval_secs: u64,
    /// Most project refresh jobs (scheduled or asked for) that may wait in one agent's
    /// (or pool's) queue before the scheduler holds back more (1..1000); the rest go on
    /// later ticks, so refreshes never crowd out interactive jobs.
    #[serde(default = "default_schedule_max_queued")]
    pub max_queued_per_agent: u32,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        Self {
            min_interval_secs: DEFAULT_SCHEDULE_MIN_INTERVAL_SECS,
            max_queued_per_agent: DEFAULT_SCHEDULE_MAX_QUEUED,
        }
    }
}

fn default_schedule_min_interval() -> u64 {
    DEFAULT_SCHEDULE_MIN_INTERVAL_SECS
}

fn default_schedule_max_queued() -> u32 {
    DEFAULT_SCHEDULE_MAX_QUEUED
}

/// Embed tokens.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedConfig {
    /// Lifetime of a token when the request names none, seconds.
    #[serde(default = "default_embed_ttl")]
    pub default_ttl_secs: u64,
    /// Longest lifetime a request may ask for, seconds (60..86400).
    #[serde(default = "default_embed_max_ttl")]
    pub max_ttl_secs: u64,
    /// Origins whose pages may show the embed page (`/embed/dashboards/{id}`) in a frame:
    /// its `Content-Security-Policy: frame-ancestors`. Each is `https://host[:port]`
    /// (`http://` for a local test), a leading `*.` allowed in the host. Empty (the
    /// default): no page may frame it.
    #[serde(default)]
    pub frame_ancestors: Vec<String>,
    /// When an embed's viewer changes a filter the token lets them change, each tile runs
    /// for the new values unless a result for them is this recent (seconds, 0..86400) or
    /// a run is already going.
    #[serde(default = "default_embed_viewer_refresh")]
    pub viewer_refresh_secs: u64,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            default_ttl_secs: DEFAULT_EMBED_TTL_SECS,
            max_ttl_secs: DEFAULT_EMBED_MAX_TTL_SECS,
            frame_ancestors: Vec::new(),
            viewer_refresh_secs: DEFAULT_EMBED_VIEWER_REFRESH_SECS,
        }
    }
}

/// Whether `s` is an origin a CSP `frame-ancestors` may name: a scheme of `https` or
/// `http`, a host of letters, digits, dots and dashes (a leading `*.` allowed), an
/// optional port; nothing else, so that no entry can end the directive or add another.
pub fn is_frame_ancestor(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) else {
        return false;
    };
    let (host, port) = rest.split_once(':').map_or((rest, None), |(h, p)| (h, Some(p)));
    let host = host.strip_prefix("*.").unwrap_or(host);
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// API tokens.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokensConfig {
    /// Lifetime of a token when the request names none, days.
    #[serde(default = "default_token_ttl")]
    pub default_ttl_days: u64,
    /// Longest lifetime a request may ask for, days (1..3650).
    #[serde(default = "default_token_max_ttl")]
    pub max_ttl_days: u64,
}

impl Default for ApiTokensConfig {
    fn default() -> Self {
        Self { default_ttl_days: DEFAULT_API_TOKEN_TTL_DAYS, max_ttl_days: DEFAULT_API_TOKEN_MAX_TTL_DAYS }
    }
}

fn default_session_idle() -> u64 {
    DEFAULT_SESSION_IDLE_SECS
}
fn default_session_absolute() -> u64 {
    DEFAULT_SESSION_ABSOLUTE_SECS
}
fn default_retention() -> u64 {
    DEFAULT_RESULT_RETENTION_SECS
}
fn default_keep_latest() -> u64 {
    DEFAULT_KEEP_LATEST_SECS
}
fn default_keep_variants() -> u32 {
    DEFAULT_KEEP_VARIANTS_PER_TILE
}
fn default_embed_ttl() -> u64 {
    DEFAULT_EMBED_TTL_SECS
}
fn default_embed_max_ttl() -> u64 {
    DEFAULT_EMBED_MAX_TTL_SECS
}
fn default_embed_viewer_refresh() -> u64 {
    DEFAULT_EMBED_VIEWER_REFRESH_SECS
}
fn default_token_ttl() -> u64 {
    DEFAULT_API_TOKEN_TTL_DAYS
}
fn default_token_max_ttl() -> u64 {
    DEFAULT_API_TOKEN_MAX_TTL_DAYS
}

/// Job timing.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobsConfig {
    /// Seconds from signing to expiry.
    #[serde(default = "default_job_ttl")]
    pub ttl_secs: u64,
    /// Seconds a delivered job stays leased before it is handed out again.
    #[serde(default = "default_lease")]
    pub lease_secs: u64,
    /// Longest long-poll, seconds.
    #[serde(default = "default_long_poll")]
    pub long_poll_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self { ttl_secs: DEFAULT_JOB_TTL_SECS, lease_secs: DEFAULT_LEASE_SECS, long_poll_secs: DEFAULT_LONG_POLL_SECS }
    }
}

fn default_agent_listen() -> SocketAddr {
    DEFAULT_AGENT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7443)))
}
fn default_api_listen() -> SocketAddr {
    DEFAULT_API_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8443)))
}
fn default_job_ttl() -> u64 {
    DEFAULT_JOB_TTL_SECS
}
fn default_lease() -> u64 {
    DEFAULT_LEASE_SECS
}
fn default_long_poll() -> u64 {
    DEFAULT_LONG_POLL_SECS
}
fn default_offline_after() -> u64 {
    DEFAULT_OFFLINE_AFTER_SECS
}
fn default_schema_cache() -> u64 {
    DEFAULT_SCHEMA_CACHE_SECS
}
fn default_cert_lifetime() -> u64 {
    DEFAULT_CERT_LIFETIME_SECS
}

/// The JSON Schema of control-plane.yaml, generated from the config types.
pub fn json_schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(ControlPlaneConfig)).unwrap_or_default()
}

impl ControlPlaneConfig {
    /// A config with defaults for `data_dir`.
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            agent_listen: default_agent_listen(),
            api_listen: default_api_listen(),
            agent_address: None,
            jobs: JobsConfig::default(),
            cert_lifetime_secs: DEFAULT_CERT_LIFETIME_SECS,
            offline_after_secs: DEFAULT_OFFLINE_AFTER_SECS,
            schema_cache_secs: DEFAULT_SCHEMA_CACHE_SECS,
            sessions: SessionsConfig::default(),
            results: ResultsConfig::default(),
            embed: EmbedConfig::default(),
            schedules: SchedulesConfig::default(),
            api_tokens: ApiTokensConfig::default(),
            oidc: None,
            store: StoreUrl::default(),
            store_password_file: None,
            store_ca_file: None,
            store_max_connections: DEFAULT_STORE_CONNECTIONS,
        }
    }

    /// How to reach PostgreSQL, when `store:` names it.
    pub fn pg_options(&self) -> Option<crate::store::postgres::PgOptions> {
        self.store.postgres().map(|url| crate::store::postgres::PgOptions {
            url: url.to_owned(),
            password_file: self.store_password_file.clone(),
            ca_file: self.store_ca_file.clone(),
            max_connections: self.store_max_connections,
        })
    }

    /// Loads and checks a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let cfg: Self = yamlcfg::load_file(path)?;
        cfg.check(&path.display().to_string())?;
        Ok(cfg)
    }

    /// Semantic checks that the types cannot express.
    pub fn check(&self, source: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: &str| ConfigError::Invalid {
            path: source.to_owned(),
            field: field.to_owned(),
            message: message.to_owned(),
        };
        if !(10..=86_400).contains(&self.jobs.ttl_secs) {
            return Err(invalid("jobs.ttl_secs", "must be between 10 and 86400"));
        }
        if !(1..=86_400).contains(&self.jobs.lease_secs) {
            return Err(invalid("jobs.lease_secs", "must be between 1 and 86400"));
        }
        if !(1..=300).contains(&self.jobs.long_poll_secs) {
            return Err(invalid("jobs.long_poll_secs", "must be between 1 and 300"));
        }
        if !(MIN_CERT_LIFETIME_SECS..=90 * 86_400).contains(&self.cert_lifetime_secs) {
            return Err(invalid("cert_lifetime_secs", "must be between 10 and 7776000"));
        }
        if !(10..=86_400).contains(&self.offline_after_secs) {
            return Err(invalid("offline_after_secs", "must be between 10 and 86400"));
        }
        // A connected agent is seen at the start of each long-poll; a shorter threshold
        // would show it offline while it waits for a job.
        if self.offline_after_secs < self.jobs.long_poll_secs + 5 {
            return Err(invalid(
                "offline_after_secs",
                &format!("must be at least jobs.long_poll_secs + 5 ({} s)", self.jobs.long_poll_secs + 5),
            ));
        }
        if !(60..=86_400).contains(&self.sessions.idle_secs) {
            return Err(invalid("sessions.idle_secs", "must be between 60 and 86400"));
        }
        if !(300..=7 * 86_400).contains(&self.sessions.absolute_secs) {
            return Err(invalid("sessions.absolute_secs", "must be between 300 and 604800"));
        }
        if self.sessions.idle_secs > self.sessions.absolute_secs {
            return Err(invalid("sessions.idle_secs", "must not exceed sessions.absolute_secs"));
        }
        if self.schema_cache_secs > 86_400 {
            return Err(invalid("schema_cache_secs", "must be between 0 and 86400"));
        }
        if !(1..=30 * 86_400).contains(&self.results.retention_secs) {
            return Err(invalid("results.retention_secs", "must be between 1 and 2592000 (30 days)"));
        }
        if self.results.keep_latest_secs > 365 * 86_400 {
            return Err(invalid("results.keep_latest_secs", "must be between 0 and 31536000 (365 days)"));
        }
        if !(1..=MAX_KEEP_VARIANTS_PER_TILE).contains(&self.results.keep_variants_per_tile) {
            return Err(invalid(
                "results.keep_variants_per_tile",
                &format!("must be between 1 and {MAX_KEEP_VARIANTS_PER_TILE} (filter sets kept per dashboard tile)"),
            ));
        }
        if !(60..=86_400).contains(&self.schedules.min_interval_secs) {
            return Err(invalid("schedules.min_interval_secs", "must be between 60 and 86400"));
        }
        if !(1..=1000).contains(&self.schedules.max_queued_per_agent) {
            return Err(invalid("schedules.max_queued_per_agent", "must be between 1 and 1000"));
        }
        if !(60..=86_400).contains(&self.embed.max_ttl_secs) {
            return Err(invalid("embed.max_ttl_secs", "must be between 60 and 86400"));
        }
        if !(10..=self.embed.max_ttl_secs).contains(&self.embed.default_ttl_secs) {
            return Err(invalid("embed.default_ttl_secs", "must be between 10 and embed.max_ttl_secs"));
        }
        if self.embed.viewer_refresh_secs > 86_400 {
            return Err(invalid("embed.viewer_refresh_secs", "must be between 0 and 86400"));
        }
        for (i, origin) in self.embed.frame_ancestors.iter().enumerate() {
            if !is_frame_ancestor(origin) {
                return Err(invalid(
                    &format!("embed.frame_ancestors[{i}]"),
                    &format!("{origin:?} is not an origin; write https://host or https://host:port (a leading *. allowed in the host)"),
                ));
            }
        }
        if !(1..=3650).contains(&self.api_tokens.max_ttl_days) {
            return Err(invalid("api_tokens.max_ttl_days", "must be between 1 and 3650"));
        }
        if !(1..=self.api_tokens.max_ttl_days).contains(&self.api_tokens.default_ttl_days) {
            return Err(invalid("api_tokens.default_ttl_days", "must be between 1 and api_tokens.max_ttl_days"));
        }
        if let Some(url) = self.store.postgres() {
            crate::store::postgres::parse_url(url).map_err(|e| invalid("store", &e.to_string()))?;
        } else if self.store_password_file.is_some() || self.store_ca_file.is_some() {
            return Err(invalid("store_password_file", "is for a postgres:// store; `store` is sqlite"));
        }
        if !(2..=256).contains(&self.store_max_connections) {
            return Err(invalid("store_max_connections", "must be between 2 and 256"));
        }
        if let Some(o) = &self.oidc {
            let https =
                |u: &str| u.parse::<http::Uri>().ok().filter(|u| u.scheme_str() == Some("https") && u.host().is_some());
            if https(&o.issuer).is_none() {
                return Err(invalid("oidc.issuer", "must be an https:// URL"));
            }
            match https(&o.redirect_uri) {
                Some(u) if u.path() == "/console/oidc/callback" => {}
                _ => {
                    return Err(invalid("oidc.redirect_uri", "must be https://<console address>/console/oidc/callback"))
                }
            }
            if o.client_id.is_empty() {
                return Err(invalid("oidc.client_id", "must not be empty"));
            }
            if o.client_secret.is_some() == o.client_secret_file.is_some() {
                return Err(invalid("oidc.client_secret", "give exactly one of client_secret and client_secret_file"));
            }
            if o.scopes
                .iter()
                .any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'))
            {
                return Err(invalid("oidc.scopes", "scopes are single words of printable ASCII"));
            }
        }
        Ok(())
    }

    /// Each file the config names (store password and CA, the OIDC client secret and CA)
    /// that this user cannot read, one message each: `config check` reports them all, so
    /// that a file `serve` would fail on is found before it starts.
    pub fn unreadable_files(&self) -> Vec<String> {
        let mut named: Vec<(&str, &Path)> = Vec::new();
        if let Some(p) = &self.store_password_file {
            named.push(("store_password_file", p));
        }
        if let Some(p) = &self.store_ca_file {
            named.push(("store_ca_file", p));
        }
        if let Some(o) = &self.oidc {
            if let Some(p) = &o.client_secret_file {
                named.push(("oidc.client_secret_file", p));
            }
            if let Some(p) = &o.ca_file {
                named.push(("oidc.ca_file", p));
            }
        }
        named
            .into_iter()
            .filter_map(|(field, path)| {
                // Not opened unless it is a regular file: a FIFO would block the check.
                match std::fs::metadata(path) {
                    Ok(m) if !m.is_file() => Some(format!("{field}: {}: not a regular file", path.display())),
                    Ok(_) => std::fs::File::open(path).err().map(|e| format!("{field}: {}: {e}", path.display())),
                    Err(e) => Some(format!("{field}: {}: {e}", path.display())),
                }
            })
            .collect()
    }

    /// The address agents are told to dial: `agent_address`, else `agent_listen` — unless
    /// that is a wildcard (0.0.0.0, ::), which no agent can dial: then `hostname` (the
    /// name the server certificate carries) with the listener's port.
    pub fn advertised_agent_address(&self, hostname: &str) -> String {
        if let Some(a) = &self.agent_address {
            return a.clone();
        }
        if self.agent_listen.ip().is_unspecified() {
            return host_port(hostname, self.agent_listen.port());
        }
        self.agent_listen.to_string()
    }
}

/// `host:port`, with an IPv6 address in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
