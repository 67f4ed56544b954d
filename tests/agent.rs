//! The device-agent path with real parts: Debian's `mosquitto` broker on 127.0.0.1 with TLS
//! and `require_certificate true` (a CA, a server and two client certificates made here
//! with the openssl crate), the project's testbed opening tunnels, notifications published
//! with `mosquitto_pub` as the service does (JSON, QoS 1, on
//! `$aws/things/<thing>/tunnels/notify`), `cross/agent/tunnel-agent.sh` run by BusyBox
//! `sh` starting the destination proxy, and a source proxy carrying 1 MiB echoes.
//!
//! Also `--notification` through the binary itself (exit 2 and one line per bad document,
//! the token masked by `--check`), which needs none of those tools.
//!
//! If `mosquitto`, `mosquitto_pub`, `mosquitto_sub` or `busybox` is missing, a test skips
//! through `common::skip` (a failure under `.ci/run`, which installs them); a broker that
//! does not start is a failure, not a skip. Every wait is on a log line,
//! a file or the testbed, with a timeout; every test runs under a watchdog, and the broker
//! and the agent (its whole process group: mosquitto_sub, wrappers, proxies) are killed at
//! the end whatever happens.

mod common;

use common::*;
use localproxy::sys::{self, SIGKILL, SIGTERM};
use localproxy::testbed::{Mode, Testbed, Tunnel};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Name, X509};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(240);
const THING: &str = "router-1";
const MIB: usize = 1 << 20;

fn topic() -> String {
    format!("$aws/things/{THING}/tunnels/notify")
}

fn agent_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cross/agent/tunnel-agent.sh")
}

// ---- the tools, or a skip ----

struct Tools {
    mosquitto: PathBuf,
    mosquitto_pub: PathBuf,
    busybox: PathBuf,
}

/// Finds an executable in PATH or in the sbin directories (Debian puts the broker in
/// /usr/sbin, which a non-root PATH lacks).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tools, or `None` after [`skip`] said which are missing.
fn tools(test: &str) -> Option<Tools> {
    let names = ["mosquitto", "mosquitto_pub", "mosquitto_sub", "busybox"];
    let found: Vec<Option<PathBuf>> = names.iter().map(|n| find_tool(n)).collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        skip(
            test,
            &format!(
                "{} (apt-get install mosquitto mosquitto-clients busybox)",
                missing.join(", ")
            ),
        );
        return None;
    }
    let mut it = found.into_iter().flatten();
    let mosquitto = it.next()?;
    let mosquitto_pub = it.next()?;
    let _sub = it.next()?;
    Some(Tools {
        mosquitto,
        mosquitto_pub,
        busybox: it.next()?,
    })
}

// ---- process groups: killed at the end of a test, even after a watchdog timeout ----

/// Process groups a test started; [`guarded`] kills them when the test ends.
#[derive(Clone, Default)]
struct Groups(Arc<Mutex<Vec<u32>>>);

impl Groups {
    fn add(&self, pgid: u32) {
        self.0.lock().unwrap().push(pgid);
    }
    fn remove(&self, pgid: u32) {
        self.0.lock().unwrap().retain(|&p| p != pgid);
    }
    fn kill_all(&self) {
        for &p in self.0.lock().unwrap().iter() {
            kill_group(p, SIGKILL);
        }
    }
}

/// kill(2) with a negative pid signals the whole group; `send_signal` passes the value
/// through as a pid_t.
fn kill_group(pgid: u32, sig: i32) {
    let _ = sys::send_signal((pgid as i32).wrapping_neg() as u32, sig);
}

/// The watchdog of tests/common, plus: every process group the body registered is killed
/// afterwards, whether the body passed, failed or hung.
fn guarded<F: FnOnce(Groups) + Send + 'static>(body: F) {
    let groups = Groups::default();
    let g2 = groups.clone();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        watchdog(LIMIT, move || body(g2))
    }));
    groups.kill_all();
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}

// ---- a child's stderr, line by line ----

/// The lines so far, and whether the stream has ended.
type Seen = Mutex<(Vec<String>, bool)>;

#[derive(Clone, Default)]
struct Lines {
    inner: Arc<(Seen, Condvar)>,
}

