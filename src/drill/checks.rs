//! Evaluating drill checks against restored data: SQL values, row counts against the
//! backup's metadata, the newest business timestamp (freshness), files and their
//! checksums, and HTTP answers. The comparisons are pure; the functions that read a
//! database, a volume or a URL take what they read through arguments or small traits, so
//! every verdict rule is a table test. No Kubernetes here: the check mover
//! (`lifeboat mover check ...`) calls these inside the sandbox and reports the [`Outcome`].
//!
//! Verdicts: `Passed` (the data is as expected), `Failed` (the data is wrong: the observed
//! value says how), `Error` (the check could not run: bad query, unreachable service).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;
use sha2::{Digest, Sha256};

use super::expect;
use crate::crd::dr_drill::{CheckVerdict, Expectation};
use crate::db::DatabaseAdapter;

/// Longest observed/expected/message text kept in a result: several of them must fit in
/// a 4 KiB termination message together.
pub const MAX_TEXT: usize = 700;

/// What a check found.
#[skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub verdict: CheckVerdict,
    pub observed: Option<String>,
    pub expected: Option<String>,
    pub message: Option<String>,
    /// Freshness checks: the newest business timestamp, RFC 3339.
    pub newest: Option<String>,
}

impl Outcome {
    fn new(verdict: CheckVerdict, observed: Option<String>, expected: Option<String>) -> Self {
        Outcome {
            verdict,
            observed: observed.map(|o| summarise(&o, MAX_TEXT)),
            expected: expected.map(|e| summarise(&e, MAX_TEXT)),
            message: None,
            newest: None,
        }
    }

    /// The check could not run.
    pub fn error(message: impl Into<String>) -> Self {
        Outcome {
            verdict: CheckVerdict::Error,
            observed: None,
            expected: None,
            message: Some(summarise(&message.into(), MAX_TEXT)),
            newest: None,
        }
    }

    fn with_message(mut self, m: impl Into<String>) -> Self {
        self.message = Some(summarise(&m.into(), MAX_TEXT));
        self
    }
}

