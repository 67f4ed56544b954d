//! SERVICE_IDS: which services this tunnel carries and how the configured mappings
//! (`-s`/`-d`, or `--config-dir`) map onto them, on the first session and on every
//! reconnect (where the set must not change).

use super::{Form, Output, Service, Session, SessionError};
use crate::config::{parse_target, ClientType, Mapping, Mode, Target};
use std::collections::HashMap;

impl Session {
    pub(super) fn configured_ids(&self) -> Vec<String> {
        if self.mappings.is_empty() {
            let mut v: Vec<String> = self.config_dir.iter().map(|(k, _)| k.clone()).collect();
            v.dedup();
            v
        } else {
            self.mappings
                .iter()
                .map(|m| m.service_id().to_string())
                .collect()
        }
    }

    pub(super) fn on_service_ids(&mut self, announced_raw: &[&str], out: &mut Vec<Output>) {
        let mut announced: Vec<String> = Vec::new();
        let mut repeated: Vec<String> = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut seen_twice: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for &id in announced_raw {
            if seen.insert(id) {
                announced.push(id.to_string());
            } else if seen_twice.insert(id) {
                repeated.push(id.to_string());
            }
        }
        if !repeated.is_empty() {
            // One line per message, rate-limited: one SERVICE_IDS can repeat an id
            // thousands of times.
            let shown: Vec<String> = repeated.iter().map(|r| super::printable_id(r)).collect();
            crate::logging::peer_log!(
                crate::logging::Noise::ServiceIds,
                log::Level::Warn,
                "the service announced service id(s) {} more than once; using each once",
                shown.join(",")
            );
        }
        if self.established {
            let current: Vec<String> = self.services.iter().map(|s| s.id.clone()).collect();
            if self.ready {
                if !same_set(&current, &announced) {
                    crate::logging::peer_log!(
                        crate::logging::Noise::ServiceIds,
                        log::Level::Warn,
                        "ignored SERVICE_IDS repeated mid-session with a different set ({})",
                        super::describe_ids(&announced)
                    );
                }
                return;
            }
            // First SERVICE_IDS of a reconnected session: the tunnel must still be the same.
            let unnamed_ok = announced.is_empty() && current.len() == 1 && current[0].is_empty();
            if !same_set(&current, &announced) && !unnamed_ok {
                out.push(Output::Fatal(SessionError::ServiceMismatch {
                    configured: current,
                    announced,
                }));
                return;
            }
            self.ready = true;
            return;
        }
        match self.build_services(&announced) {
            Ok(services) => {
                self.services = services;
                self.established = true;
                self.ready = true;
                if self.mode == Mode::Source {
                    for (i, s) in self.services.iter().enumerate() {
                        out.push(Output::Listen {
                            service: i,
                            service_id: s.id.clone(),
                            port: s.port,
                        });
                    }
                }
            }
            Err(e) => out.push(Output::Fatal(e)),
        }
    }

    /// Applies the reference's rules: a single unnamed mapping adopts the one announced
    /// id; named mappings must equal the announced set; with no mapping the ids are
    /// looked up in --config-dir (a source gets an OS-assigned port for missing ones).
    pub(super) fn build_services(
        &self,
        announced: &[String],
    ) -> Result<Vec<Service>, SessionError> {
        let mismatch = || SessionError::ServiceMismatch {
            configured: self.configured_ids(),
            announced: announced.to_vec(),
        };
        if self.mode == Mode::Source && self.client_type == ClientType::V1 && announced.len() > 1 {
            return Err(SessionError::V1SeveralServices(announced.to_vec()));
        }
        let mut pairs: Vec<(String, u16, Option<Target>)> = Vec::new();
        if self.mappings.is_empty() {
            for id in announced {
                let raw = self
                    .config_dir
                    .iter()
                    .find(|(k, _)| k == id)
                    .map(|(_, v)| v.as_str());
                match (self.mode, raw) {
                    (Mode::Source, raw) => {
                        let port = match raw.map(str::parse::<u16>) {
                            Some(Ok(p)) => p,
                            Some(Err(_)) => {
                                log::warn!("--config-dir: service {id} has no valid port; letting the system choose one");
                                0
                            }
                            None => 0,
                        };
                        pairs.push((id.clone(), port, None));
                    }
                    (Mode::Destination, Some(v)) => {
                        let target = parse_target(v, &self.default_host)
                            .map_err(|_| SessionError::MissingTarget(id.clone()))?;
                        pairs.push((id.clone(), 0, Some(target)));
                    }
                    (Mode::Destination, None) => {
                        return Err(SessionError::MissingTarget(id.clone()));
                    }
                }
            }
            if announced.is_empty() {
                return Err(mismatch());
            }
        } else if self.mappings.len() == 1
            && self.mappings[0].service_id().is_empty()
            && announced.len() <= 1
        {
            let id = announced.first().cloned().unwrap_or_default();
            pairs.push(mapping_parts(&self.mappings[0], id));
        } else {
            let configured = self.configured_ids();
            if !same_set(&configured, announced) {
                return Err(mismatch());
            }
            for m in &self.mappings {
                pairs.push(mapping_parts(m, m.service_id().to_string()));
            }
        }
        let form = match (self.mode, self.client_type) {
            (Mode::Source, ClientType::V1) => Form::V1,
            (Mode::Source, ClientType::V2) => Form::V2,
            _ => Form::V3,
        };
        Ok(pairs
            .into_iter()
            .map(|(id, port, target)| Service {
                form,
                id,
                port,
                target,
                stream_id: 0,
                next_connection_id: 1,
                conns: HashMap::new(),
                unanswered: Default::default(),
            })
            .collect())
    }
}

fn mapping_parts(m: &Mapping, id: String) -> (String, u16, Option<Target>) {
    match m {
        Mapping::Listen { port, .. } => (id, *port, None),
        Mapping::Connect { target, .. } => (id, 0, Some(target.clone())),
    }
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}
