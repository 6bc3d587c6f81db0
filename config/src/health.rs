//! Local health checks for standalone services, and the rise/fall logic that
//! turns probe results into "this node can serve the service".
//!
//! In a cluster, EndpointSlices say which nodes can serve a service. In
//! standalone mode a service declares a probe with annotations:
//!
//! | annotation | meaning | default |
//! |---|---|---|
//! | `meshlb.io/health-check` | `tcp://ADDR:PORT`, `http://ADDR[:PORT]/PATH` or `exec:PROGRAM ARG...` | none (always serving) |
//! | `meshlb.io/health-check-interval` | time between probes (Go duration) | `1s` |
//! | `meshlb.io/health-check-timeout` | probe deadline, at most the interval | `1s` |
//! | `meshlb.io/health-check-rise` | consecutive successes to become healthy | `2` |
//! | `meshlb.io/health-check-fall` | consecutive failures to become unhealthy | `2` |
//!
//! HTTP probes pass on a 2xx or 3xx status; commands pass on exit status 0.
//! This module is pure: the agent runs the probes and feeds results to a
//! [`HealthTracker`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::duration::parse_duration;
use crate::error::Invalid;
use crate::service::Service;

/// Annotation holding the probe.
pub const HEALTH_CHECK_ANNOTATION: &str = "meshlb.io/health-check";

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection to this address succeeds.
    Tcp(SocketAddr),
    /// An HTTP GET answers 2xx or 3xx.
    Http {
        /// Where to connect.
        address: SocketAddr,
        /// Request path, starting with `/`.
        path: String,
    },
    /// A program exits with status 0 (run directly, no shell).
    Command(Vec<String>),
}

/// A service's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The probe.
    pub probe: Probe,
    /// Time between probes.
    pub interval: Duration,
    /// Probe deadline.
    pub timeout: Duration,
    /// Consecutive successes to turn healthy.
    pub rise: u32,
    /// Consecutive failures to turn unhealthy.
    pub fall: u32,
}

fn parse_socket(authority: &str, default_port: Option<u16>) -> Option<SocketAddr> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = if after.is_empty() {
            default_port?
        } else {
            after.strip_prefix(':')?.parse().ok()?
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, port.parse().ok()?),
            Some(_) => (authority, default_port?),
            None => (authority, default_port?),
        }
    };
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().ok()?
    };
    Some(SocketAddr::new(ip, port))
}

/// Why a `meshlb.io/health-check` value is not a probe (phrased to follow
/// the value in a message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// `tcp://` without an address and port.
    #[error("has no IP address and port after tcp://")]
    TcpAddress,
    /// `http://` without an address.
    #[error("has no IP address (or localhost) after http://")]
    HttpAddress,
    /// A path with whitespace.
    #[error("has whitespace in its path")]
    PathWhitespace,
    /// `exec:` without a program.
    #[error("names no program after exec:")]
    NoProgram,
    /// None of the forms.
    #[error("is not a probe")]
    NotAProbe,
}

impl Probe {
    /// Parses the `meshlb.io/health-check` value.
    pub fn parse(text: &str) -> Result<Probe, ProbeError> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("tcp://") {
            return parse_socket(rest.trim_end_matches('/'), None)
                .map(Probe::Tcp)
                .ok_or(ProbeError::TcpAddress);
        }
        if let Some(rest) = text.strip_prefix("http://") {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, "/"),
            };
            let address = parse_socket(authority, Some(80)).ok_or(ProbeError::HttpAddress)?;
            if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ProbeError::PathWhitespace);
            }
            return Ok(Probe::Http {
                address,
                path: path.to_string(),
            });
        }
        if let Some(rest) = text.strip_prefix("exec:") {
            let argv: Vec<String> = rest.split_whitespace().map(String::from).collect();
            if argv.is_empty() {
                return Err(ProbeError::NoProgram);
            }
            return Ok(Probe::Command(argv));
        }
        Err(ProbeError::NotAProbe)
    }
}

impl HealthCheck {
    /// The service's health check, if it declares one.
    pub fn from_service(service: &Service) -> Result<Option<HealthCheck>, Vec<Invalid>> {
        let annotations = &service.metadata.annotations;
        let Some(text) = annotations.get(HEALTH_CHECK_ANNOTATION) else {
            return Ok(None);
        };
        let object = service.object_ref();
        let mut errors = Vec::new();
        let field = |suffix: &str| format!("metadata.annotations[{HEALTH_CHECK_ANNOTATION}{suffix}]");
        let probe = Probe::parse(text)
            .map_err(|problem| {
                errors.push(Invalid::new(
                    &object,
                    field(""),
                    text,
                    problem.to_string(),
                    "tcp://ADDR:PORT, http://ADDR[:PORT]/PATH (ADDR an IP literal or localhost) or exec:PROGRAM ARGS",
                ))
            })
            .ok();
        let mut duration = |suffix: &str, default: Duration| -> Duration {
            let Some(v) = annotations.get(&format!("{HEALTH_CHECK_ANNOTATION}{suffix}")) else {
                return default;
            };
            match parse_duration(v) {
                Ok(d) if d >= Duration::from_millis(10) && d <= Duration::from_secs(3600) => d,
                Ok(_) => {
                    errors.push(Invalid::new(&object, field(suffix), v, "is out of range", "10ms to 1h"));
                    default
                }
                Err(problem) => {
                    errors.push(Invalid::new(
                        &object,
                        field(suffix),
                        v,
                        problem.to_string(),
                        "a duration such as 500ms or 2s",
                    ));
                    default
                }
            }
        };
        let interval = duration("-interval", Duration::from_secs(1));
        let timeout = duration("-timeout", Duration::from_secs(1).min(interval));
        let mut count = |suffix: &str, default: u32| -> u32 {
            let Some(v) = annotations.get(&format!("{HEALTH_CHECK_ANNOTATION}{suffix}")) else {
                return default;
            };
            match v.trim().parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    errors.push(Invalid::new(
                        &object,
                        field(suffix),
                        v,
                        "is not a valid count",
                        "1 to 100",
                    ));
                    default
                }
            }
        };
        let rise = count("-rise", 2);
        let fall = count("-fall", 2);
        if timeout > interval {
            errors.push(Invalid::new(
                &object,
                field("-timeout"),
                format!("{timeout:?}"),
                format!("exceeds the interval {interval:?}"),
                "a timeout no longer than the interval",
            ));
        }
        match probe {
            Some(probe) if errors.is_empty() => Ok(Some(HealthCheck {
                probe,
                interval,
                timeout,
                rise,
                fall,
            })),
            _ => Err(errors),
        }
    }
}

