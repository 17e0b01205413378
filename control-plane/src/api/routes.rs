//! The route table: every route of the API with its method, path template, audit action,
//! authentication and scope ([`ROUTES`]), and how a request finds its route.

use http::Method;

use crate::auth::access::Scope;

/// How a route authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone (sign-in, the OpenAPI document).
    Public,
    /// A signed-in user or API token holding the scope (`None`: any signed-in caller).
    Caller(Option<Scope>),
    /// An embed token.
    Embed,
}

/// Every route of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RouteId {
    SessionCreate,
    SessionDelete,
    Me,
    UsersList,
    UsersCreate,
    UsersUpdate,
    GroupsList,
    GroupsCreate,
    GroupsDelete,
    GroupMemberAdd,
    GroupMemberRemove,
    SharesList,
    SharesCreate,
    SharesDelete,
    AgentsList,
    AgentsRevoke,
    AgentsAuditHead,
    AgentsConnectionSchema,
    EnrolmentTokensCreate,
    EnrolmentTokensList,
    EnrolmentTokensRevoke,
    JobsList,
    JobsDispatch,
    JobsRead,
    JobsResult,
    JobsSpec,
    JobsCancel,
    ProjectsList,
    ProjectsCreate,
    ProjectsRead,
    ProjectsUpdate,
    ProjectsDelete,
    ProjectGrantSet,
    ProjectGrantRemove,
    ProjectsRun,
    ProjectsResults,
    EmbedTokensCreate,
    EmbedTokensRevoke,
    EmbedProject,
    EmbedResult,
    EmbedRun,
    TokensList,
    TokensCreate,
    TokensRevoke,
    AuditRead,
    ResultsPurge,
    OpenApi,
}

/// One route: method, path template (`{name}` matches one segment), what it needs.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Which handler.
    pub id: RouteId,
    /// Name in the audit log.
    pub action: &'static str,
    /// Authentication and scope.
    pub auth: Auth,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
}

macro_rules! route {
    ($m:literal, $p:literal, $id:ident, $action:literal, $auth:expr, $summary:literal) => {
        Route { method: $m, path: $p, id: RouteId::$id, action: $action, auth: $auth, summary: $summary }
    };
}

const ANY: Auth = Auth::Caller(None);
const fn needs(s: Scope) -> Auth {
    Auth::Caller(Some(s))
}

