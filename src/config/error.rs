//! The configuration error type and the two helpers every rule uses to build one.
//!
//! A [`ConfigError`] is one line for the user: what (an option, a file line, an
//! environment variable), the problem and the fix. A [`Problem`] is the problem and fix
//! before the caller knows which option they belong to. [`quoted`] decides whether a
//! user's value may appear in a message. Nothing here knows any option, rule or file:
//! this file imports nothing from the crate, so every other file (`cli` included) can
//! use it.

use std::fmt;

/// A configuration error: what (an option, a file line, an environment variable), the
/// problem and the fix. `Display` gives the one line `main` prints after `localproxy: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub(crate) subject: String,
    pub(crate) problem: String,
    pub(crate) fix: String,
}

impl ConfigError {
    pub fn new(
        subject: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            subject: subject.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// Prefixes the subject with where it happened (a file name).
    pub(crate) fn within(mut self, outer: &str) -> ConfigError {
        self.subject = if self.subject.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.subject)
        };
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.subject.is_empty() {
            write!(f, "{}: ", self.subject)?;
        }
        f.write_str(&self.problem)?;
        if !self.fix.is_empty() {
            write!(f, "; {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A problem and its fix, before the caller knows which option it belongs to.
pub(crate) type Problem = (String, String);

/// Builds a [`Problem`].
pub(crate) fn problem(p: impl Into<String>, fix: impl Into<String>) -> Problem {
    (p.into(), fix.into())
}

/// A user's value, quoted for an error message if it is short printable text, else
/// described. Never used for tokens.
pub(crate) fn quoted(s: &str) -> String {
    if s.len() <= 80 && s.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        s.to_string()
    } else {
        "the value".to_string()
    }
}
