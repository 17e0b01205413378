//! The encrypted result cache and the vault's key rotation, through the real binaries:
//! a cache miss then a hit, a tampered entry, `cache stats|purge`, `keys rotate`, and
//! the proof that a canary the job reads (but does not render) is nowhere in plaintext
//! on the agent's disk, the control plane's disk or either log. An interrupted rotation
//! (`kill -9` at each step, and at random moments) leaves a vault that opens.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use outpost_agent::cache::{entry_hash, Cache, Index};
use outpost_agent::vault::{KeySettings, MasterKeySource, Vault, VaultError};
use outpost_e2e::proc::Process;
use outpost_e2e::{bin, files_under, Agent, ControlPlane};
use secrecy::ExposeSecret as _;

const CANARY: &str = "canary-5b1f0e77-never-leaves-the-agent";
const SQL: &str =
    "SELECT region, SUM(amount) AS revenue, MAX(note) AS note FROM accounts GROUP BY region ORDER BY region";

fn holds(path: &Path, needle: &str) -> Result<bool> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    Ok(bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
}

/// The customer's database, outside the agent's state dir: the canary is in a column
/// the job reads and the bar chart does not draw.
fn customer_db(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("warehouse.db");
    let conn = rusqlite::Connection::open(&path)?;
    conn.execute_batch("CREATE TABLE accounts (region TEXT NOT NULL, amount REAL NOT NULL, note TEXT NOT NULL);")?;
    for (i, region) in ["east", "north", "south", "west"].iter().cycle().take(40).enumerate() {
        conn.execute(
            "INSERT INTO accounts VALUES (?1, ?2, ?3)",
            rusqlite::params![region, (i * 7 % 23) as f64 + 0.5, format!("{CANARY}-{i}")],
        )?;
    }
    Ok(path)
}

fn write_config(agent: &Agent, db: &Path) -> Result<()> {
    std::fs::write(
        &agent.config,
        format!(
            "state_dir: {}\nconnections:\n  warehouse:\n    kind: sqlite\n    path: {}\n    cache_max_age_secs: 600\n  \
             sample:\n    kind: sqlite\n    path: sample.db\n    sample: true\n    cache_max_age_secs: 0\n\
             cache:\n  max_age_secs: 300\n",
            agent.state_dir.display(),
            db.display()
        ),
    )?;
    Ok(())
}

/// Runs the bar-chart job with `max_age`; returns the SVG and whether it was a cache hit.
async fn run_job(cp: &ControlPlane, max_age: u64) -> Result<(String, bool)> {
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": "warehouse", "sql": SQL,
            "render": { "kind": "bar", "x": "region", "y": ["revenue"], "title": "Revenue by region" },
            "cache": { "max_age_secs": max_age }
        }))
        .await?;
    let res = cp.api()?.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    ensure!(res.status == 200, "job {id}: {} {}", res.status, res.text());
    let hit = res.header("outpost-cache-hit").context("no cache header")? == "true";
    Ok((res.text(), hit))
}

fn last_job_record(agent: &Agent) -> Result<serde_json::Value> {
    agent.audit_records()?.into_iter().rev().find(|r| r["event"] == "job").context("no job record")
}

