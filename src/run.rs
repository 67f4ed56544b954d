//! The main thread's part of a run: [`check`] everything that can be checked before
//! connecting (shared with `--check`, so the two never disagree), build the TLS
//! connector, block the signals, spawn the tunnel and local threads, wait for a signal
//! or for a thread to finish, stop the other thread, and turn the outcome into an exit
//! code.
//!
//! Stopping is bounded: after SIGTERM/SIGINT the threads get [`STOP_TIMEOUT`] to send
//! the close frame and flush local sockets; then the process exits regardless (a thread
//! may still be inside a connect attempt, which websocket.connect_timeout_ms bounds).

use crate::config::{Config, ConfigError, Mapping, Mode};
use crate::link::{Limits, Shared, ToLocal, ToTunnel};
use crate::local::LocalThread;
use crate::sys::{self, SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use crate::token::{self, ClientTokenSource};
use crate::trust;
use crate::tunnel::{connect, proxy, Prepared, TunnelThread};
use crate::Exit;
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the threads may take to stop after a signal.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_millis(1800);

const SIGNALS: [i32; 5] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2];

/// Signals a parent may have set to ignored that stay ignored: `nohup` ignores SIGHUP
/// so logging out does not end the process, a script's `cmd &` ignores SIGINT. Blocking
/// them for `sigwait` would undo that (a blocked signal is queued even when ignored),
/// so they are left out. SIGTERM always stops, SIGUSR2 is the threads' own wake-up.
const KEEP_IGNORED: [i32; 2] = [SIGHUP, SIGINT];

/// The signals this run takes with `sigwait`: [`SIGNALS`] less those that were ignored
/// at start (`ignored` says which).
fn signals_to_take(ignored: impl Fn(i32) -> bool) -> Vec<i32> {
    SIGNALS
        .iter()
        .copied()
        .filter(|&s| !(KEEP_IGNORED.contains(&s) && ignored(s)))
        .collect()
}

/// Why [`check`] runs: the run keeps what the checks produce (and makes the client
/// token file); `--check` only reports and writes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Run,
    Check,
}

