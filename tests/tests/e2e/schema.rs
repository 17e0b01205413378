//! The JSON Schemas of agent.yaml and control-plane.yaml: the committed files in
//! `configs/` are exactly what the binaries generate from their config types, and the
//! shipped example configs validate against them, so an editor that reads the schema
//! agrees with `config check`.

use anyhow::{Context as _, Result};
use outpost_e2e::{bin, run_cmd};

fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn generated(binary: &str) -> Result<String> {
    let (code, out, err) = run_cmd(&bin(binary), &["config", "schema"], None)?;
    anyhow::ensure!(code == 0, "{binary} config schema: {err}");
    Ok(out)
}

fn validator(schema_file: &str) -> Result<jsonschema::Validator> {
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(repo_file(schema_file))?)?;
    jsonschema::validator_for(&schema).map_err(|e| anyhow::anyhow!("{schema_file}: {e}"))
}

fn yaml(text: &str) -> Result<serde_json::Value> {
    serde_saphyr::from_str(text).context("YAML")
}

#[test]
fn committed_schemas_are_what_the_binaries_generate() -> Result<()> {
    for (binary, file) in
        [("outpost-agent", "configs/agent.schema.json"), ("outpost-control-plane", "configs/control-plane.schema.json")]
    {
        let committed = std::fs::read_to_string(repo_file(file)).with_context(|| file.to_owned())?;
        assert_eq!(
            committed.trim_end(),
            generated(binary)?.trim_end(),
            "{file} is stale: run `{binary} config schema > {file}`"
        );
    }
    Ok(())
}

#[test]
fn shipped_example_configs_validate_and_mistakes_are_named_by_path() -> Result<()> {
    for (schema, example) in [
        ("configs/agent.schema.json", "configs/agent.yaml"),
        ("configs/control-plane.schema.json", "configs/control-plane.yaml"),
    ] {
        let v = validator(schema)?;
        let doc = yaml(&std::fs::read_to_string(repo_file(example))?)?;
        let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{example}: {errors:?}");
    }
    let v = validator("configs/agent.schema.json")?;
    let wrong = yaml(
        "state_dir: /var/lib/outpost\nconnections:\n  warehouse:\n    kind: oracle\n    hots: db\nlimits:\n  max_rows: lots\n",
    )?;
    let paths: Vec<String> = v.iter_errors(&wrong).map(|e| e.instance_path().to_string()).collect();
    // A section that may also be empty (null) reports at the section.
    for expected in ["/connections/warehouse", "/connections/warehouse/kind", "/limits"] {
        assert!(paths.iter().any(|p| p == expected), "no error at {expected}: {paths:?}");
    }
    Ok(())
}
