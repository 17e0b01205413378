//! API tokens stop working everywhere at the next request once revoked: with two replicas
//! on one PostgreSQL database, a token revoked through one replica is refused by both, and
//! a user disabled by the CLI (which writes to the database itself) is refused by both,
//! from the first request after the change. A replica that kept the tokens it checked
//! would have to keep this promise too (issue 24 tried one; see docs/BENCHMARKS.md).
//!
//! Always runs on the local PostgreSQL server (`OUTPOST_TEST_PG_URL`); never skipped.

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use outpost_e2e::client::{ok_json, Api, TEST_PASSWORD};
use outpost_e2e::ControlPlane;

/// The first request with a token after its change: it must be refused (401).
async fn refused(api: &Api, what: &str) -> Result<()> {
    let res = api.get("/v1/agents").await?;
    ensure!(res.status == 401, "{what}: the next request got {}: {}", res.status, res.text());
    Ok(())
}

/// Creates the editor `name` with an API token (through `admin`); returns the token and its id.
async fn user_and_token(admin: &Api, name: &str) -> Result<(String, String)> {
    let user = serde_json::json!({ "name": name, "role": "editor", "password": TEST_PASSWORD });
    ok_json(admin, "POST", "/v1/users", Some(&user)).await?;
    let t =
        ok_json(admin, "POST", "/v1/tokens", Some(&serde_json::json!({ "name": "t", "scopes": ["*"], "user": name })))
            .await?;
    Ok((t["token"].as_str().context("token")?.to_owned(), t["id"].as_str().context("id")?.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_anywhere_is_refused_by_every_replica_at_the_next_request() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp1, cp2) = ControlPlane::two_started_replicas(root.path())?;
    for cp in [&cp1, &cp2] {
        cp.process()?.wait_for_log("Listening for other replicas", Duration::from_secs(30))?;
    }
    let admin1 = cp1.api()?;
    let (token, id) = user_and_token(&admin1, "ana").await?;
    let (ana1, ana2) = (admin1.with_token(Some(&token)), cp2.api()?.with_token(Some(&token)));
    for api in [&ana1, &ana2, &ana2] {
        ensure!(api.get("/v1/agents").await?.status == 200, "the token works on both replicas");
    }

    // Revoked through replica 1: both refuse it from the next request on.
    ok_json(&admin1, "DELETE", &format!("/v1/tokens/{id}"), None).await?;
    refused(&ana1, "revoked through this replica").await?;
    refused(&ana2, "revoked through the other replica").await?;

    // The CLI writes to the database itself; both running replicas refuse at once.
    let (token, _) = user_and_token(&admin1, "bo").await?;
    let (bo1, bo2) = (admin1.with_token(Some(&token)), cp2.api()?.with_token(Some(&token)));
    for api in [&bo1, &bo2] {
        ensure!(api.get("/v1/agents").await?.status == 200, "the token works on both replicas");
    }
    cp1.cli(&["user", "disable", "bo"])?;
    refused(&bo2, "user disabled by the CLI, replica 2").await?;
    refused(&bo1, "user disabled by the CLI, replica 1").await?;
    Ok(())
}