/// Shortens `s` to at most `max` bytes (on a character boundary), saying how much was left
/// out, so long values stay readable and results stay small.
pub fn summarise(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let note = format!("… ({} bytes in all)", s.len());
    let mut cut = max.saturating_sub(note.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{note}", &s[..cut])
}

/// A query's value against an expectation.
pub fn sql_value(
    adapter: &dyn DatabaseAdapter,
    database: &str,
    query: &str,
    expectation: &Expectation,
) -> Outcome {
    match adapter.query_value(database, query) {
        Err(e) => Outcome::error(format!("the query failed: {e}")),
        Ok(value) => judge_value(&value, expectation),
    }
}

/// The verdict of one observed value.
pub fn judge_value(value: &str, expectation: &Expectation) -> Outcome {
    let expected = expect::describe(expectation);
    match expect::meets(value, expectation) {
        Err(e) => Outcome::error(format!("invalid expectation: {e}")),
        Ok(true) => Outcome::new(CheckVerdict::Passed, Some(value.into()), Some(expected)),
        Ok(false) => Outcome::new(CheckVerdict::Failed, Some(value.into()), Some(expected)),
    }
}

/// Row counts per database and table.
pub type Counts = BTreeMap<String, BTreeMap<String, u64>>;

/// Compares the restored row counts with those recorded when the backup was taken. Every
/// table of the backup must be there with the same count, and no other table.
pub fn compare_counts(backup: &Counts, restored: &Counts) -> Outcome {
    let tables: usize = backup.values().map(BTreeMap::len).sum();
    let rows: u64 = backup.values().flat_map(|t| t.values()).sum();
    let expected = format!("the row counts recorded at backup time ({tables} tables, {rows} rows)");
    let mut problems = Vec::new();
    let several = backup.len() > 1;
    let name = |db: &str, t: &str| {
        if several {
            format!("{db}.{t}")
        } else {
            t.to_string()
        }
    };
    for (db, want) in backup {
        let have = restored.get(db);
        for (table, n) in want {
            match have.and_then(|h| h.get(table)) {
                Some(m) if m == n => {}
                Some(m) => problems.push(format!("{} {m} rows (backup {n})", name(db, table))),
                None => problems.push(format!("{} missing (backup {n} rows)", name(db, table))),
            }
        }
        for (table, m) in have.into_iter().flatten() {
            if !want.contains_key(table) {
                problems.push(format!("{} {m} rows, not in the backup", name(db, table)));
            }
        }
    }
    if problems.is_empty() {
        return Outcome::new(
            CheckVerdict::Passed,
            Some(format!(
                "{rows} rows in {tables} tables, every table as at backup time"
            )),
            Some(expected),
        );
    }
    let n = problems.len();
    let shown: Vec<&String> = problems.iter().take(8).collect();
    let more = if n > shown.len() {
        format!("; and {} more", n - shown.len())
    } else {
        String::new()
    };
    Outcome::new(
        CheckVerdict::Failed,
        Some(format!(
            "{n} of {} tables differ: {}{more}",
            tables.max(n),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Some(expected),
    )
}

/// Reads a business timestamp as databases print them: RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]`
/// with an offset (`+00`, `+02:00`) or without one (read as UTC), or Unix seconds.
pub fn parse_timestamp(s: &str) -> Result<(Timestamp, bool), String> {
    let t = s.trim();
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok((ts, true));
    }
    // PostgreSQL prints `+00` (hours only); jiff wants `+00:00`.
    if let Some(pos) = t.rfind(['+', '-']).filter(|&p| p > 10) {
        let (head, off) = t.split_at(pos);
        if off.len() == 3 && off[1..].chars().all(|c| c.is_ascii_digit()) {
            let fixed = format!("{head}{off}:00");
            if let Ok(ts) = fixed.parse::<Timestamp>() {
                return Ok((ts, true));
            }
        }
    }
    if let Ok(dt) = t.parse::<jiff::civil::DateTime>()
        && let Ok(z) = dt.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok((z.timestamp(), false));
    }
    if let Ok(secs) = t.parse::<i64>()
        && let Ok(ts) = Timestamp::from_second(secs)
    {
        return Ok((ts, true));
    }
    Err(format!("{:?} is not a timestamp", summarise(t, 80)))
}

/// The newest business timestamp of the restored data. An empty answer (`NULL`: no rows)
/// fails the check: the data the application needs is not there.
pub fn freshness_value(value: &str) -> Outcome {
    let v = value.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("null") {
        return Outcome::new(
            CheckVerdict::Failed,
            Some("no timestamp (the query found no rows)".into()),
            Some("the newest business timestamp".into()),
        );
    }
    match parse_timestamp(v) {
        Err(e) => Outcome::error(format!("the query's value cannot be read as a time: {e}")),
        Ok((ts, had_offset)) => {
            let mut o = Outcome::new(
                CheckVerdict::Passed,
                Some(ts.to_string()),
                Some("the newest business timestamp".into()),
            );
            o.newest = Some(ts.to_string());
            if !had_offset {
                o = o.with_message("the value had no UTC offset and was read as UTC");
            }
            o
        }
    }
}

/// Runs a freshness query.
pub fn freshness(adapter: &dyn DatabaseAdapter, database: &str, query: &str) -> Outcome {
    match adapter.query_value(database, query) {
        Err(e) => Outcome::error(format!("the query failed: {e}")),
        Ok(v) => freshness_value(&v),
    }
}

/// A path a files check names: relative, without `..`.
pub fn check_relative(path: &str) -> Result<&Path, String> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if ok {
        Ok(p)
    } else {
        Err(format!(
            "{path:?} must be relative to the volume root and must not contain `..`"
        ))
    }
}

