//! Readiness probes (exec, tcpSocket, httpGet): one task per probed container that applies
//! initialDelay/period/timeout/thresholds and reports readiness transitions to its pod
//! worker.

use std::time::Duration;

use k8s_openapi::api::core::v1::Probe;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// How to reach the container for exec probes.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    /// Host path of the container's main process's pid file.
    pub pid_file: std::path::PathBuf,
    pub env: Vec<(String, String)>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// argv with argv[0] resolved to a host program.
    pub argv: Vec<String>,
}

/// Resolves a named or numeric port against the container's ports.
pub fn port_number(port: &IntOrString, ports: &[(String, i32)]) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(s) => s.parse::<u16>().ok().or_else(|| {
            ports
                .iter()
                .find(|(n, _)| n == s)
                .and_then(|(_, p)| u16::try_from(*p).ok())
        }),
    }
}

async fn run_once(
    probe: &Probe,
    pod_ip: &str,
    ports: &[(String, i32)],
    exec: Option<&ExecTarget>,
) -> bool {
    if let Some(tcp) = &probe.tcp_socket {
        let host = tcp.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let Some(port) = port_number(&tcp.port, ports) else {
            return false;
        };
        return tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .is_ok();
    }
    if let Some(http) = &probe.http_get {
        let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let Some(port) = port_number(&http.port, ports) else {
            return false;
        };
        let Ok(mut s) = tokio::net::TcpStream::connect((host.as_str(), port)).await else {
            return false;
        };
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let mut req = format!(
            "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.37\r\nAccept: */*\r\n"
        );
        for h in http.http_headers.iter().flatten() {
            req.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
        req.push_str("\r\n");
        if s.write_all(req.as_bytes()).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        let Ok(n) = s.read(&mut buf).await else {
            return false;
        };
        let head = String::from_utf8_lossy(&buf[..n]);
        let code: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        return (200..400).contains(&code);
    }
    if let (Some(_), Some(target)) = (&probe.exec, exec) {
        let Some(pid) = std::fs::read_to_string(&target.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return false;
        };
        let mut cmd = tokio::process::Command::new("nsenter");
        cmd.arg("-t").arg(pid.to_string()).arg("-m").arg("-u");
        if let Some(uid) = target.uid {
            cmd.arg("-S").arg(uid.to_string());
        }
        if let Some(gid) = target.gid.or(target.uid.map(|_| 0)) {
            cmd.arg("-G").arg(gid.to_string());
        }
        cmd.arg("--")
            .args(&target.argv)
            .env_clear()
            .envs(target.env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        return matches!(cmd.status().await, Ok(s) if s.success());
    }
    false
}

/// Runs a readiness probe forever, sending `true`/`false` whenever readiness flips
/// (the first result is always sent). Abort the task to stop it.
pub async fn run(
    probe: Probe,
    pod_ip: String,
    ports: Vec<(String, i32)>,
    exec: Option<ExecTarget>,
    tx: mpsc::UnboundedSender<bool>,
) {
    let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    tokio::time::sleep(secs(probe.initial_delay_seconds, 0)).await;
    let period = secs(probe.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = secs(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let (mut ok_run, mut fail_run) = (0, 0);
    let mut ready: Option<bool> = None;
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let ok = tokio::time::timeout(timeout, run_once(&probe, &pod_ip, &ports, exec.as_ref()))
            .await
            .unwrap_or(false);
        if ok {
            ok_run += 1;
            fail_run = 0;
        } else {
            fail_run += 1;
            ok_run = 0;
        }
        let next = if ok_run >= success_threshold {
            Some(true)
        } else if fail_run >= failure_threshold || ready.is_none() && !ok {
            Some(false)
        } else {
            ready
        };
        if next != ready {
            ready = next;
            if tx.send(ready.unwrap_or(false)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_ports_resolve() {
        let ports = vec![("http".to_string(), 8080)];
        assert_eq!(
            port_number(&IntOrString::String("http".into()), &ports),
            Some(8080)
        );
        assert_eq!(
            port_number(&IntOrString::String("81".into()), &ports),
            Some(81)
        );
        assert_eq!(port_number(&IntOrString::Int(9), &ports), Some(9));
        assert_eq!(
            port_number(&IntOrString::String("nope".into()), &ports),
            None
        );
    }
}
