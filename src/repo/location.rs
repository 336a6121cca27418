//! Parsing of repository locations in restic's syntax: `s3:http://host:port/bucket/prefix`,
//! `s3:host/bucket/prefix` (HTTPS), `local:/path` or a plain path.

use std::path::PathBuf;

/// Where a repository lives (before S3 settings such as credentials are added).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// A local directory.
    Local(PathBuf),
    /// A bucket, with the endpoint URL (`None` for AWS) and a key prefix.
    S3 {
        /// `http(s)://host[:port]`, or `None` for AWS's own endpoints.
        endpoint: Option<String>,
        /// Bucket name.
        bucket: String,
        /// Prefix inside the bucket, without leading/trailing slashes (may be empty).
        prefix: String,
    },
}

/// Parses a location. Errors are plain strings naming what is wrong.
pub(crate) fn parse(input: &str) -> Result<Location, String> {
    let input = input.trim();
    if input.is_empty() {
        return Err("the repository location is empty".into());
    }
    if let Some(rest) = input.strip_prefix("s3:") {
        return parse_s3(rest);
    }
    if let Some(path) = input.strip_prefix("local:") {
        if path.is_empty() {
            return Err("`local:` needs a path".into());
        }
        return Ok(Location::Local(PathBuf::from(path)));
    }
    if let Some((scheme, _)) = input.split_once(':')
        && !scheme.contains('/')
        && scheme.len() > 1
    {
        return Err(format!(
            "unsupported repository type `{scheme}:` (use `s3:` or a local path)"
        ));
    }
    Ok(Location::Local(PathBuf::from(input)))
}

fn parse_s3(rest: &str) -> Result<Location, String> {
    let (scheme, rest) = if let Some(r) = rest.strip_prefix("http://") {
        ("http", r)
    } else if let Some(r) = rest.strip_prefix("https://") {
        ("https", r)
    } else if rest.contains("://") {
        return Err("only http:// and https:// endpoints are supported".into());
    } else {
        ("https", rest)
    };
    let (host, path) = rest
        .split_once('/')
        .ok_or("expected s3:<endpoint>/<bucket>[/<prefix>]")?;
    if host.is_empty() {
        return Err("the S3 endpoint host is empty".into());
    }
    if host.contains('@') {
        // Credentials in the URL would end up in logs and process listings.
        return Err(
            "credentials in the repository URL are not supported; use AWS_ACCESS_KEY_ID / \
             AWS_SECRET_ACCESS_KEY or the --s3-* options"
                .into(),
        );
    }
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err("the bucket name is empty".into());
    }
    let endpoint = if host == "s3.amazonaws.com" {
        None
    } else {
        Some(format!("{scheme}://{host}"))
    };
    Ok(Location::S3 {
        endpoint,
        bucket: bucket.to_string(),
        prefix: prefix.trim_matches('/').to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let s3 = |e: Option<&str>, b: &str, p: &str| Location::S3 {
            endpoint: e.map(str::to_string),
            bucket: b.into(),
            prefix: p.into(),
        };
        let cases: Vec<(&str, Result<Location, &str>)> = vec![
            (
                "s3:http://127.0.0.1:8333/bkt/a/b",
                Ok(s3(Some("http://127.0.0.1:8333"), "bkt", "a/b")),
            ),
            (
                "s3:http://127.0.0.1:8333/bkt",
                Ok(s3(Some("http://127.0.0.1:8333"), "bkt", "")),
            ),
            (
                "s3:http://127.0.0.1:8333/bkt/",
                Ok(s3(Some("http://127.0.0.1:8333"), "bkt", "")),
            ),
            (
                "s3:minio.local/bkt/p/",
                Ok(s3(Some("https://minio.local"), "bkt", "p")),
            ),
            ("s3:s3.amazonaws.com/bkt/p", Ok(s3(None, "bkt", "p"))),
            (
                "/var/backups/repo",
                Ok(Location::Local("/var/backups/repo".into())),
            ),
            ("relative/repo", Ok(Location::Local("relative/repo".into()))),
            ("local:/x", Ok(Location::Local("/x".into()))),
            ("s3:http://user:pw@host/b", Err("credentials")),
            ("s3:http://host", Err("expected")),
            ("s3:http://host/", Err("bucket")),
            ("sftp:host:/x", Err("unsupported")),
            ("s3:ftp://host/b", Err("only http")),
            ("", Err("empty")),
        ];
        for (input, want) in cases {
            let got = parse(input);
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{input}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{input}: {g}"),
                (w, g) => panic!("{input}: wanted {w:?}, got {g:?}"),
            }
        }
    }
}