fn cache_entries(agent: &Agent) -> Result<u64> {
    let (code, out, err) = agent.cli(&["cache", "stats", "--json"], None, &[])?;
    ensure!(code == 0, "cache stats: {out}{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).with_context(|| out.clone())?;
    stats["entries"].as_u64().context("entries")
}

fn entry_files(agent: &Agent) -> Result<Vec<PathBuf>> {
    Ok(files_under(&agent.state_dir.join("cache"))?
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "bin"))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_cached_encrypted_and_the_canary_is_nowhere_in_plaintext() -> Result<()> {
    let root = tempfile::tempdir()?;
    let db = customer_db(&root.path().join("customer"))?;
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let mut agent = Agent::new(root.path(), "edge-1", "")?;
    write_config(&agent, &db)?;
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;

    // Miss, then hit: the same chart, without touching the database the second time.
    let (first, hit) = run_job(&cp, 600).await?;
    assert!(!hit, "the first run is a miss");
    assert!(first.contains("<svg") && first.contains("north"), "{first}");
    let record = last_job_record(&agent)?;
    assert_eq!(record["cache"], "miss");
    // The egress ledger: size and SHA-256 of exactly the bytes the control plane returns.
    assert_eq!(record["bytes_sent"], first.len());
    assert_eq!(record["body_sha256"], outpost_protocol::encoding::sha256_hex(first.as_bytes()));
    let (second, hit) = run_job(&cp, 600).await?;
    assert!(hit, "the same query within its max-age is answered from the cache");
    assert_eq!(second, first);
    assert_eq!(last_job_record(&agent)?["cache"], "hit");
    // max_age 0: the job wants fresh rows.
    let (_, hit) = run_job(&cp, 0).await?;
    assert!(!hit);
    assert_eq!(last_job_record(&agent)?["cache"], "off");
    assert_eq!(cache_entries(&agent)?, 1);
    let (code, out, err) = agent.cli(&["status"], None, &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("result cache:   1 entries") && out.contains("sample 0 s, warehouse 600 s"), "{out}");

    // A tampered entry is a miss plus an audit record, never wrong data.
    let files = entry_files(&agent)?;
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0])?;
    let at = bytes.len() - 5;
    bytes[at] ^= 0x40;
    std::fs::write(&files[0], bytes)?;
    let (third, hit) = run_job(&cp, 600).await?;
    assert!(!hit, "a damaged entry is not used");
    assert_eq!(third, first, "the query ran again and gave the same chart");
    let records = agent.audit_records()?;
    let damaged = records.iter().find(|r| r["event"] == "cache").context("no cache audit record")?;
    assert_eq!(damaged["verdict"], "damaged");
    assert_eq!(damaged["connection"], "warehouse");
    assert_eq!(last_job_record(&agent)?["cache"], "damaged");
    let (_, hit) = run_job(&cp, 600).await?;
    assert!(hit, "the result was stored again after the damaged entry");

    // Rotation needs the agent stopped: it holds the old data key in memory.
    let (code, _, err) = agent.cli(&["keys", "rotate"], None, &[])?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("stop it first"), "{err}");

    agent.stop()?;
    cp.kill()?;

    // The needle is findable: the customer's database holds it.
    assert!(holds(&db, CANARY)?, "the scan would find the canary");
    assert!(!entry_files(&agent)?.is_empty(), "there is a cache entry to scan");
    let mut scanned = 0;
    let logs = [root.path().join("agent-edge-1/agent.log"), root.path().join("control-plane.log")];
    for f in files_under(&agent.state_dir)?.into_iter().chain(files_under(&cp.data_dir)?).chain(logs) {
        assert!(!holds(&f, CANARY)?, "{} holds the canary in plaintext", f.display());
        scanned += 1;
    }
    assert!(scanned > 10, "scanned only {scanned} files");

    // Rotating the data key shreds the cache; the credentials survive it.
    let (code, _, err) = agent.cli(&["credentials", "set", "warehouse"], Some("db-password\n"), &[])?;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = agent.cli(&["keys", "rotate"], None, &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("re-encrypted 1 credential") && err.contains("Deleted 1 cached result"), "{err}");
    assert_eq!(cache_entries(&agent)?, 0);
    assert!(entry_files(&agent)?.is_empty(), "entry files are deleted, not just unindexed");
    assert_eq!(open_vault(&agent.state_dir)?.get("warehouse")?.context("kept")?.expose_secret(), "db-password");

    // Purge: by connection and in full.
    cp.start()?;
    agent.start_connected()?;
    let (_, hit) = run_job(&cp, 600).await?;
    assert!(!hit, "nothing cached survives a rotation");
    assert_eq!(cache_entries(&agent)?, 1);
    let (code, _, err) = agent.cli(&["cache", "purge", "--connection", "sample"], None, &[])?;
    assert_eq!((code, cache_entries(&agent)?), (0, 1), "{err}");
    let (code, _, err) = agent.cli(&["cache", "purge", "--connection", "warehouse"], None, &[])?;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("Deleted 1"), "{err}");
    let (_, hit) = run_job(&cp, 600).await?;
    assert!(!hit, "a purged entry is a miss");
    agent.stop()?;
    Ok(())
}

