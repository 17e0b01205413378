//! A project's schedule: a 5-field cron pattern read in an IANA time zone, and the end
//! customers each run is for. Checked with field-precise errors (`schedule.cron`,
//! `schedule.timezone`, `schedule.customers[i]`), its next time computed in its zone
//! (so 06:00 stays 06:00 across daylight-saving changes), and said in words.
//!
//! Cron patterns are evaluated by `croner` (POSIX/Vixie semantics, DST-aware on chrono
//! times) and zones come from `chrono-tz` (the IANA database compiled in).

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::app::projects::ProjectQuery;
use crate::http::ApiError;

/// Most end customers one schedule runs for.
pub const MAX_SCHEDULE_CUSTOMERS: usize = 100;
/// Longest end-customer id.
pub const MAX_CUSTOMER_LEN: usize = 128;
/// Longest cron pattern.
const MAX_CRON_LEN: usize = 200;
/// How many upcoming runs are looked at to find the shortest gap between two.
const INTERVAL_SAMPLE: usize = 400;

/// A project's schedule, as the API takes and the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five fields: minute hour day-of-month month weekday (`0 6 * * 1-5`).
    pub cron: String,
    /// IANA time zone the pattern is read in (`Europe/Berlin`, `UTC`).
    pub timezone: String,
    /// End customers: each run refreshes the customer queries once for each.
    #[serde(default)]
    pub customers: Vec<String>,
}

/// A schedule whose pattern and zone have been parsed.
#[derive(Debug, Clone)]
pub struct Parsed {
    cron: Cron,
    tz: Tz,
}

/// Checks an end-customer id (`field` names it in the error).
pub fn check_customer(field: &str, c: &str) -> Result<(), ApiError> {
    if c.is_empty() || c.len() > MAX_CUSTOMER_LEN || c.chars().any(char::is_control) {
        return Err(ApiError::bad_field(field, format!("must be 1 to {MAX_CUSTOMER_LEN} printable characters")));
    }
    Ok(())
}

/// Parses a 5-field cron pattern (or `@daily`, `@hourly`, …), saying what is wrong.
pub fn parse_cron(cron: &str) -> Result<Cron, String> {
    let text = cron.trim();
    if text.is_empty() {
        return Err("must not be empty; give 5 fields: minute hour day month weekday (e.g. \"0 6 * * 1-5\")".into());
    }
    if text.len() > MAX_CRON_LEN {
        return Err(format!("must be at most {MAX_CRON_LEN} characters"));
    }
    if !text.starts_with('@') {
        let n = text.split_whitespace().count();
        if n != 5 {
            let extra = match n {
                6 => " (seconds are not supported)",
                7 => " (seconds and years are not supported)",
                _ => "",
            };
            return Err(format!("{n} field{} given{extra}; use 5: minute hour day month weekday", plural(n)));
        }
    }
    let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
    parser.parse(text).map_err(|e| {
        let m = e.to_string();
        let m = ["Invalid pattern: ", "Component error: ", "Pattern contains illegal characters: "]
            .iter()
            .find_map(|p| m.strip_prefix(p))
            .unwrap_or(&m)
            .trim_end_matches('.')
            .to_owned();
        // Which field: the first that fails alone, the others left at `*`.
        let fields: Vec<&str> = text.split_whitespace().collect();
        let culprit = (0..FIELDS.len()).find(|k| {
            let alone: Vec<&str> = (0..FIELDS.len()).map(|j| if j == *k { fields[j] } else { "*" }).collect();
            fields.len() == FIELDS.len() && parser.parse(&alone.join(" ")).is_err()
        });
        match culprit {
            Some(k) => {
                format!("the {} field {:?} is not valid (it takes {}): {m}", FIELDS[k].0, fields[k], FIELDS[k].1)
            }
            None => {
                format!("{m} (fields: minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-7 with 0 and 7 Sunday)")
            }
        }
    })
}

/// The five fields, with what each takes.
const FIELDS: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day", "1-31, or L for the last"),
    ("month", "1-12 or JAN-DEC"),
    ("weekday", "0-7 or SUN-SAT; 0 and 7 are Sunday"),
];

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Parses an IANA zone name; the error suggests close names.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    let close = close_zones(name);
    if close.is_empty() {
        Err(format!("{name:?} is not an IANA time zone name (such as \"Europe/Berlin\" or \"UTC\")"))
    } else {
        Err(format!("{name:?} is not an IANA time zone name; did you mean {}?", close.join(", ")))
    }
}

/// Up to 3 zone names close to `name`: the same name in other case, a zone whose last
/// part is `name`, or one a couple of edits away.
fn close_zones(name: &str) -> Vec<String> {
    let want = name.trim().to_ascii_lowercase().replace(' ', "_");
    if want.is_empty() || want.len() > 64 {
        return Vec::new();
    }
    let mut scored: Vec<(usize, &str)> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .filter_map(|z| {
            let lower = z.to_ascii_lowercase();
            let city = lower.rsplit('/').next().unwrap_or(&lower);
            let d = if lower == want || city == want {
                0
            } else {
                edit_distance(&lower, &want).min(edit_distance(city, &want) + 1)
            };
            (d <= 2).then_some((d, z))
        })
        .collect();
    scored.sort_unstable();
    scored.into_iter().take(3).map(|(_, z)| format!("{z:?}")).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Parsed {
    /// The first run strictly after `t` (unix seconds), or `None` when the pattern never
    /// matches again.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let start: DateTime<Tz> = self.tz.from_utc_datetime(&DateTime::<Utc>::from_timestamp(t, 0)?.naive_utc());
        self.cron.find_next_occurrence(&start, false).ok().map(|d| d.timestamp())
    }

    /// The shortest gap between two of the next runs after `t`, seconds.
    fn shortest_gap(&self, t: i64) -> Option<i64> {
        let mut prev = self.next_after(t)?;
        let mut least: Option<i64> = None;
        for _ in 0..INTERVAL_SAMPLE {
            let Some(next) = self.next_after(prev) else { break };
            let gap = next - prev;
            least = Some(least.map_or(gap, |l| l.min(gap)));
            prev = next;
        }
        least
    }
}

