//! Strict YAML config loading, kept behind one function so the parser can change.
//!
//! Uses serde-saphyr with `strict_booleans` (only `true`/`false` are booleans, so a
//! `no` meant as a string is not silently a boolean) and its duplicate-key and
//! alias-bomb defences. Structs are expected to carry `deny_unknown_fields`. Every
//! error names the file, line and column, and shows the offending line.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize as _;

/// Messages of fields that refuse a secret start with this; such an error is shown
/// without the offending line, so that the secret is not echoed to a terminal or log.
pub const SECRET_REFUSED: &str = "a plaintext secret is not allowed here";

/// Largest config file read (bytes); a config is a few kilobytes.
pub const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// A config that could not be loaded, with a rendered, located message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (the file error names the path).
    #[error("{source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: crate::fsutil::FileError,
    },
    /// The YAML is invalid or does not fit the schema.
    #[error("{rendered}")]
    Parse {
        /// `file:line:column: message`, followed by the offending line.
        rendered: String,
        /// Line (1-based), when known.
        line: Option<u64>,
    },
    /// A value parsed but fails a semantic check; `field` is the dotted path.
    #[error("{path}: {field}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Dotted field path.
        field: String,
        /// What is expected.
        message: String,
    },
}

/// For sections that may be written empty (`limits:` with every line commented out):
/// a YAML null means "all defaults".
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads and parses `path`.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let shown = path.display().to_string();
    let bytes = crate::fsutil::read_capped_file(path, MAX_CONFIG_LEN)
        .map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ConfigError::Parse { rendered: format!("{shown}: not valid UTF-8"), line: None })?;
    parse_str(&shown, &text)
}

/// Parses YAML text; `source_name` is used in messages (a file name).
pub fn parse_str<T: DeserializeOwned>(source_name: &str, text: &str) -> Result<T, ConfigError> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options::<T>(text, options).map_err(|e| {
        let line = e.location().map(|l| l.line());
        let message = e.to_string();
        if message.contains(SECRET_REFUSED) {
            let at = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
            // Keep the message's first line only: the rest is a snippet of the source.
            let message = message.split_once(SECRET_REFUSED).map(|(_, rest)| rest).unwrap_or_default();
            let message = message.lines().next().unwrap_or_default();
            return ConfigError::Parse { rendered: format!("{source_name}{at}: {SECRET_REFUSED}{message}"), line };
        }
        let rendered = e.render_with_options(serde_saphyr::render_options! { source_name: Some(source_name) });
        // The renderer starts with "error: "; callers add their own prefix.
        let rendered = rendered.strip_prefix("error: ").map(str::to_owned).unwrap_or(rendered);
        // The library's advice to its programmer is not the reader's: a key given twice
        // is an error in the file, to be fixed there.
        let rendered =
            rendered.replace(", set DuplicateKeyPolicy in Options if acceptable", " (a key may appear once)");
        ConfigError::Parse { rendered, line }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        max_rows: u32,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        name: String,
        enabled: bool,
        limits: Inner,
    }

    #[test]
    fn unknown_field_error_names_file_line_and_field() {
        let err = parse_str::<Cfg>("agent.yaml", "name: a\nenabled: true\nlimits:\n  max_rowz: 3\n")
            .expect_err("unknown field");
        let msg = err.to_string();
        assert!(msg.contains("agent.yaml:4:"), "{msg}");
        assert!(msg.contains("max_rowz"), "{msg}");
        assert!(matches!(err, ConfigError::Parse { line: Some(4), .. }), "{msg}");
    }

    #[test]
    fn yes_is_not_a_boolean_and_wrong_types_are_located() {
        let err = parse_str::<Cfg>("a.yaml", "name: a\nenabled: yes\nlimits:\n  max_rows: 3\n").expect_err("yes");
        assert!(err.to_string().contains("a.yaml:2:"), "{err}");
        let err = parse_str::<Cfg>("a.yaml", "name: a\nenabled: true\nlimits:\n  max_rows: -1\n").expect_err("neg");
        assert!(err.to_string().contains("a.yaml:4:"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = parse_str::<Cfg>("a.yaml", "name: a\nname: b\nenabled: true\nlimits:\n  max_rows: 3\n")
            .expect_err("a key twice");
        let text = err.to_string();
        assert!(text.contains("duplicate mapping key: name (a key may appear once)"), "{text}");
        assert!(!text.contains("DuplicateKeyPolicy"), "the library's advice to its programmer: {text}");
    }
}