/// What the checks made before connecting produced: what the run needs, and the
/// `name = value` lines `--check` adds to the configuration it prints.
pub struct Checked {
    prepared: Prepared,
    /// The trust store the run reads (the sandbox keeps it readable).
    store: trust::Choice,
    report: Vec<(&'static str, String)>,
    /// What the run logs about its set-up once every check has passed.
    notes: Vec<String>,
}

impl Checked {
    /// The lines `--check` prints after the configuration, the verdict last;
    /// `warnings` is how many warnings went to stderr.
    pub fn report(&self, config: &Config, warnings: usize) -> String {
        let mut out = String::new();
        for (k, v) in &self.report {
            out.push_str(&format!("{k} = {v}\n"));
        }
        let warned = match warnings {
            0 => String::new(),
            1 => ", 1 warning on stderr".to_string(),
            n => format!(", {n} warnings on stderr"),
        };
        out.push_str(&format!(
            "check: valid{warned}; would connect to {}:{} as {}\n",
            config.endpoint.host,
            config.endpoint.port,
            config.mode.as_str()
        ));
        out
    }
}

/// Every check the run makes before it connects, so that a set-up error is found by
/// `--check` and, in a run, before the access token is used: root without `--user`,
/// the user, the client token (file), the web proxy variables, the trust store and
/// `--capath`, and whether the source's listen addresses can be bound (a port below
/// 1024 as non-root, an address this machine does not have). A port in use is only a
/// warning: the run retries it, and the process holding it may be about to stop.
/// Warnings found go into `warnings`, for the caller to log in order (after the run's
/// first line).
pub fn check(
    config: &mut Config,
    purpose: Purpose,
    warnings: &mut Vec<String>,
) -> Result<Checked, ConfigError> {
    let mut report = Vec::new();
    if config.require_non_root && config.user.is_none() && sys::is_root() {
        return Err(ConfigError::new(
            "--require-non-root",
            "refusing to run as root",
            "give --user NAME[:GROUP] or start it as another user",
        ));
    }
    let privileges = match &config.user {
        Some(spec) => match sys::lookup_user(spec) {
            Ok(ids) => Some(ids),
            Err(e) => {
                return Err(ConfigError::new(
                    "--user",
                    e.to_string(),
                    "give an existing user (and group)",
                ))
            }
        },
        None => None,
    };
    // What a run logs about its set-up, held back until every check has passed so a
    // refused set-up prints its one line and nothing before it.
    let mut notes: Vec<String> = Vec::new();
    if config.mode == Mode::Source {
        for m in &config.mappings {
            if let Mapping::Listen { port, .. } = m {
                let host = config
                    .bind_address
                    .as_deref()
                    .unwrap_or(&config.settings.default_bind_address);
                if let Some(w) = check_bind(host, *port, config.user.is_some())? {
                    warnings.push(w);
                }
            }
        }
    }
    let env = |k: &str| std::env::var(k).ok();
    let web_proxy = proxy::from_env(&config.endpoint.host, &env).map_err(|e| {
        // Some of these problems name their fix already.
        let fix = if e.contains("; ") {
            ""
        } else {
            "fix or unset the proxy variable"
        };
        ConfigError::new("", e, fix)
    })?;
    report.push((
        "web-proxy",
        web_proxy
            .as_ref()
            .map_or("(none)".to_string(), |p| p.to_string()),
    ));
    let store = trust::choose_here();
    for place in &store.ignored {
        warnings.push(format!(
            "{place} holds no usable CA certificate (a PEM file, or a hashed \
             directory): ignored"
        ));
    }
    notes.push(format!("trust store: {}", store.describe()));
    notes.push(format!("TLS ciphers: {}", tls_cipher_order()));
    report.push(("trust-store", store.describe()));
    report.push(("tls-ciphers", tls_cipher_order().to_string()));
    report.push(("sandbox", crate::sandbox::describe_check(config)));
    let tls = connect::tls_connector(
        Some(&store),
        config.capath.as_deref(),
        config.no_ssl_host_verify,
    )
    .map_err(|e| ConfigError::new("", e, ""))?;
    if let Some(dir) = &config.capath {
        notes.push(format!(
            "-c: {} more CA(s) from {}",
            tls.extra_cas,
            dir.display()
        ));
    }
    if let Some(p) = &web_proxy {
        notes.push(format!("web proxy: {p}"));
    }
    // Last: a run may create --client-token-file, which it should not do for a set-up
    // it then refuses.
    match purpose {
        Purpose::Run => {
            if let Some(n) = client_token_for_run(config)? {
                notes.insert(0, n);
            }
        }
        Purpose::Check => check_client_token_file(config)?,
    }
    Ok(Checked {
        prepared: Prepared {
            tls,
            privileges,
            web_proxy,
        },
        report,
        notes,
        store,
    })
}

/// The client token a run sends: given, read from or made in `--client-token-file`,
/// or random for this process.
/// Returns the line to log about where it came from.
fn client_token_for_run(config: &mut Config) -> Result<Option<String>, ConfigError> {
    let (t, source) = token::client_token(
        config.client_token.as_ref(),
        config.client_token_file.as_deref(),
    )
    .map_err(|e| ConfigError::new("", e, ""))?;
    let note = match source {
        // Why a random one matters (reconnects reuse the access token with it) is in
        // README; the line only says how to keep one across restarts.
        ClientTokenSource::Generated => {
            Some("client token: a random one for this run (keep one: --client-token-file)")
        }
        ClientTokenSource::Stored => Some("client token: made, stored in --client-token-file"),
        ClientTokenSource::File => Some("client token: read from --client-token-file"),
        ClientTokenSource::Given => None,
    };
    config.client_token = Some(t);
    Ok(note.map(str::to_string))
}

/// `--check`'s look at `--client-token-file`: a file that exists must hold a valid
/// token; one that does not must be creatable (its directory exists). Nothing is written.
fn check_client_token_file(config: &Config) -> Result<(), ConfigError> {
    let Some(path) = config.client_token_file.as_deref() else {
        return Ok(());
    };
    if config.client_token.is_some() {
        return Ok(());
    }
    if path.exists() {
        return token::client_token(None, Some(path))
            .map(|_| ())
            .map_err(|e| ConfigError::new("", e, ""));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(ConfigError::new(
            "--client-token-file",
            format!("{} is not a directory", dir.display()),
            "create it, or give a file in an existing directory",
        ));
    }
    Ok(())
}

/// Whether a source can listen on `host:port`, found by binding it for a moment (no
/// name lookup: a name other than `localhost` is only probed for the port's privilege,
/// on 127.0.0.1). `Ok(Some(warning))` for a port in use now.
fn check_bind(host: &str, port: u16, with_user: bool) -> Result<Option<String>, ConfigError> {
    if port == 0 {
        return Ok(None);
    }
    let (ip, probe_only) = match crate::resolve::ip_literal(host) {
        Some(ip) => (ip, false),
        None if host.eq_ignore_ascii_case("localhost") => (IpAddr::from([127, 0, 0, 1]), false),
        None => (IpAddr::from([127, 0, 0, 1]), true),
    };
    let shown = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match std::net::TcpListener::bind(SocketAddr::new(ip, port)) {
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let fix = if port < 1024 && !sys::is_root() {
                "ports below 1024 need root: start it as root with --user NAME (it switches \
                 after binding), or give a port of 1024 or more"
            } else if port < 1024 && with_user {
                "the system refuses it even to root; give a port of 1024 or more"
            } else {
                "give a port this user may bind"
            };
            Err(ConfigError::new(
                "-s",
                format!("cannot listen on {shown}: permission denied"),
                fix,
            ))
        }
        // Only the privilege was probed; the real address is bound later.
        Err(_) if probe_only => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Err(ConfigError::new(
            "-b",
            format!("{host} is not an address of this machine"),
            "give one of its addresses, 127.0.0.1 or 0.0.0.0",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(Some(format!(
            "{shown} is in use now; the run retries it (tcp.connection_retry_count)"
        ))),
        Err(e) => Err(ConfigError::new(
            "-s",
            format!("cannot listen on {shown}: {e}"),
            "free the port or choose another with -s",
        )),
    }
}

/// Runs the proxy until the tunnel ends or a signal stops it, with what [`check`] made.
/// Its first line names the version and mode (syslog on a router needs it), then come
/// `warnings` and what the checks found.
pub fn run(config: Config, checked: Checked, warnings: &[String]) -> Exit {
    log::info!(
        "localproxy {} starting as {}",
        env!("CARGO_PKG_VERSION"),
        config.mode.as_str()
    );
    for w in warnings {
        log::warn!("{w}");
    }
    for n in &checked.notes {
        log::info!("{n}");
    }
    let mut prepared = checked.prepared;
    // A destination binds nothing: drop privileges now. A source drops them once its
    // listeners are bound (the tunnel thread does it).
    if config.mode == Mode::Destination {
        if let Some((uid, gid)) = prepared.privileges.take() {
            if let Err(e) = sys::drop_privileges(uid, gid) {
                log::error!(
                    "cannot switch to --user {}: {e}",
                    config.user.as_deref().unwrap_or("")
                );
                return Exit::Internal;
            }
        }
    }
    let signals = signals_to_take(sys::is_ignored);
    for s in KEEP_IGNORED.iter().filter(|s| !signals.contains(s)) {
        log::info!(
            "{} was ignored at start (nohup?): it stays ignored",
            name(*s)
        );
    }
    if let Err(e) = sys::block_signals(&signals) {
        log::error!("cannot block signals: {e}");
        return Exit::Internal;
    }
    // Everything that needs more than the sandbox allows is done; no thread runs yet.
    crate::sandbox::start(&config, &checked.store, prepared.privileges.is_some());
    // After the sandbox, so the log thread is inside it too (Landlock is per thread).
    crate::logging::start_writer();
    match spawn_and_wait(config, prepared, &signals) {
        Ok(x) => x,
        Err(e) => {
            log::error!("{e}");
            Exit::Internal
        }
    }
}

fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        SIGUSR1 => "SIGUSR1",
        _ => "SIGUSR2",
    }
}

