//! Errors are egress: what of a failed job's error text may leave the agent.
//!
//! A database's error message can quote a value from a row (`invalid input syntax for
//! type integer: "S3CRET"`, MariaDB's `XPATH syntax error: '~S3CRET'`), past every mask.
//! The policy field `egress.errors` decides what leaves:
//!
//! - `scrubbed` (default): the error's code, its SQLSTATE and error number, the position
//!   in the SQL, and the message with every fragment removed that did not come from the
//!   cloud. It is an allow-list: a quoted fragment, or a word outside the words of the
//!   servers' message templates (`words.txt` beside this file, from PostgreSQL's, MariaDB's and
//!   SQLite's message catalogues), stays only when it occurs verbatim in the job's own SQL
//!   text or parameters (what came from the cloud may go back to it); numbers count as
//!   data. Supplementary lines (`DETAIL:`, `HINT:`, `CONTEXT:`, …) go whole when anything
//!   in them would be removed.
//! - `code_only`: the code, SQLSTATE and error number, and a fixed sentence.
//! - `full`: the text as the database wrote it (an explicit opt-in; `config audit` reports it).
//!
//! The agent's own log gets the scrubbed text whatever the mode: never a raw message.
//!
//! A data exception (SQLSTATE class 22), a constraint (23), or a routine's `RAISE` or
//! `SIGNAL` quotes values: there nothing comes back even when the SQL names it, or a job
//! listing candidate values in its SQL would learn from one error which one a row holds.
//!
//! What this does not stop: a value the job already names in an error of another class
//! (`secret::regclass` gives `relation "…" does not exist`, class 42, so a candidate named
//! in the SQL comes back; `code_only` closes that too); a value made only of template
//! words that a stored routine raises unquoted; an error number chosen by a stored
//! routine's `SIGNAL` (MySQL/MariaDB).

use outpost_protocol::{EgressAction, EgressDecision, Param};

use crate::connectors::{QueryError, ServerError};

/// `egress.errors`: what of a failed job's error message leaves the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorsMode {
    /// Code, SQLSTATE/error number, position, and the message with every fragment
    /// removed that does not occur in the job's SQL text.
    #[default]
    Scrubbed,
    /// Only the code and SQLSTATE/error number.
    CodeOnly,
    /// The database's text as it is: it may quote values from rows, masked or not.
    Full,
}

impl ErrorsMode {
    /// The name agent.yaml uses.
    pub fn name(self) -> &'static str {
        match self {
            ErrorsMode::Scrubbed => "scrubbed",
            ErrorsMode::CodeOnly => "code_only",
            ErrorsMode::Full => "full",
        }
    }
}

/// The words of the servers' message templates (lower case, sorted).
const WORDS: &str = include_str!("words.txt");

fn is_template_word(word: &str) -> bool {
    static SORTED: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let words = SORTED.get_or_init(|| {
        let mut w: Vec<&str> = WORDS.lines().filter(|l| !l.is_empty()).collect();
        w.sort_unstable();
        w
    });
    words.binary_search(&word.to_lowercase().as_str()).is_ok()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Fragments at least this long need not start and end at a token boundary of the SQL
/// (MariaDB cuts the statement it quotes after `near` mid-token).
const LOOSE_MATCH_CHARS: usize = 16;

/// Text that came from the cloud with the job (SQL text and parameters): it may go back.
#[derive(Debug, Clone)]
pub struct Known {
    texts: Vec<String>,
    /// The same, ASCII lower case (PostgreSQL folds unquoted identifiers).
    lowered: Vec<String>,
    /// Characters of the SQL text, to check a position against.
    sql_chars: usize,
    /// Lines of the SQL text, to check a line number against.
    sql_lines: usize,
}

impl Known {
    /// The job's SQL text and parameters.
    pub fn new(sql: &str, params: &[Param]) -> Self {
        let mut texts = vec![sql.to_owned()];
        for p in params {
            match p {
                Param::Null => {}
                Param::Bool(b) => texts.push(b.to_string()),
                Param::Int(i) => texts.push(i.to_string()),
                Param::Float(f) => texts.push(f.to_string()),
                Param::Text(t) => texts.push(t.clone()),
            }
        }
        let lowered = texts.iter().map(|t| t.to_ascii_lowercase()).collect();
        Self { texts, lowered, sql_chars: sql.chars().count(), sql_lines: sql.lines().count().max(1) }
    }

    /// The same SQL's size, but no text: nothing may come back as known.
    fn codes_only(&self) -> Self {
        Self { texts: Vec::new(), lowered: Vec::new(), sql_chars: self.sql_chars, sql_lines: self.sql_lines }
    }

    /// Whether `fragment` occurs verbatim in the SQL or a parameter, starting and ending
    /// at token boundaries (a short fragment inside a longer word does not count).
    /// `fold`: also as an unquoted identifier that PostgreSQL folded to lower case.
    pub fn contains(&self, fragment: &str, fold: bool) -> bool {
        if fragment.is_empty() {
            return true;
        }
        if occurs(&self.texts, fragment) {
            return true;
        }
        let identifier = fragment.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && fragment.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
        fold && identifier && occurs(&self.lowered, fragment)
    }
}

fn occurs(texts: &[String], fragment: &str) -> bool {
    let loose = fragment.chars().count() >= LOOSE_MATCH_CHARS;
    let starts_word = fragment.chars().next().is_some_and(is_word_char);
    let ends_word = fragment.chars().next_back().is_some_and(is_word_char);
    texts.iter().any(|t| {
        t.match_indices(fragment).any(|(i, _)| {
            let before = t[..i].chars().next_back().is_some_and(is_word_char);
            let after = t[i + fragment.len()..].chars().next().is_some_and(is_word_char);
            loose || !((starts_word && before) || (ends_word && after))
        })
    })
}

/// A message with what did not pass removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    /// The message that may leave.
    pub text: String,
    /// Fragments removed.
    pub removed: usize,
}

