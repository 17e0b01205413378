//! A project page's schedule: said in words in the project's time zone ("Every weekday at
//! 06:00, Europe/Berlin · next run 7 Dec 06:00"), and for those who may edit the project
//! a small form that sets or removes it (`PUT /v1/projects/{id}` with `schedule`).

use std::fmt::Write as _;
use std::str::FromStr;

use chrono::TimeZone;
use serde_json::Value;

use crate::console::sanitize_svg::escape as e;
use crate::console::Page;

/// "7 Dec 06:00" in `tz` (UTC when it is unknown), or `None` for no time.
fn local(t: &Value, tz: &str) -> Option<String> {
    let t = chrono::DateTime::from_timestamp(t.as_i64()?, 0)?;
    Some(match chrono_tz::Tz::from_str(tz) {
        Ok(z) => z.from_utc_datetime(&t.naive_utc()).format("%-d %b %H:%M").to_string(),
        Err(_) => t.format("%-d %b %H:%M UTC").to_string(),
    })
}

/// The schedule in words, as the page says it; "Refreshed on demand only." without one.
pub(crate) fn schedule_words(s: &Value, now: i64) -> String {
    if !s.is_object() {
        return "Refreshed on demand only (no schedule).".into();
    }
    let tz = s["timezone"].as_str().unwrap_or("UTC");
    let words = s["description"].as_str().unwrap_or("On a schedule");
    let next = match s["next_run_at"].as_i64() {
        Some(t) if t <= now => "running now".to_owned(),
        Some(_) => format!("next run {}", local(&s["next_run_at"], tz).unwrap_or_default()),
        None => "no next run".to_owned(),
    };
    format!("{words}, {tz} · {next}")
}

impl Page<'_> {
    /// The project's schedule section: its words, and the form for editors.
    pub(crate) fn schedule_section(&self, p: &Value, can_edit: bool) -> String {
        let s = &p["schedule"];
        let pid = e(p["id"].as_str().unwrap_or_default());
        let mut b = format!(
            "<section class=\"schedule\"><h2>Schedule</h2><p data-schedule>{}</p>",
            e(&schedule_words(s, self.app.clock.now()))
        );
        if can_edit {
            let cron = e(s["cron"].as_str().unwrap_or("0 6 * * 1-5"));
            let tz = e(s["timezone"].as_str().unwrap_or("UTC"));
            let customers = s["customers"]
                .as_array()
                .map(|c| c.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            let _ = write!(
                b,
                "<form class=\"row\" data-api=\"PUT /v1/projects/{pid}\" data-wrap=\"schedule\" data-then=\"reload\">\
                 <label>Cron <span class=\"hint\">minute hour day month weekday</span>\
                 <input name=\"schedule.cron\" value=\"{cron}\" required spellcheck=\"false\"></label>\
                 <label>Time zone <input name=\"schedule.timezone\" value=\"{tz}\" list=\"tz-names\" required></label>\
                 <label>End customers <span class=\"hint\">comma-separated; only for queries that take one</span>\
                 <input name=\"schedule.customers\" value=\"{}\" data-type=\"list\" data-optional></label>\
                 <button type=\"submit\">Save schedule</button>",
                e(&customers)
            );
            if s.is_object() {
                let _ = write!(
                    b,
                    "<button type=\"submit\" data-api=\"PUT /v1/projects/{pid}\" data-wrap=\"schedule-remove\" \
                     data-then=\"reload\" formnovalidate>Remove schedule</button>"
                );
            }
            b.push_str("<output role=\"alert\"></output></form><datalist id=\"tz-names\">");
            for z in chrono_tz::TZ_VARIANTS.iter() {
                let _ = write!(b, "<option value=\"{}\">", e(z.name()));
            }
            b.push_str("</datalist>");
        }
        b.push_str("</section>");
        b
    }
}

#[cfg(test)]
mod tests {
    use super::schedule_words;

    #[test]
    fn a_schedule_is_said_in_words_with_its_next_run_in_its_zone() {
        let s = serde_json::json!({
            "description": "Every weekday at 06:00", "timezone": "Europe/Berlin",
            // Monday 7 December 2026, 05:00 UTC: 06:00 in Berlin.
            "next_run_at": 1_796_619_600_i64,
        });
        assert_eq!(schedule_words(&s, 0), "Every weekday at 06:00, Europe/Berlin · next run 7 Dec 06:00");
        assert!(schedule_words(&s, 1_796_619_600).ends_with("· running now"));
        assert_eq!(schedule_words(&serde_json::Value::Null, 0), "Refreshed on demand only (no schedule).");
    }
}