/// SHA-256 of everything `r` yields, hex.
pub fn sha256_hex(mut r: impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// A file whose content is verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    pub path: String,
    /// Expected SHA-256; `None`: the content stored in the snapshot.
    pub sha256: Option<String>,
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// Checks files of a restored volume mounted at `root`: `exist` must exist, `digests` must
/// hash as given or as their copy in the snapshot (`from_snapshot(path)` gives that hash).
pub fn files(
    root: &Path,
    exist: &[String],
    digests: &[FileDigest],
    from_snapshot: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Outcome {
    let mut problems = Vec::new();
    for p in exist.iter().chain(digests.iter().map(|d| &d.path)) {
        if let Err(e) = check_relative(p) {
            return Outcome::error(e);
        }
    }
    for p in exist {
        if std::fs::symlink_metadata(root.join(p)).is_err() {
            problems.push(format!("{p} is missing"));
        }
    }
    let mut matched = 0;
    for d in digests {
        let file = root.join(&d.path);
        let have = match std::fs::File::open(&file).and_then(sha256_hex) {
            Ok(h) => h,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("{} is missing", d.path));
                continue;
            }
            Err(e) => return Outcome::error(format!("reading {}: {e}", d.path)),
        };
        let (want, source) = match &d.sha256 {
            Some(s) => (s.trim().to_ascii_lowercase(), "expected"),
            None => match from_snapshot(&d.path) {
                Ok(h) => (h, "snapshot"),
                Err(e) => {
                    return Outcome::error(format!("reading {} from the snapshot: {e}", d.path));
                }
            },
        };
        if have == want {
            matched += 1;
        } else {
            problems.push(format!(
                "{} has sha256 {}… ({source}: {}…)",
                d.path,
                short(&have),
                short(&want)
            ));
        }
    }
    let expected = match (exist.len(), digests.len()) {
        (e, 0) => format!("{e} path(s) exist"),
        (0, d) => format!("{d} file(s) with the expected content"),
        (e, d) => format!("{e} path(s) exist, {d} file(s) with the expected content"),
    };
    if problems.is_empty() {
        let observed = match (exist.len(), digests.len()) {
            (e, 0) => format!("all {e} path(s) exist"),
            (0, _) => format!("all {matched} checksum(s) match"),
            (e, _) => format!("all {e} path(s) exist, all {matched} checksum(s) match"),
        };
        Outcome::new(CheckVerdict::Passed, Some(observed), Some(expected))
    } else {
        Outcome::new(
            CheckVerdict::Failed,
            Some(problems.join("; ")),
            Some(expected),
        )
    }
}

/// Calls `url` (http only: inside a sandbox there is no certificate to trust) and
/// compares the status.
pub async fn http(url: &str, expect_status: u16, timeout: Duration) -> Outcome {
    let expected = format!("HTTP {expect_status}");
    match tokio::time::timeout(timeout, http_status(url)).await {
        Err(_) => Outcome::error(format!(
            "no answer from {url} within {}",
            crate::schedule::duration::format(timeout)
        )),
        Ok(Err(e)) => Outcome::error(e),
        Ok(Ok(status)) => {
            let verdict = if status == expect_status {
                CheckVerdict::Passed
            } else {
                CheckVerdict::Failed
            };
            Outcome::new(verdict, Some(format!("HTTP {status}")), Some(expected))
        }
    }
}

/// Splits `http://host[:port][/path]`.
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "URL {url:?} must start with http:// (a sandbox has no certificates to trust)"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("URL {url:?} has no host"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    Ok((host, port, path))
}

