//! `audit …`: reading and verifying the local audit log.

#[allow(clippy::wildcard_imports)]
use crate::*;

pub(crate) fn audit(cfg: &AgentConfig, cmd: AuditCommand) -> ExitCode {
    use outpost_agent::audit;
    match cmd {
        AuditCommand::Verify { json, log, head } => {
            let path = log.unwrap_or_else(|| cfg.audit_path());
            let current = audit::show::certificate_key(&cfg.state_dir.join(outpost_agent::identity::CERT_FILE));
            let head = match head.as_deref().map(audit::show::read_head).transpose() {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("error: --head: {e}");
                    return ExitCode::from(64);
                }
            };
            let report = match audit::verify_with_head(&path, current.as_deref(), head.as_ref()) {
                Ok(r) => r,
                Err(e) => return failure(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print!("{}", audit::show::describe(&path, &report));
            }
            if report.finding.is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        AuditCommand::Tail { lines, json, requester } => match audit::tail(&cfg.audit_path(), lines, &|r| {
            requester.as_deref().is_none_or(|who| audit::show::requested_by(r, who))
        }) {
            Ok(records) => {
                for r in &records {
                    if json {
                        println!("{r}");
                    } else {
                        println!("{}", audit::show::line(r));
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => failure(e),
        },
    }
}