/// A job on `connection` with `max_age`: (status, body, `outpost-egress`, cache hit).
async fn run_on(
    cp: &ControlPlane,
    connection: &str,
    sql: &str,
    render: serde_json::Value,
    max_age: u64,
) -> Result<(u16, String, String, bool)> {
    let id = cp
        .dispatch(serde_json::json!({
            "agent": "edge-1", "connection": connection, "sql": sql, "render": render,
            "cache": { "max_age_secs": max_age }
        }))
        .await?;
    let res = cp.api()?.get(&format!("/v1/jobs/{id}/result?wait=30")).await?;
    let egress = res.header("outpost-egress").unwrap_or_default();
    let hit = res.header("outpost-cache-hit").as_deref() == Some("true");
    Ok((res.status, res.text(), egress, hit))
}

/// A cached result goes through the same egress policy as a fresh one: a hit is masked
/// like the miss before it (by the column's source, whatever the query calls it), a
/// chart drawn from the cache equals the one drawn from the database, and a result that
/// was refused or cut by an error is never stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_result_is_masked_and_drawn_like_a_fresh_one_and_a_cut_one_is_not_stored() -> Result<()> {
    let root = tempfile::tempdir()?;
    let dir = root.path().join("customer");
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("people.db");
    {
        let conn = rusqlite::Connection::open(&db)?;
        conn.execute_batch(
            "CREATE TABLE people (name TEXT NOT NULL, email TEXT NOT NULL, at INTEGER NOT NULL, value REAL NOT NULL);",
        )?;
        let tx = conn.unchecked_transaction()?;
        for i in 0..5000 {
            tx.execute(
                "INSERT INTO people VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![
                    format!("name-{i:05}"),
                    format!("{CANARY}-{i}@example.org"),
                    i,
                    (i % 97) as f64 / 7.0
                ],
            )?;
        }
        tx.commit()?;
    }
    let mut cp = ControlPlane::init(root.path())?;
    cp.start()?;
    let mut agent = Agent::new(root.path(), "edge-1", "")?;
    std::fs::write(
        &agent.config,
        format!(
            "state_dir: {}\nlimits:\n  max_rows: 10000\nconnections:\n  warehouse:\n    kind: sqlite\n    path: {}\n    \
             cache_max_age_secs: 600\n    egress:\n      max_rows: 10000\n      max_points: 100000\n      mask:\n        \
             - column: main.people.email\n",
            agent.state_dir.display(),
            db.display()
        ),
    )?;
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;

    // A table with the masked column renamed: masked on the miss and on the hit alike.
    let table = serde_json::json!({"kind": "table", "format": "json"});
    let sql = "SELECT name, email AS contact FROM people ORDER BY name LIMIT 20";
    let (status, first, egress, hit) = run_on(&cp, "warehouse", sql, table.clone(), 600).await?;
    assert_eq!((status, egress.as_str(), hit), (200, "masked", false), "{first}");
    assert!(first.contains("***") && !first.contains(CANARY), "{first}");
    let (status, second, egress, hit) = run_on(&cp, "warehouse", sql, table, 600).await?;
    assert_eq!((status, egress.as_str(), hit), (200, "masked", true), "{second}");
    assert_eq!(second, first);
    assert_eq!(last_job_record(&agent)?["cache"], "hit");

    // A line chart that reads the masked column without drawing it: from the cache it is
    // the chart the database gives.
    let line = serde_json::json!({"kind": "line", "x": "at", "y": ["value"]});
    let sql = "SELECT at, value, email FROM people ORDER BY at";
    let (status, fresh, _, hit) = run_on(&cp, "warehouse", sql, line.clone(), 0).await?;
    assert_eq!((status, hit), (200, false), "{fresh}");
    assert_eq!(last_job_record(&agent)?["cache"], "off");
    let (status, miss, _, hit) = run_on(&cp, "warehouse", sql, line.clone(), 600).await?;
    assert_eq!((status, hit, &miss), (200, false, &fresh));
    assert_eq!(last_job_record(&agent)?["rows_read"], 5000);
    let (status, from_cache, _, hit) = run_on(&cp, "warehouse", sql, line.clone(), 600).await?;
    assert_eq!((status, hit, &from_cache), (200, true, &fresh));
    assert_eq!(last_job_record(&agent)?["rows_read"], 5000);
    assert_eq!(cache_entries(&agent)?, 2);

    // Drawing the masked column to scale is refused, and nothing is stored.
    let sql = "SELECT at, length(email) AS v FROM people";
    let drawn = serde_json::json!({"kind": "line", "x": "at", "y": ["v"]});
    for _ in 0..2 {
        let (status, body, _, hit) = run_on(&cp, "warehouse", sql, drawn.clone(), 600).await?;
        assert_eq!((status, hit), (409, false), "{body}");
        assert!(body.contains("egress_refused"), "{body}");
        assert_eq!(last_job_record(&agent)?["cache"], "miss");
    }
    // A chart whose rows stop fitting it after 3000 rows: render_failed, nothing stored.
    let sql = "SELECT CASE WHEN at < 3000 THEN at ELSE 'later' END AS at, value FROM people ORDER BY rowid";
    for _ in 0..2 {
        let (status, body, _, hit) = run_on(&cp, "warehouse", sql, line.clone(), 600).await?;
        assert_eq!((status, hit), (409, false), "{body}");
        assert!(body.contains("render_failed"), "{body}");
        assert_eq!(last_job_record(&agent)?["cache"], "miss");
    }
    assert_eq!(cache_entries(&agent)?, 2, "refused and failed results are not cached");
    let leftovers: Vec<_> = files_under(&agent.state_dir.join("cache"))?
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n.to_string_lossy().contains(".tmp")))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    agent.stop()?;
    for f in files_under(&agent.state_dir)? {
        assert!(!holds(&f, CANARY)?, "{} holds the canary in plaintext", f.display());
    }

    // An entry the previous agent wrote (JSON lines in the same encrypted chunks) is
    // deleted and audited, the query runs, and its result is stored in the new format.
    let table = serde_json::json!({"kind": "table", "format": "json"});
    let sql = "SELECT name FROM people ORDER BY name LIMIT 3";
    let before = entry_files(&agent)?;
    agent.start_connected()?;
    let (status, first, _, _) = run_on(&cp, "warehouse", sql, table.clone(), 600).await?;
    assert_eq!(status, 200, "{first}");
    agent.stop()?;
    let added: Vec<PathBuf> = entry_files(&agent)?.into_iter().filter(|f| !before.contains(f)).collect();
    let [newest] = added.as_slice() else { anyhow::bail!("expected one new entry: {added:?}") };
    let vault = open_vault(&agent.state_dir)?;
    let key = vault.cache_key()?;
    let hash = newest.file_stem().and_then(|s| s.to_str()).context("name")?;
    let entry: [u8; 32] =
        outpost_protocol::encoding::unhex(hash).context("hex")?.try_into().map_err(|_| anyhow::anyhow!("32 bytes"))?;
    {
        use std::io::Write as _;
        let mut w = outpost_agent::cache::stream::EntryWriter::new(std::fs::File::create(newest)?, &key, entry)?;
        w.write_all(b"{\"columns\":[\"name\"],\"truncated\":false,\"provenance\":null}\n[\"a\"]\n[\"b\"]\n[\"c\"]\n")?;
        w.finish()?;
    }
    agent.start_connected()?;
    let (status, again, _, hit) = run_on(&cp, "warehouse", sql, table.clone(), 600).await?;
    assert_eq!((status, hit, &again), (200, false, &first), "an outdated entry is a miss");
    assert_eq!(last_job_record(&agent)?["cache"], "miss");
    let outdated =
        agent.audit_records()?.into_iter().rev().find(|r| r["event"] == "cache").context("no cache record")?;
    assert_eq!(outdated["verdict"], "outdated", "{outdated}");
    assert!(outdated["reason"].as_str().unwrap_or_default().contains("JSON lines"), "{outdated}");
    let (status, third, _, hit) = run_on(&cp, "warehouse", sql, table, 600).await?;
    assert_eq!((status, hit, &third), (200, true, &first), "stored again in the current format");
    agent.stop()?;
    Ok(())
}