impl Lines {
    fn collect(tag: &'static str, r: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("LOCALPROXY_TEST_ECHO").is_some() {
                    eprintln!("[{tag}] {line}");
                }
                l2.inner.0.lock().unwrap().0.push(line);
                l2.inner.1.notify_all();
            }
            l2.inner.0.lock().unwrap().1 = true;
            l2.inner.1.notify_all();
        });
        lines
    }

    /// Waits until `n` lines contain `needle`; returns the n-th.
    fn wait_nth(&self, needle: &str, n: usize, what: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let (lock, cv) = &*self.inner;
        let mut g = lock.lock().unwrap();
        loop {
            if let Some(l) = g.0.iter().filter(|l| l.contains(needle)).nth(n - 1) {
                return l.clone();
            }
            let now = Instant::now();
            if now >= deadline || g.1 {
                panic!(
                    "{what}: no line containing {needle:?} (#{n}); log so far:\n{}",
                    g.0.join("\n")
                );
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    fn count(&self, needle: &str) -> usize {
        let g = self.inner.0.lock().unwrap();
        g.0.iter().filter(|l| l.contains(needle)).count()
    }

    fn all(&self) -> Vec<String> {
        self.inner.0.lock().unwrap().0.clone()
    }
}

/// A child in its own process group, its stderr collected.
struct Group {
    child: Child,
    lines: Lines,
    groups: Groups,
}

impl Group {
    fn spawn(mut cmd: Command, tag: &'static str, groups: &Groups) -> Group {
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {tag}: {e}"));
        groups.add(child.id());
        let lines = Lines::collect(tag, child.stderr.take().unwrap());
        Group {
            child,
            lines,
            groups: groups.clone(),
        }
    }

    /// SIGTERM to the whole group, then waits for the leader.
    fn stop(&mut self) {
        kill_group(self.child.id(), SIGTERM);
        let _ = self.child.wait();
        self.groups.remove(self.child.id());
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.child.id(), SIGKILL);
        let _ = self.child.wait();
        self.groups.remove(self.child.id());
    }
}

// ---- certificates for the broker and its clients ----

struct MqttCerts {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    /// The device's identity (CN = the thing name), used by the agent.
    device_cert: PathBuf,
    device_key: PathBuf,
    /// The identity the test publishes with, standing in for the service.
    service_cert: PathBuf,
    service_key: PathBuf,
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn x509_name(cn: &str) -> X509Name {
    let mut n = X509Name::builder().unwrap();
    n.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    n.build()
}

/// A certificate for `key` with common name `cn`, signed by `ca` (self-signed CA if
/// `ca` is `None`).
fn certificate(
    cn: &str,
    key: &PKey<Private>,
    serial: u32,
    ca: Option<(&X509, &PKey<Private>)>,
    server: bool,
) -> X509 {
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap();
    b.set_serial_number(&serial).unwrap();
    let name = x509_name(cn);
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    match ca {
        None => {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        Some((ca_cert, _)) => {
            b.append_extension(BasicConstraints::new().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .key_agreement()
                    .build()
                    .unwrap(),
            )
            .unwrap();
            let eku = if server {
                ExtendedKeyUsage::new().server_auth().build().unwrap()
            } else {
                ExtendedKeyUsage::new().client_auth().build().unwrap()
            };
            b.append_extension(eku).unwrap();
            if server {
                let san = SubjectAlternativeName::new()
                    .dns("localhost")
                    .ip("127.0.0.1")
                    .build(&b.x509v3_context(Some(ca_cert), None))
                    .unwrap();
                b.append_extension(san).unwrap();
            }
        }
    }
    let signer = ca.map_or(key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

fn make_certs(dir: &Path) -> MqttCerts {
    let dir = dir.join("mqtt");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, bytes: Vec<u8>| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let ca_key = ec_key();
    let ca = certificate("mqtt test CA", &ca_key, 1, None, false);
    let leaf = |cn: &str, serial: u32, server: bool, stem: &str| {
        let key = ec_key();
        let cert = certificate(cn, &key, serial, Some((&ca, &ca_key)), server);
        (
            write(&format!("{stem}.pem"), cert.to_pem().unwrap()),
            write(
                &format!("{stem}.key"),
                key.private_key_to_pem_pkcs8().unwrap(),
            ),
        )
    };
    let (server_cert, server_key) = leaf("localhost", 2, true, "server");
    let (device_cert, device_key) = leaf(THING, 3, false, "device");
    let (service_cert, service_key) = leaf("tunneling-service", 4, false, "service");
    MqttCerts {
        ca: write("ca.pem", ca.to_pem().unwrap()),
        server_cert,
        server_key,
        device_cert,
        device_key,
        service_cert,
        service_key,
    }
}

// ---- the broker ----

struct Broker {
    proc: Group,
}

/// Starts mosquitto on 127.0.0.1:`port` with TLS, client certificates required (the CN
/// is the user name, as AWS IoT identifies a thing by its certificate), no persistence,
/// and subscriptions logged so the test can wait for them.
fn start_broker(t: &Tools, dir: &Path, certs: &MqttCerts, port: u16, groups: &Groups) -> Broker {
    let conf = dir.join("mosquitto.conf");
    let p = |p: &Path| p.display().to_string();
    let text = format!(
        "# written by tests/agent.rs\n\
         per_listener_settings false\n\
         listener {port} 127.0.0.1\n\
         cafile {}\n\
         certfile {}\n\
         keyfile {}\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         persistence false\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         log_type subscribe\n\
         log_timestamp false\n",
        p(&certs.ca),
        p(&certs.server_cert),
        p(&certs.server_key),
    );
    // Started as root, mosquitto would switch to its own user, who cannot read the keys
    // in the test's directory.
    let text = if is_root() {
        format!("{text}user root\n")
    } else {
        text
    };
    std::fs::write(&conf, text).unwrap();
    let mut cmd = Command::new(&t.mosquitto);
    cmd.arg("-c").arg(&conf);
    let proc = Group::spawn(cmd, "mosquitto", groups);
    proc.lines.wait_nth(" running", 1, "mosquitto");
    Broker { proc }
}

impl Broker {
    /// Waits until the broker has seen `n` subscriptions to the thing's notify topic.
    fn wait_subscribed(&self, n: usize) {
        self.proc
            .lines
            .wait_nth(&format!(" {}", topic()), n, "mosquitto");
    }
}

/// The notification document the service publishes for a destination.
fn notification(token: &str, region: &str, services: &[&str]) -> String {
    let list: Vec<String> = services.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "{{\"clientAccessToken\":\"{token}\",\"clientMode\":\"destination\",\"region\":\"{region}\",\"services\":[{}]}}",
        list.join(",")
    )
}

/// Publishes `doc` on the notify topic with QoS 1, as the service does. The document goes
/// through stdin, so not even the test puts a token on a command line.
fn publish(t: &Tools, certs: &MqttCerts, port: u16, doc: &str) {
    let mut child = Command::new(&t.mosquitto_pub)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-i", "tunneling-service", "-q", "1", "-t", &topic(), "-s"])
        .arg("--cafile")
        .arg(&certs.ca)
        .arg("--cert")
        .arg(&certs.service_cert)
        .arg("--key")
        .arg(&certs.service_key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mosquitto_pub");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(doc.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "mosquitto_pub failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- the agent ----

struct Agent {
    proc: Group,
}

struct AgentSetup<'a> {
    tools: &'a Tools,
    certs: &'a MqttCerts,
    dir: &'a Path,
    tb: &'a Testbed,
    broker_port: u16,
    echo_port: u16,
    proxy_user: Option<&'a str>,
}

fn start_agent(s: &AgentSetup<'_>, groups: &Groups) -> Agent {
    let p = |p: &Path| p.display().to_string();
    let settings = fast_settings(s.dir, &[]);
    let conf = s.dir.join("tunnel-agent.conf");
    let text = format!(
        "# written by tests/agent.rs\n\
         THING_NAME={THING}\n\
         MQTT_HOST=127.0.0.1\n\
         MQTT_PORT={}\n\
         CA_FILE={}\n\
         CERT_FILE={}\n\
         KEY_FILE={}\n\
         SERVICES=SSH={}\n\
         LOCALPROXY={}\n\
         PROXY_USER={}\n\
         PROXY_ARGS=\"-e {} -c {} --settings-json {}\"\n\
         RUN_DIR={}\n\
         LOG=stderr\n\
         BACKOFF_MAX=2\n\
         STOP_TIMEOUT=10\n",
        s.broker_port,
        p(&s.certs.ca),
        p(&s.certs.device_cert),
        p(&s.certs.device_key),
        s.echo_port,
        env!("CARGO_BIN_EXE_localproxy"),
        s.proxy_user.unwrap_or(""),
        s.tb.endpoint(),
        p(&s.tb.ca_dir()),
        p(&settings),
        p(&s.dir.join("run")),
    );
    std::fs::write(&conf, text).unwrap();
    let mut cmd = Command::new(&s.tools.busybox);
    cmd.arg("sh").arg(agent_script()).arg(&conf);
    // The agent must not inherit a token from the test's environment.
    cmd.env_remove("AWSIOT_TUNNEL_ACCESS_TOKEN");
    let proc = Group::spawn(cmd, "agent", groups);
    proc.lines
        .wait_nth("waiting for tunnel notifications", 1, "agent");
    Agent { proc }
}

impl Agent {
    fn wait(&self, needle: &str, n: usize) -> String {
        self.proc.lines.wait_nth(needle, n, "agent")
    }

    /// The pid in the n-th "localproxy started (pid P)" line.
    fn started_pid(&self, n: usize) -> u32 {
        let line = self.wait("localproxy started (pid ", n);
        let rest = line.split("(pid ").nth(1).unwrap();
        rest.split(')').next().unwrap().parse().unwrap()
    }

    fn assert_no_token(&self, tokens: &[&str]) {
        for line in self.proc.lines.all() {
            for t in tokens {
                assert!(!line.contains(t), "a token reached the log: {line}");
            }
        }
    }
}

/// A source proxy for `t`, listening on a free port; returns it with the port.
fn source(tb: &Testbed, t: &Tunnel, dir: &Path) -> (Proxy, u16) {
    let port = free_port();
    let settings = fast_settings(dir, &[]);
    let ca = tb.ca_dir();
    let args = [
        "-e",
        &tb.endpoint(),
        "-c",
        ca.to_str().unwrap(),
        "--settings-json",
        settings.to_str().unwrap(),
        "-s",
        &port.to_string(),
        "-b",
        "127.0.0.1",
    ];
    let p = Proxy::start(&args, &t.source_token);
    p.wait_line("listening on");
    (p, port)
}

/// Publishes the notification for `t` and measures until a 1 MiB echo went through a
/// source proxy already waiting. Returns (publish → destination connected, publish → echo
/// complete).
fn cycle(
    s: &AgentSetup<'_>,
    t: &Tunnel,
    src_port: u16,
    seed: u64,
) -> (Duration, Duration, std::net::TcpStream) {
    let start = Instant::now();
    publish(
        s.tools,
        s.certs,
        s.broker_port,
        &notification(&t.destination_token, "eu-west-1", &["SSH"]),
    );
    assert!(
        s.tb.wait_connected(t, Mode::Destination, WAIT),
        "the destination of tunnel {} never connected",
        t.id
    );
    let connected = start.elapsed();
    let conn = echo_check(src_port, &pattern(MIB, seed));
    (connected, start.elapsed(), conn)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn uid_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn nobody_uid() -> Option<u32> {
    let out = Command::new("id").args(["-u", "nobody"]).output().ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

#[test]
fn a_notification_starts_the_destination_and_the_next_one_replaces_it() {
    const TEST: &str = "a_notification_starts_the_destination_and_the_next_one_replaces_it";
    let Some(tools) = tools(TEST) else { return };
    // As root, the proxy runs as nobody, as a device would run it.
    if is_root() && nobody_uid().is_none() {
        skip(
            TEST,
            "a user named nobody (as root, the agent runs the proxy as nobody)",
        );
        return;
    }
    guarded(move |groups| {
        let dir = temp_dir("agent-cycle");
        let certs = make_certs(&dir);
        let tb = Testbed::start(&dir).expect("start the testbed");
        let broker_port = free_port();
        let _broker = start_broker(&tools, &dir, &certs, broker_port, &groups);
        let echo = echo_server();
        let user = is_root().then_some("nobody");
        let setup = AgentSetup {
            tools: &tools,
            certs: &certs,
            dir: &dir,
            tb: &tb,
            broker_port,
            echo_port: echo.port,
            proxy_user: user,
        };
        let agent = start_agent(&setup, &groups);
        _broker.wait_subscribed(1);

        // First tunnel: publish → destination up → 1 MiB through a waiting source.
        let t1 = tb.open_tunnel(&["SSH"]);
        let (src1, port1) = source(&tb, &t1, &dir);
        let (up, done, conn1) = cycle(&setup, &t1, port1, 1);
        println!(
            "cycle 1: publish -> destination connected {}, -> 1 MiB echoed {}",
            ms(up),
            ms(done)
        );
        let pid1 = agent.started_pid(1);
        assert!(
            tb.client_token_seen(&t1, Mode::Destination),
            "the agent gives each proxy a client token"
        );
        if user.is_some() {
            assert_eq!(uid_of(pid1), nobody_uid(), "the proxy runs as PROXY_USER");
        }
        // The notification is readable by the proxy's user only.
        let doc = dir.join("run/notification.1.json");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&doc).unwrap().permissions(),
        );
        assert_eq!(mode & 0o077, 0, "notification file mode {mode:o}");

        // A malformed notification: one log line, the tunnel stays up, the agent goes on.
        _broker.wait_subscribed(2);
        publish(&tools, &certs, broker_port, "{\"clientAccessToken\": 42, ");
        let line = agent.wait("rejected:", 1);
        assert!(
            line.contains("notification 2 rejected: --notification "),
            "{line}"
        );
        assert!(line.contains("not valid JSON"), "{line}");
        _broker.wait_subscribed(3);
        publish(
            &tools,
            &certs,
            broker_port,
            &notification("SOURCETOKEN", "eu-west-1", &["SSH"]).replace("destination", "source"),
        );
        let line = agent.wait("rejected:", 2);
        assert!(line.contains("clientMode: is \"source\""), "{line}");
        assert_eq!(agent.proc.lines.count("rejected:"), 2);
        assert_eq!(agent.proc.lines.count("stopping localproxy"), 0);
        echo_on(&conn1, &pattern(4096, 2));

        // Second tunnel: the first proxy is replaced, the new tunnel carries data.
        _broker.wait_subscribed(4);
        let t2 = tb.open_tunnel(&["SSH"]);
        let (src2, port2) = source(&tb, &t2, &dir);
        let (up, done, conn2) = cycle(&setup, &t2, port2, 3);
        println!(
            "cycle 2 (replacing a running proxy): publish -> destination connected {}, -> 1 MiB echoed {}",
            ms(up),
            ms(done)
        );
        let stopping = agent.wait("stopping localproxy", 1);
        assert!(stopping.contains(&format!("(pid {pid1})")), "{stopping}");
        let exited = agent.wait(&format!("(pid {pid1}) for notification 1 exited"), 1);
        assert!(exited.contains("code 0"), "{exited}");
        assert!(tb.wait_disconnected(&t1, Mode::Destination, WAIT));
        assert_ne!(agent.started_pid(2), pid1);
        assert!(
            !doc.exists(),
            "the old notification is removed with its proxy"
        );
        assert_eq!(echo.accepted.load(std::sync::atomic::Ordering::SeqCst), 2);

        agent.assert_no_token(&[&t1.destination_token, &t2.destination_token]);
        drop((conn1, conn2, src1, src2, agent));
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn the_agent_resubscribes_after_broker_errors_and_restarts() {
    let Some(tools) = tools("the_agent_resubscribes_after_broker_errors_and_restarts") else {
        return;
    };
    guarded(move |groups| {
        let dir = temp_dir("agent-broker");
        let certs = make_certs(&dir);
        let tb = Testbed::start(&dir).expect("start the testbed");
        let broker_port = free_port();
        let echo = echo_server();
        let setup = AgentSetup {
            tools: &tools,
            certs: &certs,
            dir: &dir,
            tb: &tb,
            broker_port,
            echo_port: echo.port,
            proxy_user: None,
        };
        // No broker yet: mosquitto_sub fails and the agent backs off and retries.
        let agent = start_agent(&setup, &groups);
        let line = agent.wait("subscription ended with code", 1);
        assert!(line.contains("subscribing again in 1 s"), "{line}");
        agent.wait("subscribing again in 2 s", 1);
        let mut broker = start_broker(&tools, &dir, &certs, broker_port, &groups);
        broker.wait_subscribed(1);
        let t1 = tb.open_tunnel(&["SSH"]);
        let (_src1, port1) = source(&tb, &t1, &dir);
        let (_, done, _c1) = cycle(&setup, &t1, port1, 10);
        println!(
            "after a late broker start: publish -> 1 MiB echoed {}",
            ms(done)
        );

        // The broker restarts (its sessions are gone): the agent subscribes again.
        broker.wait_subscribed(2);
        broker.proc.stop();
        drop(broker);
        let broker = start_broker(&tools, &dir, &certs, broker_port, &groups);
        broker.wait_subscribed(1);
        let t2 = tb.open_tunnel(&["SSH"]);
        let (_src2, port2) = source(&tb, &t2, &dir);
        let (_, done, _c2) = cycle(&setup, &t2, port2, 11);
        println!(
            "after a broker restart: publish -> 1 MiB echoed {}",
            ms(done)
        );
        agent.wait("stopping localproxy", 1);
        assert!(tb.wait_disconnected(&t1, Mode::Destination, WAIT));
        agent.assert_no_token(&[&t1.destination_token, &t2.destination_token]);
        let _ = std::fs::remove_dir_all(&dir);
    });
}

// ---- --notification through the binary, no MQTT involved ----

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_localproxy"))
        .args(args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    // A refused document is not read to the end: ignore the broken pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn notification_option_through_the_binary() {
    watchdog(Duration::from_secs(60), || {
        let token = "AQGAAXhSECRETTOKEN0123456789abcdef";
        let good = notification(token, "eu-west-1", &["SSH"]);
        // --check shows the effective configuration with the token masked.
        let (code, out, err) = run_with_stdin(
            &["--notification", "-", "-d", "SSH=22", "--check"],
            good.as_bytes(),
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("mode = destination\n"), "{out}");
        assert!(out.contains(&format!("access-token = *** ({} chars)\n", token.len())));
        assert!(out.contains("proxy-endpoint = data.tunneling.iot.eu-west-1.amazonaws.com:443\n"));
        assert!(
            out.contains("destination-app = SSH=127.0.0.1:22\n"),
            "{out}"
        );
        assert!(!out.contains("SECRET") && !err.contains("SECRET"));
        // -e overrides the region; a target for an unannounced service is a warning.
        let (code, out, err) = run_with_stdin(
            &[
                "--notification",
                "-",
                "-d",
                "SSH=22,WEB=80",
                "-e",
                "localhost:9",
                "--check",
            ],
            good.as_bytes(),
        );
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("proxy-endpoint = localhost:9\n"), "{out}");
        assert!(err.contains("WEB is not a service of this tunnel"), "{err}");

        // Each bad input: exit 2, one line naming the problem (plus the help hint).
        let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(70_000));
        let cases: Vec<(Vec<&str>, String, &str)> = vec![
            (vec!["-d", "22"], "not json".into(), "not valid JSON"),
            (
                vec!["-d", "22"],
                "[1]".into(),
                "the top level is not a JSON object",
            ),
            (vec!["-d", "22"], "".into(), "is empty"),
            (vec!["-d", "22"], big, "is larger than 64 KiB"),
            (
                vec!["-d", "22"],
                good.replace("destination", "source"),
                "clientMode: is \"source\"",
            ),
            (
                vec!["-d", "SSH=22"],
                notification(token, "eu-west-1", &["SSH", "HTTP"]),
                "the tunnel's service HTTP has no target",
            ),
            (
                vec!["-s", "5555"],
                good.clone(),
                "a listen port is a source option",
            ),
        ];
        for (extra, doc, want) in cases {
            let mut args = vec!["--notification", "-"];
            args.extend(extra);
            let (code, _, err) = run_with_stdin(&args, doc.as_bytes());
            assert_eq!(code, 2, "{want}: {err}");
            let lines: Vec<&str> = err.lines().collect();
            assert_eq!(lines.len(), 2, "{err}");
            assert!(
                lines[0].starts_with("localproxy: ") && lines[0].contains("--notification (stdin)"),
                "{err}"
            );
            assert!(lines[0].contains(want), "want {want:?}: {err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
        let (code, _, err) =
            run_with_stdin(&["--notification", "/nonexistent/n.json", "-d", "22"], b"");
        assert_eq!(code, 2);
        assert!(
            err.starts_with("localproxy: --notification /nonexistent/n.json: cannot be read"),
            "{err}"
        );
    });
}