fn spawn_and_wait(config: Config, prepared: Prepared, signals: &[i32]) -> std::io::Result<Exit> {
    let s = &config.settings;
    let limits = Limits {
        // Each local read becomes one DATA message: no larger than either allows.
        read_chunk: s.tcp_read_buffer_size.min(s.max_payload_size),
        to_tunnel_max: s.ws_write_buffer_size.max(s.max_payload_size),
        to_local_max: s.tcp_write_buffer_size.max(s.max_payload_size),
        retry_count: s.tcp_connection_retry_count,
        retry_delay: Duration::from_millis(s.tcp_connection_retry_delay_ms),
    };
    // Two channels into the tunnel thread, one waker: local events (which it stops
    // taking while the WebSocket is backed up) and main's requests (always taken).
    let tunnel_waker = sys::Waker::new()?;
    let (tunnel_tx, tunnel_rx) = sys::channel_with::<ToTunnel>(tunnel_waker.clone());
    let (main_tx, main_rx) = sys::channel_with::<ToTunnel>(tunnel_waker);
    let (local_tx, local_rx) = sys::channel_with::<ToLocal>(sys::Waker::new()?);
    let shared = Arc::new(Shared::default());
    let outcome: Arc<Mutex<Option<Exit>>> = Arc::new(Mutex::new(None));
    let (done_tx, done_rx) = mpsc::channel::<()>();

    let local_thread = LocalThread::new(
        limits.clone(),
        local_rx,
        local_tx.clone(),
        tunnel_tx.clone(),
        shared.clone(),
    );
    let out = outcome.clone();
    let done = done_tx.clone();
    std::thread::Builder::new()
        .name("local".into())
        .spawn(move || {
            if let Err(e) = local_thread.run() {
                log::error!("local sockets failed: {e}");
                finish(&out, Exit::Internal);
            }
            let _ = done.send(());
        })?;

    let tunnel_thread = TunnelThread::new(
        Arc::new(config),
        prepared,
        tunnel_rx,
        main_rx,
        local_tx.clone(),
        shared,
        limits,
    );
    let out = outcome.clone();
    std::thread::Builder::new()
        .name("tunnel".into())
        .spawn(move || {
            let x = tunnel_thread.run();
            finish(&out, x);
            let _ = done_tx.send(());
        })?;

    let exit = loop {
        let sig = sys::wait_signal(signals)?;
        match sig {
            SIGUSR1 => {
                let _ = main_tx.send(ToTunnel::Status);
                crate::sandbox::Probe::from_env().run();
            }
            SIGUSR2 => {
                if let Some(x) = *outcome.lock().unwrap_or_else(|p| p.into_inner()) {
                    break x;
                }
            }
            _ => {
                log::info!(
                    "{} received: closing the tunnel and local connections",
                    name(sig)
                );
                break Exit::Ok;
            }
        }
    };
    let _ = main_tx.send(ToTunnel::Shutdown);
    let _ = local_tx.send(ToLocal::Shutdown);
    let deadline = Instant::now() + STOP_TIMEOUT;
    let mut finished = 0;
    while finished < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => finished += 1,
            Err(_) => break,
        }
    }
    Ok(exit)
}

/// Records a thread's outcome (the first one wins) and wakes the main thread.
fn finish(slot: &Mutex<Option<Exit>>, x: Exit) {
    let mut g = slot.lock().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        *g = Some(x);
    }
    drop(g);
    sys::signal_self(SIGUSR2);
}

/// The cipher order this CPU gets, for the log and `--check`.
pub fn tls_cipher_order() -> &'static str {
    connect::describe_cipher_order()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_hangup_and_interrupt_stay_ignored_and_the_rest_is_taken() {
        assert_eq!(signals_to_take(|_| false), SIGNALS.to_vec());
        assert_eq!(
            signals_to_take(|s| s == SIGHUP),
            vec![SIGTERM, SIGINT, SIGUSR1, SIGUSR2]
        );
        // Ignored SIGTERM or SIGUSR2 are taken anyway: stop must work, USR2 is ours.
        assert_eq!(signals_to_take(|_| true), vec![SIGTERM, SIGUSR1, SIGUSR2]);
    }
}