/// The API, route by route.
pub const ROUTES: &[Route] = &[
    route!(
        "POST",
        "/v1/sessions",
        SessionCreate,
        "session.create",
        Auth::Public,
        "Sign in with a user name and password; sets the session cookie"
    ),
    route!(
        "DELETE",
        "/v1/sessions/current",
        SessionDelete,
        "session.delete",
        ANY,
        "Sign out: ends the session on the server"
    ),
    route!(
        "GET",
        "/v1/me",
        Me,
        "me.read",
        ANY,
        "Who the caller is, with role, scopes and (for a session) the CSRF token"
    ),
    route!("GET", "/v1/users", UsersList, "users.list", needs(Scope::UsersAdmin), "List users"),
    route!("POST", "/v1/users", UsersCreate, "users.create", needs(Scope::UsersAdmin), "Create a local user"),
    route!(
        "PATCH",
        "/v1/users/{name}",
        UsersUpdate,
        "users.update",
        needs(Scope::UsersAdmin),
        "Change a user's role, password, or disable them"
    ),
    route!("GET", "/v1/groups", GroupsList, "groups.list", needs(Scope::UsersAdmin), "List groups with their members"),
    route!("POST", "/v1/groups", GroupsCreate, "groups.create", needs(Scope::UsersAdmin), "Create a group"),
    route!(
        "DELETE",
        "/v1/groups/{name}",
        GroupsDelete,
        "groups.delete",
        needs(Scope::UsersAdmin),
        "Delete a group and its shares"
    ),
    route!(
        "PUT",
        "/v1/groups/{name}/members/{user}",
        GroupMemberAdd,
        "groups.member_add",
        needs(Scope::UsersAdmin),
        "Add a user to a group"
    ),
    route!(
        "DELETE",
        "/v1/groups/{name}/members/{user}",
        GroupMemberRemove,
        "groups.member_remove",
        needs(Scope::UsersAdmin),
        "Remove a user from a group"
    ),
    route!("GET", "/v1/shares", SharesList, "shares.list", needs(Scope::UsersAdmin), "List connection shares"),
    route!(
        "POST",
        "/v1/shares",
        SharesCreate,
        "shares.create",
        needs(Scope::UsersAdmin),
        "Share an agent's connection with a user or group"
    ),
    route!(
        "DELETE",
        "/v1/shares/{id}",
        SharesDelete,
        "shares.delete",
        needs(Scope::UsersAdmin),
        "Stop sharing a connection"
    ),
    route!(
        "GET",
        "/v1/agents",
        AgentsList,
        "agents.list",
        needs(Scope::AgentsRead),
        "List agents (editors: those with a connection shared with them)"
    ),
    route!(
        "POST",
        "/v1/agents/{name}/revoke",
        AgentsRevoke,
        "agents.revoke",
        needs(Scope::AgentsAdmin),
        "Revoke an agent"
    ),
    route!(
        "GET",
        "/v1/agents/{name}/audit-head",
        AgentsAuditHead,
        "agents.audit_head",
        needs(Scope::AuditRead),
        "The latest signed head of an agent's audit log, for `outpost-agent audit verify --head`"
    ),
    route!(
        "GET",
        "/v1/agents/{name}/connections/{connection}/schema",
        AgentsConnectionSchema,
        "agents.connection_schema",
        needs(Scope::JobsDispatch),
        "The connection's catalog for the schema browser (tables and views the connection's role may read, \
         columns with types and nullability, row estimates, columns the agent's policy masks marked masked), \
         read by a signed catalog job and kept for schema_cache_secs; ?refresh=true asks the agent again. \
         Needs the connection shared with the caller, as dispatching a job to it does"
    ),
    route!(
        "POST",
        "/v1/enrollment-tokens",
        EnrolmentTokensCreate,
        "enrollment_tokens.create",
        needs(Scope::AgentsAdmin),
        "Create a one-time enrolment token for an agent name"
    ),
    route!(
        "GET",
        "/v1/enrollment-tokens",
        EnrolmentTokensList,
        "enrollment_tokens.list",
        needs(Scope::AgentsAdmin),
        "List the outstanding (unused, unexpired) enrolment tokens, never their secrets"
    ),
    route!(
        "DELETE",
        "/v1/enrollment-tokens/{id}",
        EnrolmentTokensRevoke,
        "enrollment_tokens.revoke",
        needs(Scope::AgentsAdmin),
        "Revoke an unused enrolment token: it enrols nobody from now on"
    ),
    route!(
        "GET",
        "/v1/jobs",
        JobsList,
        "jobs.list",
        needs(Scope::ResultsRead),
        "List the caller's jobs, newest first, each with its name; filter with ?state= (queued, leased, succeeded, \
         failed, rejected, expired, cancelled), ?agent= (or pool:NAME), ?connection= and ?owner= (a user name: admins only; \
         others see only their own jobs); admins: every job with ?all=true; ?limit= 1 to 1000 (100); ?sql=true adds \
         each job's SQL where the caller may read it"
    ),
    route!(
        "POST",
        "/v1/jobs",
        JobsDispatch,
        "jobs.dispatch",
        needs(Scope::JobsDispatch),
        "Dispatch an ad-hoc job to a connection shared with the caller"
    ),
    route!(
        "GET",
        "/v1/jobs/{id}",
        JobsRead,
        "jobs.read",
        needs(Scope::ResultsRead),
        "A job's status; with ?state=S&wait=N it waits for the job to leave state S"
    ),
    route!(
        "GET",
        "/v1/jobs/{id}/result",
        JobsResult,
        "jobs.result",
        needs(Scope::ResultsRead),
        "A job's rendered result, waiting up to ?wait=N seconds"
    ),
    route!(
        "GET",
        "/v1/jobs/{id}/spec",
        JobsSpec,
        "jobs.spec",
        needs(Scope::ResultsRead),
        "A job's SQL, parameters, render spec and requester (those who may read its SQL)"
    ),
    route!("POST", "/v1/jobs/{id}/cancel", JobsCancel, "jobs.cancel", needs(Scope::JobsDispatch), "Cancel a job"),
    route!(
        "GET",
        "/v1/projects",
        ProjectsList,
        "projects.list",
        needs(Scope::ProjectsRead),
        "List projects the caller owns or has a grant on"
    ),
    route!("POST", "/v1/projects", ProjectsCreate, "projects.create", needs(Scope::ProjectsWrite), "Create a project"),
    route!(
        "GET",
        "/v1/projects/{id}",
        ProjectsRead,
        "projects.read",
        needs(Scope::ProjectsRead),
        "A project (SQL only with view-logic, edit or ownership)"
    ),
    route!(
        "PUT",
        "/v1/projects/{id}",
        ProjectsUpdate,
        "projects.update",
        needs(Scope::ProjectsWrite),
        "Replace a project's name and queries"
    ),
    route!(
        "DELETE",
        "/v1/projects/{id}",
        ProjectsDelete,
        "projects.delete",
        needs(Scope::ProjectsWrite),
        "Delete a project"
    ),
    route!(
        "PUT",
        "/v1/projects/{id}/grants/{user}",
        ProjectGrantSet,
        "projects.grant",
        needs(Scope::ProjectsWrite),
        "Grant a user view-app, view-logic or edit"
    ),
    route!(
        "DELETE",
        "/v1/projects/{id}/grants/{user}",
        ProjectGrantRemove,
        "projects.ungrant",
        needs(Scope::ProjectsWrite),
        "Remove a user's grant"
    ),
    route!(
        "POST",
        "/v1/projects/{id}/run",
        ProjectsRun,
        "projects.run",
        needs(Scope::ProjectsRun),
        "Run (refresh) every query of a project"
    ),
    route!(
        "GET",
        "/v1/projects/{id}/results",
        ProjectsResults,
        "projects.results",
        needs(Scope::ProjectsRead),
        "The latest job of each query of a project"
    ),
    route!(
        "POST",
        "/v1/projects/{id}/embed-tokens",
        EmbedTokensCreate,
        "embed_tokens.create",
        needs(Scope::EmbedCreate),
        "Create a short-lived embed token for one end customer"
    ),
    route!(
        "POST",
        "/v1/projects/{id}/embed-tokens/revoke",
        EmbedTokensRevoke,
        "embed_tokens.revoke",
        needs(Scope::EmbedCreate),
        "Invalidate every embed token of a project"
    ),
    route!(
        "GET",
        "/v1/embed/project",
        EmbedProject,
        "embed.project",
        Auth::Embed,
        "The project an embed token is for (names and kinds only)"
    ),
    route!(
        "GET",
        "/v1/embed/results/{index}",
        EmbedResult,
        "embed.result",
        Auth::Embed,
        "The latest rendered result of one query for the token's customer"
    ),
    route!(
        "POST",
        "/v1/embed/run",
        EmbedRun,
        "embed.run",
        Auth::Embed,
        "Run the dashboard for the token's customer with the filters its viewer set"
    ),
    route!(
        "GET",
        "/v1/tokens",
        TokensList,
        "tokens.list",
        ANY,
        "List the caller's API tokens (admins: everyone's with ?all=true)"
    ),
    route!(
        "POST",
        "/v1/tokens",
        TokensCreate,
        "tokens.create",
        needs(Scope::TokensWrite),
        "Create an API token with some of the caller's scopes; shown once"
    ),
    route!(
        "DELETE",
        "/v1/tokens/{id}",
        TokensRevoke,
        "tokens.revoke",
        needs(Scope::TokensWrite),
        "Revoke an API token"
    ),
    route!("GET", "/v1/audit", AuditRead, "audit.read", needs(Scope::AuditRead), "Read the control plane's audit log"),
    route!(
        "POST",
        "/v1/results/purge",
        ResultsPurge,
        "results.purge",
        needs(Scope::ResultsPurge),
        "Delete results that ended more than older_than_secs ago"
    ),
    route!("GET", "/v1/openapi.json", OpenApi, "openapi.read", Auth::Public, "This API's OpenAPI document"),
];