/// Health as the tracker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not yet `rise` successes since start or since turning unhealthy.
    Unhealthy,
    /// At least `rise` successes, and fewer than `fall` failures since.
    Healthy,
}

/// Rise/fall hysteresis over probe results. A node starts unhealthy so it
/// never announces a service before the service has answered.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    rise: u32,
    fall: u32,
    health: Health,
    streak: u32,
}

impl HealthTracker {
    /// A tracker that starts unhealthy.
    pub fn new(rise: u32, fall: u32) -> HealthTracker {
        HealthTracker {
            rise: rise.max(1),
            fall: fall.max(1),
            health: Health::Unhealthy,
            streak: 0,
        }
    }

    /// Current health.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Records one probe result; returns the new health when it changed.
    pub fn record(&mut self, passed: bool) -> Option<Health> {
        let opposing = match self.health {
            Health::Unhealthy => passed,
            Health::Healthy => !passed,
        };
        if !opposing {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = match self.health {
            Health::Unhealthy => self.rise,
            Health::Healthy => self.fall,
        };
        if self.streak < needed {
            return None;
        }
        self.streak = 0;
        self.health = match self.health {
            Health::Unhealthy => Health::Healthy,
            Health::Healthy => Health::Unhealthy,
        };
        Some(self.health)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_forms() {
        assert_eq!(
            Probe::parse("tcp://127.0.0.1:80"),
            Ok(Probe::Tcp("127.0.0.1:80".parse().unwrap()))
        );
        assert_eq!(
            Probe::parse("tcp://[::1]:80"),
            Ok(Probe::Tcp("[::1]:80".parse().unwrap()))
        );
        assert_eq!(
            Probe::parse("http://localhost:8080/healthz"),
            Ok(Probe::Http {
                address: "127.0.0.1:8080".parse().unwrap(),
                path: "/healthz".into()
            })
        );
        assert_eq!(
            Probe::parse("http://[::1]"),
            Ok(Probe::Http {
                address: "[::1]:80".parse().unwrap(),
                path: "/".into()
            })
        );
        assert_eq!(
            Probe::parse("exec:/bin/check --fast"),
            Ok(Probe::Command(vec!["/bin/check".into(), "--fast".into()]))
        );
        for bad in [
            "tcp://127.0.0.1",
            "tcp://example.org:80",
            "http://exa mple/",
            "exec:",
            "ftp://x",
            "http://h/a b",
        ] {
            assert!(Probe::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn annotations_with_defaults_and_errors() {
        let svc: Service = serde_yaml_ng::from_str(
            "metadata: {name: a, annotations: {meshlb.io/health-check: 'tcp://127.0.0.1:80', meshlb.io/health-check-fall: '3'}}",
        )
        .unwrap();
        let check = HealthCheck::from_service(&svc).unwrap().unwrap();
        assert_eq!(
            (check.interval, check.timeout, check.rise, check.fall),
            (Duration::from_secs(1), Duration::from_secs(1), 2, 3)
        );
        let svc: Service = serde_yaml_ng::from_str(
            "metadata: {name: a, annotations: {meshlb.io/health-check: 'tcp://127.0.0.1:80', \
             meshlb.io/health-check-interval: 200ms, meshlb.io/health-check-timeout: 1s, meshlb.io/health-check-rise: '0'}}",
        )
        .unwrap();
        let errors = HealthCheck::from_service(&svc).unwrap_err();
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{all:#?}");
        assert!(
            all[0].contains("health-check-rise") && all[1].contains("exceeds the interval"),
            "{all:#?}"
        );
        let none: Service = serde_yaml_ng::from_str("metadata: {name: a}").unwrap();
        assert_eq!(HealthCheck::from_service(&none), Ok(None));
    }

    #[test]
    fn rise_and_fall_hysteresis() {
        let mut t = HealthTracker::new(2, 3);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None, "a failure resets the rise streak");
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(Health::Healthy));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None, "a success resets the fall streak");
        assert_eq!(
            (t.record(false), t.record(false), t.record(false)),
            (None, None, Some(Health::Unhealthy))
        );
        assert_eq!(t.health(), Health::Unhealthy);
    }
}
