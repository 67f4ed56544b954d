//! The `localproxy` binary: parse the command line, answer `--help`, `--version` and
//! `--export-default-settings` before any file is read, load and validate the
//! configuration, start logging, then either print it (`--check`) or run the proxy.
//!
//! Exit codes are decided here and only here, from the one table in [`localproxy::Exit`].
//! Nothing is printed on stdout except what was asked for (help, version, `--check`), and
//! every write ignores a closed pipe: `println!` would panic, and a panic aborts.

use localproxy::cli::{self, Command};
use localproxy::config::{self, ConfigError, Settings};
use localproxy::{logging, Exit};
use std::io::Write;

/// musl's malloc gives 64 KiB blocks back to the kernel on every free: cache them.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: localproxy::sys::CachingAlloc = localproxy::sys::CachingAlloc::new();

fn main() {
    std::process::exit(run().code());
}

fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// One line naming the option, the problem and the fix, then the reference's hint line.
fn usage(e: &ConfigError) -> Exit {
    let _ = writeln!(
        std::io::stderr().lock(),
        "localproxy: {e}\nTry 'localproxy --help' for a list of options."
    );
    Exit::Usage
}

fn run() -> Exit {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            out(&cli::help_text());
            return Exit::Ok;
        }
        Ok(Command::Version) => {
            out(&format!("localproxy {}\n", env!("CARGO_PKG_VERSION")));
            return Exit::Ok;
        }
        Ok(Command::Run(args)) => args,
        Err(e) => return usage(&e),
    };

    if let Some(path) = &args.export_default_settings {
        return match std::fs::write(path, Settings::default().to_json()) {
            Ok(()) => Exit::Ok,
            Err(e) => usage(&ConfigError::new(
                "--export-default-settings",
                format!("cannot write {}: {e}", path.display()),
                "give a path in a writable directory",
            )),
        };
    }

    let env = |name: &str| std::env::var(name).ok();
    let cwd = std::env::current_dir().ok();
    let loaded = match config::load(&args, &env, cwd.as_deref()) {
        Ok(l) => l,
        Err(e) => return usage(&e),
    };

    logging::init(
        loaded.config.verbosity,
        std::env::var("RUST_LOG").ok().as_deref(),
        logging::timestamps_wanted(std::env::var(logging::TIMESTAMPS_ENV).ok().as_deref()),
    );
    for w in &loaded.warnings {
        log::warn!("{w}");
    }

    if args.check {
        let mut text = loaded.config.describe();
        text.push_str(&format!(
            "trust-store = {}\n",
            localproxy::trust::choose_here().describe()
        ));
        text.push_str(&format!(
            "tls-ciphers = {}\n",
            localproxy::run::tls_cipher_order()
        ));
        text.push_str(&format!(
            "sandbox = {}\n",
            localproxy::sandbox::describe_check(&loaded.config)
        ));
        out(&text);
        return Exit::Ok;
    }
    localproxy::run::run(loaded.config)
}