async fn http_status(url: &str) -> Result<u16, String> {
    use http_body_util::Empty;
    let (host, port, path) = parse_http_url(url)?;
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake with {host}:{port}: {e}"))?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("{host}:{port}"))
        .header(hyper::header::USER_AGENT, "lifeboat-drill-check")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("building the request: {e}"))?;
    let res = sender
        .send_request(req)
        .await
        .map_err(|e| format!("calling {url}: {e}"));
    driver.abort();
    Ok(res?.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn counts(v: &[(&str, &[(&str, u64)])]) -> Counts {
        v.iter()
            .map(|(db, t)| {
                (
                    db.to_string(),
                    t.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn row_counts_must_match_the_backup_exactly() {
        let backup = counts(&[("shop", &[("public.orders", 500), ("public.items", 12)])]);
        let same = compare_counts(&backup, &backup.clone());
        assert_eq!(same.verdict, CheckVerdict::Passed);
        assert_eq!(
            same.observed.as_deref(),
            Some("512 rows in 2 tables, every table as at backup time")
        );

        let emptied = counts(&[("shop", &[("public.orders", 0), ("public.items", 12)])]);
        let o = compare_counts(&backup, &emptied);
        assert_eq!(o.verdict, CheckVerdict::Failed);
        assert_eq!(
            o.observed.as_deref(),
            Some("1 of 2 tables differ: public.orders 0 rows (backup 500)")
        );

        let missing = counts(&[("shop", &[("public.items", 12), ("public.extra", 1)])]);
        let o = compare_counts(&backup, &missing);
        let obs = o.observed.unwrap();
        assert!(
            obs.contains("public.orders missing (backup 500 rows)"),
            "{obs}"
        );
        assert!(
            obs.contains("public.extra 1 rows, not in the backup"),
            "{obs}"
        );

        let no_db = compare_counts(&backup, &Counts::new());
        assert_eq!(no_db.verdict, CheckVerdict::Failed);
    }

    #[test]
    fn many_differences_are_summarised() {
        let tables: Vec<(String, u64)> = (0..200).map(|i| (format!("t{i:03}"), 10)).collect();
        let mut backup = Counts::new();
        backup.insert(
            "db".into(),
            tables.iter().cloned().collect::<BTreeMap<_, _>>(),
        );
        let mut restored = backup.clone();
        for v in restored.get_mut("db").unwrap().values_mut() {
            *v = 0;
        }
        let o = compare_counts(&backup, &restored);
        let obs = o.observed.unwrap();
        assert!(obs.starts_with("200 of 200 tables differ: t000 0 rows (backup 10)"));
        assert!(obs.ends_with("; and 192 more"), "{obs}");
        assert!(obs.len() <= MAX_TEXT);
    }

    #[test]
    fn timestamps_as_databases_print_them() {
        let want: Timestamp = "2026-11-22T14:43:00.123456Z".parse().unwrap();
        for s in [
            "2026-11-22T14:43:00.123456Z",
            "2026-11-22 14:43:00.123456+00",
            "2026-11-22 16:43:00.123456+02",
            "2026-11-22 15:43:00.123456+01:00",
        ] {
            assert_eq!(parse_timestamp(s).unwrap(), (want, true), "{s}");
        }
        let (t, offset) = parse_timestamp("2026-11-22 14:43:00").unwrap();
        assert!(!offset);
        assert_eq!(t, "2026-11-22T14:43:00Z".parse().unwrap());
        assert_eq!(
            parse_timestamp("1700000000").unwrap().0,
            Timestamp::from_second(1_700_000_000).unwrap()
        );
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn freshness_needs_a_timestamp() {
        let o = freshness_value("2026-11-22 14:43:00+00");
        assert_eq!(o.verdict, CheckVerdict::Passed);
        assert_eq!(o.newest.as_deref(), Some("2026-11-22T14:43:00Z"));
        assert_eq!(freshness_value("").verdict, CheckVerdict::Failed);
        assert_eq!(freshness_value("NULL").verdict, CheckVerdict::Failed);
        assert_eq!(freshness_value("soon").verdict, CheckVerdict::Error);
        let naive = freshness_value("2026-11-22 14:43:00");
        assert!(naive.message.unwrap().contains("read as UTC"));
    }

    #[test]
    fn values_are_judged_against_expectations() {
        let e = Expectation {
            at_least: Some("1".into()),
            ..Expectation::default()
        };
        let o = judge_value("0", &e);
        assert_eq!(o.verdict, CheckVerdict::Failed);
        assert_eq!(o.observed.as_deref(), Some("0"));
        assert_eq!(o.expected.as_deref(), Some(">= 1"));
        assert_eq!(judge_value("500", &e).verdict, CheckVerdict::Passed);
        assert_eq!(
            judge_value("1", &Expectation::default()).verdict,
            CheckVerdict::Error
        );
    }

    #[test]
    fn files_exist_and_match_given_or_snapshot_checksums() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docs")).unwrap();
        std::fs::write(dir.path().join("hello.txt"), b"hello\n").unwrap();
        std::fs::write(dir.path().join("docs/blob.bin"), b"blob").unwrap();
        let hello = sha256_hex(&b"hello\n"[..]).unwrap();
        let blob = sha256_hex(&b"blob"[..]).unwrap();
        let snap_blob = blob.clone();
        let mut snapshot = move |p: &str| match p {
            "docs/blob.bin" => Ok(snap_blob.clone()),
            other => Err(format!("{other} is not in the snapshot")),
        };
        let digests = vec![
            FileDigest {
                path: "hello.txt".into(),
                sha256: Some(hello.to_uppercase()),
            },
            FileDigest {
                path: "docs/blob.bin".into(),
                sha256: None,
            },
        ];
        let ok = files(dir.path(), &["docs".into()], &digests, &mut snapshot);
        assert_eq!(ok.verdict, CheckVerdict::Passed, "{ok:?}");
        assert_eq!(
            ok.observed.as_deref(),
            Some("all 1 path(s) exist, all 2 checksum(s) match")
        );

        // Corrupt the restored copy: the snapshot comparison names the file.
        std::fs::write(dir.path().join("docs/blob.bin"), b"BLOB").unwrap();
        let bad = files(dir.path(), &["gone.txt".into()], &digests, &mut snapshot);
        assert_eq!(bad.verdict, CheckVerdict::Failed);
        let obs = bad.observed.unwrap();
        assert!(obs.contains("gone.txt is missing"), "{obs}");
        assert!(
            obs.contains("docs/blob.bin has sha256 ") && obs.contains("(snapshot: "),
            "{obs}"
        );

        let escape = files(dir.path(), &["../etc/passwd".into()], &[], &mut snapshot);
        assert_eq!(escape.verdict, CheckVerdict::Error);
        let not_in_snapshot = files(
            dir.path(),
            &[],
            &[FileDigest {
                path: "hello.txt".into(),
                sha256: None,
            }],
            &mut snapshot,
        );
        assert_eq!(not_in_snapshot.verdict, CheckVerdict::Error);
    }

    #[test]
    fn long_values_are_summarised_on_char_boundaries() {
        let s = "é".repeat(1000);
        let t = summarise(&s, 100);
        assert!(t.len() <= 100, "{}", t.len());
        assert!(t.ends_with("(2000 bytes in all)"));
        assert_eq!(summarise("short", 100), "short");
    }

    #[test]
    fn http_urls_must_be_plain_http() {
        assert_eq!(
            parse_http_url("http://web:8080/healthz?x=1").unwrap(),
            ("web".into(), 8080, "/healthz?x=1".into())
        );
        assert_eq!(
            parse_http_url("http://web").unwrap(),
            ("web".into(), 80, "/".into())
        );
        assert!(parse_http_url("https://web/").is_err());
        assert!(parse_http_url("not a url").is_err());
    }

    #[tokio::test]
    async fn http_checks_compare_the_status() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await.unwrap();
                let body = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                s.write_all(body.as_bytes()).await.unwrap();
            }
        });
        let url = format!("http://127.0.0.1:{port}/healthz");
        let ok = http(&url, 200, Duration::from_secs(5)).await;
        assert_eq!(ok.verdict, CheckVerdict::Passed, "{ok:?}");
        let down = http(&url, 200, Duration::from_secs(5)).await;
        assert_eq!(down.verdict, CheckVerdict::Failed);
        assert_eq!(down.observed.as_deref(), Some("HTTP 503"));
        // Nothing listens any more: the check cannot run.
        let gone = http(&url, 200, Duration::from_secs(5)).await;
        assert_eq!(gone.verdict, CheckVerdict::Error);
    }
}