/// One piece of a message.
#[derive(Debug)]
enum Piece<'a> {
    /// Whitespace (a newline in it ends a line).
    Space(&'a str),
    /// A quoted fragment.
    Quoted { open: char, close: char, inner: &'a str, closed: bool },
    /// A run of other characters.
    Word(&'a str),
}

fn closer(c: char) -> Option<char> {
    match c {
        '"' => Some('"'),
        '\'' => Some('\''),
        '`' => Some('`'),
        '“' => Some('”'),
        '‘' => Some('’'),
        '«' => Some('»'),
        '„' => Some('“'),
        _ => None,
    }
}

/// Whether a quote opening after these pieces quotes a value: after `…: ` or `near `. There
/// the fragment runs to the last closing quote of the message, so that a value holding
/// the quote character cannot end it early and smuggle words out as template text.
fn value_position(before: &[Piece<'_>]) -> bool {
    let mut words = before.iter().rev().filter(|p| !matches!(p, Piece::Space(_)));
    match words.next() {
        Some(Piece::Word(w)) => w.ends_with(':') || w.eq_ignore_ascii_case("near"),
        _ => false,
    }
}

fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c.is_whitespace() {
            let end = rest.find(|c: char| !c.is_whitespace()).unwrap_or(rest.len());
            out.push(Piece::Space(&rest[..end]));
            rest = &rest[end..];
        } else if let Some(close) = closer(c) {
            let body = &rest[c.len_utf8()..];
            let end = if value_position(&out) { body.rfind(close) } else { body.find(close) };
            match end {
                Some(e) => {
                    out.push(Piece::Quoted { open: c, close, inner: &body[..e], closed: true });
                    rest = &body[e + close.len_utf8()..];
                }
                None => {
                    out.push(Piece::Quoted { open: c, close, inner: body, closed: false });
                    rest = "";
                }
            }
        } else {
            // A word ends at whitespace or an opening quote; an apostrophe between letters
            // (`doesn't`) is part of it.
            let mut end = rest.len();
            let mut prev = None;
            for (i, ch) in rest.char_indices() {
                if ch.is_whitespace() {
                    end = i;
                    break;
                }
                if i > 0 && closer(ch).is_some() {
                    let next = rest[i + ch.len_utf8()..].chars().next();
                    let apostrophe = matches!(ch, '\'' | '’')
                        && prev.is_some_and(char::is_alphanumeric)
                        && next.is_some_and(char::is_alphanumeric);
                    if !apostrophe {
                        end = i;
                        break;
                    }
                }
                prev = Some(ch);
            }
            out.push(Piece::Word(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

/// Punctuation a word may carry around its core.
const LEADING: &[char] = &['(', '[', '{'];
const TRAILING: &[char] = &['.', ',', ';', ':', ')', ']', '}', '!', '?'];

/// Whether a word outside quotes may stay: it occurs in what came from the cloud, or
/// it is made of template words (no digits, no letters outside them). `after_line`: the
/// word before was `line`, so a number up to the SQL's line count is a line number.
fn keep_word(word: &str, known: &Known, after_line: bool) -> bool {
    let core = word.trim_start_matches(LEADING).trim_end_matches(TRAILING);
    if core.is_empty() || known.contains(core, false) {
        return true;
    }
    if after_line && core.parse::<usize>().is_ok_and(|n| n >= 1 && n <= known.sql_lines) {
        return true;
    }
    let mut any = false;
    for part in core.split(|c: char| !is_word_char(c)).filter(|p| !p.is_empty()) {
        any = true;
        if part.chars().all(|c| c.is_ascii_digit()) || !is_template_word(part) {
            return false;
        }
    }
    // Symbols alone: only ASCII punctuation (an operator such as `+`).
    any || core.chars().all(|c| c.is_ascii_punctuation())
}

/// Labels that open a supplementary line; such a line goes whole when anything in it
/// would be removed.
const SUPPLEMENTARY: &[&str] = &["DETAIL:", "HINT:", "CONTEXT:", "WHERE:", "QUERY:", "LOCATION:", "STATEMENT:", "LINE"];

/// Removes from `message` every fragment that is neither a template word nor in `known`.
pub fn scrub(message: &str, known: &Known) -> Scrubbed {
    let mut lines: Vec<(String, usize)> = Vec::new();
    let (mut line, mut removed) = (String::new(), 0usize);
    // Whitespace not written yet: dropped when two removals merge into one `…`.
    let mut pending = String::new();
    // Whether the last piece written was a removal with nothing after it.
    let mut elided = false;
    let mut last_word = "";
    for piece in &pieces(message) {
        match piece {
            Piece::Space(s) => {
                let mut parts = s.split('\n');
                let first = parts.next().unwrap_or_default();
                pending.push_str(&first.replace(|c: char| c.is_control(), " "));
                for indent in parts {
                    lines.push((std::mem::take(&mut line), removed));
                    removed = 0;
                    elided = false;
                    last_word = "";
                    pending = indent.replace(|c: char| c.is_control(), " ");
                }
            }
            Piece::Quoted { open, close, inner, closed } => {
                line.push_str(&std::mem::take(&mut pending));
                line.push(*open);
                if known.contains(inner, *open == '"') {
                    line.push_str(inner);
                } else {
                    line.push('…');
                    removed += 1;
                }
                if *closed {
                    line.push(*close);
                }
                elided = false;
                last_word = "";
            }
            Piece::Word(w) => {
                if keep_word(w, known, last_word.eq_ignore_ascii_case("line")) {
                    line.push_str(&std::mem::take(&mut pending));
                    line.push_str(w);
                    elided = false;
                } else {
                    let lead = &w[..w.len() - w.trim_start_matches(LEADING).len()];
                    let trail = &w[w.trim_end_matches(TRAILING).len()..];
                    if elided && lead.is_empty() {
                        // One `…` for a run of removed words: their number is not told.
                        pending.clear();
                    } else {
                        line.push_str(&std::mem::take(&mut pending));
                        line.push_str(lead);
                        line.push('…');
                        removed += 1;
                    }
                    line.push_str(trail);
                    elided = trail.is_empty();
                }
                last_word = w;
            }
        }
    }
    lines.push((line, removed));
    let mut total = 0;
    let mut kept = Vec::new();
    for (text, removed) in lines {
        let label = text.split_whitespace().next().unwrap_or_default();
        if removed > 0 && SUPPLEMENTARY.contains(&label) {
            total += removed.max(1);
            continue;
        }
        total += removed;
        kept.push(text);
    }
    Scrubbed { text: kept.join("\n"), removed: total }
}

/// The failure text that leaves the agent, what its log shows, and the egress decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Sent to the control plane as the report's reason message.
    pub message: String,
    /// For the agent's own log: the scrubbed text, whatever the mode.
    pub logged: String,
    /// Present when the policy removed something.
    pub decision: Option<EgressDecision>,
}

/// The code, SQLSTATE, error number and position of a server's error, in parentheses;
/// a SQLSTATE a stored routine may have chosen is withheld (it can carry data).
fn suffix(e: &ServerError, known: &Known, removed: &mut usize) -> String {
    let mut parts = Vec::new();
    if let Some(n) = e.number {
        parts.push(if e.sqlstate.is_some() { format!("error {n}") } else { format!("SQLite error {n}") });
    }
    match &e.sqlstate {
        Some(s)
            if !e.custom_code && s.len() == 5 && s.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()) =>
        {
            parts.push(format!("SQLSTATE {s}"));
        }
        Some(_) => {
            parts.push("SQLSTATE withheld: set by a stored routine".into());
            *removed += 1;
        }
        None => {}
    }
    if let Some(p) = e.position.filter(|p| usize::try_from(*p).is_ok_and(|p| p >= 1 && p <= known.sql_chars)) {
        parts.push(format!("at character {p}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// `err`'s text with every fragment removed that the cloud did not send; how many.
fn scrubbed_text(err: &QueryError, known: &Known) -> (String, usize) {
    let s = |text: &str| scrub(text, known);
    match err {
        QueryError::Server(e) => {
            // A data exception or a constraint, a routine's RAISE or SIGNAL: what it
            // quotes is a value. Even one the SQL also names may not go back, or a job
            // listing candidates in its SQL would learn from the error which one a row
            // holds (a dictionary attack in one query). The position still says where.
            let value_error = e.custom_code
                || e.sqlstate.as_deref().is_some_and(|c| ["22", "23", "P0", "45"].iter().any(|k| c.starts_with(k)));
            let m = if value_error { scrub(&e.message, &known.codes_only()) } else { s(&e.message) };
            let mut removed = m.removed;
            let suffix = suffix(e, known, &mut removed);
            (format!("query failed: {}{suffix}", m.text), removed)
        }
        QueryError::Database { message } => {
            let m = s(message);
            (format!("query failed: {}", m.text), m.removed)
        }
        QueryError::NotReadOnly { reason } => {
            let m = s(reason);
            (format!("refused: the connection is read-only ({})", m.text), m.removed)
        }
        QueryError::Open { path, reason } => {
            // The address is the operator's configuration, not data.
            let m = s(reason);
            (format!("cannot open database {path}: {}", m.text), m.removed)
        }
        QueryError::Param { index, reason } => {
            let m = s(reason);
            (format!("parameter ${index}: {}", m.text), m.removed)
        }
        QueryError::Task(reason) => {
            let m = s(reason);
            (format!("internal error: {}", m.text), m.removed)
        }
        QueryError::RoleUnchecked { reason } => {
            let m = s(reason);
            (
                format!(
                    "refused: this connection's database role could not be checked for privileges beyond reading \
                     ({}); fix the cause, or set allow_privileged: true on the connection in agent.yaml",
                    m.text
                ),
                m.removed,
            )
        }
        // The agent's own words: a limit, a stop, a render error, a column's name and
        // type, an egress rule, or privileges named by the catalog.
        QueryError::Timeout { .. }
        | QueryError::Cancelled
        | QueryError::Sink(_)
        | QueryError::Refused(_)
        | QueryError::PrivilegedRole { .. }
        | QueryError::UnsupportedType { .. } => (err.to_string(), 0),
    }
}

/// `err` with no text of the database's: the code's sentence and the server's codes.
fn code_only_text(err: &QueryError) -> String {
    let withheld = "; the error text is withheld (egress.errors: code_only)";
    match err {
        QueryError::Server(e) => {
            let codes = ServerError { message: String::new(), position: None, ..(**e).clone() };
            let mut removed = 0;
            let known = Known::new("", &[]).codes_only();
            format!("query failed{}{withheld}", suffix(&codes, &known, &mut removed))
        }
        QueryError::Database { .. } => format!("query failed{withheld}"),
        QueryError::NotReadOnly { .. } => format!("refused: the connection is read-only{withheld}"),
        QueryError::Open { path, .. } => format!("cannot open database {path}{withheld}"),
        QueryError::Param { index, .. } => format!("parameter ${index} does not fit the statement{withheld}"),
        QueryError::Task(_) => format!("internal error{withheld}"),
        QueryError::RoleUnchecked { .. } => {
            format!("refused: this connection's database role could not be checked{withheld}")
        }
        QueryError::Timeout { .. }
        | QueryError::Cancelled
        | QueryError::Sink(_)
        | QueryError::Refused(_)
        | QueryError::PrivilegedRole { .. }
        | QueryError::UnsupportedType { .. } => err.to_string(),
    }
}

/// Longest failure message sent (characters); the rest is cut.
pub const MAX_MESSAGE_CHARS: usize = 2000;

fn cap(text: String) -> String {
    if text.chars().count() <= MAX_MESSAGE_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    cut.push('…');
    cut
}

/// What of `err` leaves the agent under `mode`, for a job whose SQL and parameters `known` holds.
pub fn outgoing(mode: ErrorsMode, err: &QueryError, known: &Known) -> Outgoing {
    let (scrubbed, removed) = scrubbed_text(err, known);
    let logged = cap(scrubbed.clone());
    let decision =
        |detail: String| Some(EgressDecision { action: EgressAction::Masked, rule: "errors".into(), detail });
    match mode {
        ErrorsMode::Full => Outgoing { message: cap(err.to_string()), logged, decision: None },
        ErrorsMode::Scrubbed => Outgoing {
            message: cap(scrubbed),
            logged,
            decision: (removed > 0)
                .then(|| {
                    format!(
                        "{removed} fragment(s) of the database's error message that do not occur in the \
                         job's SQL were removed (egress.errors: scrubbed)"
                    )
                })
                .and_then(decision),
        },
        ErrorsMode::CodeOnly => {
            let message = code_only_text(err);
            let changed = message != err.to_string();
            Outgoing {
                message: cap(message),
                logged,
                decision: changed
                    .then(|| {
                        "the database's error text was withheld; only its code left (egress.errors: code_only)"
                            .to_owned()
                    })
                    .and_then(decision),
            }
        }
    }
}

#[cfg(test)]
mod tests;