fn open_vault(state_dir: &Path) -> Result<Vault, VaultError> {
    let settings =
        KeySettings { credentials_dir: None, ..KeySettings::from_env(MasterKeySource::Auto, None, state_dir) };
    Vault::open(state_dir, &settings, &|_| Err(VaultError::NoKey("no terminal in tests".into())))
}

/// Puts one entry in the cache under the vault's current key.
fn cache_one(state_dir: &Path) -> Result<()> {
    let vault = open_vault(state_dir)?;
    let cache = Cache::open(state_dir, &*vault.cache_key()?, vault.data_key_id(), 1 << 20)?;
    let rs = outpost_agent::resultset::ResultSet {
        columns: vec!["n".into()],
        rows: vec![vec![outpost_agent::resultset::Value::Int(1)]],
        truncated: false,
        provenance: None,
    };
    cache.put(entry_hash("sample", "SELECT 1", "[]"), "sample", &rs, outpost_protocol::unix_now())?;
    Ok(())
}

fn cached(state_dir: &Path) -> Result<u64> {
    Ok(Index::open(state_dir)?.stats()?.entries)
}

#[test]
fn an_interrupted_rotation_leaves_a_vault_that_opens_with_the_old_or_the_new_key() -> Result<()> {
    let root = tempfile::tempdir()?;
    let agent = Agent::new(root.path(), "edge-1", "")?;
    let (code, _, err) = agent.cli(&["credentials", "set", "warehouse"], Some("s3cret-value\n"), &[])?;
    assert_eq!(code, 0, "{err}");
    let rotate_args = vec!["--config".to_owned(), agent.config.display().to_string(), "keys".into(), "rotate".into()];
    let log = root.path().join("rotate.log");

    // kill -9 at each step; whether the new key is in force afterwards is known per step.
    for (point, rotated) in [
        ("rotate:before-write", false),
        ("before-rename:vault.json", false),
        ("after-rename:vault.json", true),
        ("rotate:before-cache-shred", true),
    ] {
        cache_one(&agent.state_dir)?;
        assert_eq!(cached(&agent.state_dir)?, 1);
        let old_id = open_vault(&agent.state_dir)?.data_key_id().to_owned();
        let mut p = Process::spawn_with_env(&bin("outpost-agent"), &rotate_args, &log, &[("OUTPOST_PAUSE_AT", point)])?;
        p.wait_for_log(&format!("paused at {point}"), Duration::from_secs(30))?;
        p.kill_hard()?;
        let vault = open_vault(&agent.state_dir).with_context(|| format!("vault after kill -9 at {point}"))?;
        let secret = vault.get("warehouse")?.context("secret kept")?;
        assert_eq!(secret.expose_secret(), "s3cret-value", "at {point}");
        assert_eq!(vault.data_key_id() != old_id, rotated, "at {point}: old key {old_id}, now {}", vault.data_key_id());
        // Opening the cache under the key now in force shreds what the old key sealed.
        Cache::open(&agent.state_dir, &*vault.cache_key()?, vault.data_key_id(), 1 << 20)?;
        assert_eq!(cached(&agent.state_dir)?, u64::from(!rotated), "at {point}");
        Index::open(&agent.state_dir)?.purge(None)?;
    }

    // And at moments nobody chose: a full run's duration sets the range.
    let started = Instant::now();
    let (code, _, err) = agent.cli(&["keys", "rotate"], None, &[])?;
    assert_eq!(code, 0, "{err}");
    let full = started.elapsed();
    for i in 0..12u32 {
        let mut p = Process::spawn_with_env(&bin("outpost-agent"), &rotate_args, &log, &[])?;
        let mut r = [0u8; 4];
        aws_lc_rs::rand::fill(&mut r).map_err(|_| anyhow::anyhow!("rng"))?;
        let at = full.mul_f64(f64::from(u32::from_be_bytes(r)) / f64::from(u32::MAX) * 1.2);
        std::thread::sleep(at);
        p.kill_hard()?;
        let vault = open_vault(&agent.state_dir).with_context(|| format!("vault after kill -9 #{i} at {at:?}"))?;
        assert_eq!(vault.get("warehouse")?.context("kept")?.expose_secret(), "s3cret-value");
    }
    // A later rotation cleans up what the killed ones left.
    let (code, _, err) = agent.cli(&["keys", "rotate"], None, &[])?;
    assert_eq!(code, 0, "{err}");
    let leftovers: Vec<_> = files_under(&agent.state_dir)?
        .into_iter()
        .filter(|f| f.file_name().is_some_and(|n| n.to_string_lossy().contains(".tmp")))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    Ok(())
}
