//! Configuration: command-line arguments + `--config` file + environment + settings +
//! `--notification` + `--config-dir` → one validated [`Config`], or one [`ConfigError`]
//! line that names the option (and where its value came from), the problem and the
//! fix, and never contains a token.
//!
//! Read the files in this order; each uses only the ones above it:
//! - `error`: [`ConfigError`], the (problem, fix) pair of a rule, the quoting helper.
//! - `model`: the value types ([`Mode`], [`Secret`], [`Target`], [`Mapping`], …).
//! - `rules`: parse and check one value (port, host, region, token, target, `-s`/`-d`).
//! - `settings`: the `--settings-json` keys, defaults, JSON reader/writer, limits.
//! - `notification`: check one `--notification` document.
//! - `files`: the `--config` and `--config-dir` texts → entries.
//! - `effective`: the validated [`Config`] and the `--check` description.
//! - `precedence`: CLI > `--config` file > environment, each value with its origin.
//! - `validate`: the resolved values → [`Config`] (rules across options).
//! - `from_notification`: the notification as one more origin, and its services check.
//! - `load`: the only file I/O; [`load()`] is what `main` calls.
//!
//! Everything but `load` is pure (the environment is a closure, files are text), so
//! tests inject everything. The command line itself is `crate::cli`, which uses only
//! `error` and `model` from here. No network, no sockets: `--check` runs exactly this
//! and prints the result.

pub(crate) mod error;
pub(crate) mod model;

mod effective;
pub(crate) mod files;
pub(crate) mod from_notification;
mod load;
pub(crate) mod notification;
pub(crate) mod precedence;
mod rules;
mod settings;
mod validate;

pub use effective::Config;
pub use error::ConfigError;
pub use load::{load, Loaded};
pub use model::{ClientType, Endpoint, Mapping, Mode, Secret, Target};
pub use settings::Settings;

pub(crate) use load::read_token_file;
pub(crate) use rules::parse_target;