impl Schedule {
    /// Parses the pattern and zone (errors name the field).
    pub fn parsed(&self) -> Result<Parsed, ApiError> {
        let cron = parse_cron(&self.cron).map_err(|m| ApiError::bad_field("schedule.cron", m))?;
        let tz = parse_timezone(self.timezone.trim()).map_err(|m| ApiError::bad_field("schedule.timezone", m))?;
        Ok(Parsed { cron, tz })
    }

    /// Checks the schedule for a project of `queries` at `now`: pattern, zone, that it
    /// runs no more often than every `min_interval_secs`, and its customers (required
    /// when a query takes the customer id, refused when none does). Returns it parsed
    /// with its first run.
    pub fn check(
        &self,
        queries: &[ProjectQuery],
        min_interval_secs: u64,
        now: i64,
    ) -> Result<(Parsed, Option<i64>), ApiError> {
        let parsed = self.parsed()?;
        let first = parsed.next_after(now).ok_or_else(|| {
            ApiError::bad_field("schedule.cron", "never matches a date (such as 30 February); nothing would run")
        })?;
        let least = i64::try_from(min_interval_secs).unwrap_or(i64::MAX);
        if let Some(gap) = parsed.shortest_gap(now) {
            if gap < least {
                return Err(ApiError::bad_field(
                    "schedule.cron",
                    format!("runs every {gap} s; the least allowed is {least} s (schedules.min_interval_secs)"),
                ));
            }
        }
        self.check_customers(queries)?;
        Ok((parsed, Some(first)))
    }

    /// Checks the customer list against the project's queries.
    pub fn check_customers(&self, queries: &[ProjectQuery]) -> Result<(), ApiError> {
        if self.customers.len() > MAX_SCHEDULE_CUSTOMERS {
            return Err(ApiError::bad_field(
                "schedule.customers",
                format!("give at most {MAX_SCHEDULE_CUSTOMERS} customers"),
            ));
        }
        for (i, c) in self.customers.iter().enumerate() {
            let at = format!("schedule.customers[{i}]");
            check_customer(&at, c)?;
            if self.customers[..i].contains(c) {
                return Err(ApiError::bad_field(&at, format!("{c:?} is listed twice")));
            }
        }
        let takes_customer = queries.iter().any(|q| q.customer_param.is_some());
        if takes_customer && self.customers.is_empty() {
            return Err(ApiError::bad_field(
                "schedule.customers",
                "this project's queries take the end customer id (customer_param): list the customers to refresh",
            ));
        }
        if !takes_customer && !self.customers.is_empty() {
            return Err(ApiError::bad_field(
                "schedule.customers",
                "no query of this project takes the end customer id (customer_param): leave the list empty",
            ));
        }
        Ok(())
    }

    /// The schedule in words: "Every weekday at 06:00".
    pub fn describe(&self) -> String {
        describe(&self.cron)
    }
}

const DAYS: [&str; 8] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Common patterns in plain words; others as `croner` describes them.
pub fn describe(cron: &str) -> String {
    let f: Vec<&str> = cron.split_whitespace().collect();
    let num = |s: &str, max: u32| s.parse::<u32>().ok().filter(|n| *n <= max);
    let known = match f.as_slice() {
        [m, h, "*", "*", dow] if num(m, 59).is_some() && num(h, 23).is_some() => {
            let at = format!("{:02}:{:02}", num(h, 23).unwrap_or(0), num(m, 59).unwrap_or(0));
            match dow.to_ascii_uppercase().as_str() {
                "*" => Some(format!("Every day at {at}")),
                "1-5" | "MON-FRI" => Some(format!("Every weekday at {at}")),
                "0,6" | "6,0" | "6,7" | "SAT,SUN" | "SUN,SAT" | "6-7" => {
                    Some(format!("Every Saturday and Sunday at {at}"))
                }
                d => num(d, 7).map(|d| format!("Every {} at {at}", DAYS[d as usize])),
            }
        }
        [m, h, dom, "*", "*"] if num(m, 59).is_some() && num(h, 23).is_some() && num(dom, 31).is_some() => {
            let at = format!("{:02}:{:02}", num(h, 23).unwrap_or(0), num(m, 59).unwrap_or(0));
            Some(format!("On day {dom} of every month at {at}"))
        }
        [m, "*", "*", "*", "*"] if num(m, 59).is_some() => Some(format!("Every hour at minute {m}")),
        [m, "*", "*", "*", "*"] => m.strip_prefix("*/").and_then(|n| num(n, 59)).map(|n| format!("Every {n} minutes")),
        [m, h, "*", "*", "*"] if num(m, 59).is_some() => {
            h.strip_prefix("*/").and_then(|n| num(n, 23)).map(|n| format!("Every {n} hours at minute {m}"))
        }
        _ => None,
    };
    known.unwrap_or_else(|| match parse_cron(cron) {
        Ok(c) => c.describe().trim_end_matches('.').to_owned(),
        Err(_) => format!("cron {cron:?}"),
    })
}