/// Finds the route for `method` and `path`, with the path's `{…}` values in order.
/// `Err(true)` when the path exists with other methods, `Err(false)` when it does not.
pub fn match_route(method: &Method, path: &str) -> Result<(&'static Route, Vec<String>), bool> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut path_known = false;
    for r in ROUTES {
        let tmpl: Vec<&str> = r.path.trim_start_matches('/').split('/').collect();
        if tmpl.len() != segs.len() {
            continue;
        }
        let mut params = Vec::new();
        let fits = tmpl.iter().zip(&segs).all(|(t, s)| {
            if t.starts_with('{') {
                params.push((*s).to_owned());
                !s.is_empty()
            } else {
                t == s
            }
        });
        if fits {
            path_known = true;
            if r.method == method.as_str() {
                return Ok((r, params));
            }
        }
    }
    Err(path_known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_by_method_and_template() {
        let (r, p) = match_route(&Method::PUT, "/v1/groups/ops/members/ana").expect("route");
        assert_eq!(r.id, RouteId::GroupMemberAdd);
        assert_eq!(p, vec!["ops".to_owned(), "ana".to_owned()]);
        assert_eq!(match_route(&Method::PATCH, "/v1/jobs").map(|x| x.0.id), Err(true));
        assert_eq!(match_route(&Method::GET, "/v1/nothing").map(|x| x.0.id), Err(false));
        assert_eq!(match_route(&Method::GET, "/v1/jobs//result").map(|x| x.0.id), Err(false));
        // No two routes share a method and template.
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.path == b.path), "{} {} twice", a.method, a.path);
                assert_ne!(a.action, b.action, "audit action {} twice", a.action);
            }
        }
    }
}
