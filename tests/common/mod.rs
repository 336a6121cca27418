//! Helpers for the engine's integration tests: the environment contract (LIFEBOAT_TEST_*
//! variables written by `e2e/local up`), running the `lifeboat` and `restic` binaries,
//! per-test buckets and databases with random names, tree comparison.
#![allow(dead_code)]

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

/// A long random password, acceptable to the `random-secret` KDF preset (fast tests).
pub const PASSWORD: &str = "Xk9#vL2p-Qw7!zR4m@Ht6sN8yB3cF5jD";

/// Reads a required test variable; fails (never skips) when it is missing.
pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs the local environment. Run `e2e/local up` and \
             `source e2e/.local/env.sh` (or use e2e/test)."
        ),
    }
}

/// A short random suffix for names.
pub fn suffix() -> String {
    let n: u64 = rand::random();
    format!("{:010x}", n & 0xff_ffff_ffff)
}

/// A unique name for this test: `lb-<test>-<random>` (lower case, for buckets).
pub fn unique(test: &str) -> String {
    format!("lb-{}-{}", test.replace('_', "-"), suffix())
}

/// The `lifeboat` binary built for this test run.
pub fn lifeboat_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lifeboat")
}

/// The result of running a program.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed).
    pub code: i32,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Self {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics unless the exit code is 0.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the exit code is `code`.
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// The error line printed on stderr.
    pub fn error_line(&self) -> String {
        self.stderr
            .lines()
            .find(|l| l.starts_with("lifeboat: error:"))
            .unwrap_or_else(|| panic!("no error line in stderr: {}", self.stderr))
            .to_string()
    }
}

/// How to reach one repository from the command line.
#[derive(Clone, Debug)]
pub struct RepoEnv {
    /// `--repo` value.
    pub repo: String,
    /// Extra environment (password, S3 keys).
    pub vars: Vec<(String, String)>,
}

impl RepoEnv {
    /// A local-directory repository.
    pub fn local(dir: &Path) -> Self {
        Self {
            repo: dir.display().to_string(),
            vars: vec![("LIFEBOAT_PASSWORD".into(), PASSWORD.into())],
        }
    }

    /// An S3 repository in `bucket` on the test SeaweedFS, credentials from the standard AWS
    /// variables.
    pub fn s3(bucket: &str, prefix: &str) -> Self {
        let endpoint = env("LIFEBOAT_TEST_S3_ENDPOINT");
        Self {
            repo: format!("s3:{endpoint}/{bucket}/{prefix}"),
            vars: vec![
                ("LIFEBOAT_PASSWORD".into(), PASSWORD.into()),
                (
                    "AWS_ACCESS_KEY_ID".into(),
                    env("LIFEBOAT_TEST_S3_ACCESS_KEY"),
                ),
                (
                    "AWS_SECRET_ACCESS_KEY".into(),
                    env("LIFEBOAT_TEST_S3_SECRET_KEY"),
                ),
                ("AWS_REGION".into(), env("LIFEBOAT_TEST_S3_REGION")),
                ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ],
        }
    }

    /// Runs `lifeboat <args>` against this repository.
    pub fn lifeboat<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.lifeboat_cmd(args);
        Run::from(cmd.output().expect("running lifeboat"))
    }

    /// The `lifeboat` command, not started.
    pub fn lifeboat_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(lifeboat_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var_os("HOME").unwrap_or_else(|| "/root".into()),
            )
            .env("LIFEBOAT_REPOSITORY", &self.repo)
            .env("LIFEBOAT_NO_CACHE", "true")
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd.args(args);
        cmd
    }

    /// Runs `restic <args>` against this repository (same password, same S3 credentials).
    pub fn restic<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("restic");
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "HOME",
                std::env::var_os("HOME").unwrap_or_else(|| "/root".into()),
            )
            .env("RESTIC_REPOSITORY", &self.repo)
            .env("RESTIC_PASSWORD", PASSWORD)
            .arg("--no-cache")
            .stdin(Stdio::null());
        for (k, v) in &self.vars {
            if k.starts_with("AWS_") {
                cmd.env(k, v);
            }
        }
        cmd.args(args);
        Run::from(
            cmd.output()
                .expect("running restic (install Debian's restic)"),
        )
    }

    /// `repo init` with the fast KDF preset (and bucket creation for S3).
    pub fn init(&self) {
        self.lifeboat([
            "repo",
            "init",
            "--kdf",
            "random-secret",
            "--s3-create-bucket",
        ])
        .ok();
    }
}

/// `diff -r --no-dereference a b` must report no difference.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(a)
        .arg(b)
        .output()
        .expect("running diff");
    assert!(
        out.status.success(),
        "trees differ ({} vs {}):\n{}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A deterministic test tree: nested dirs, text, incompressible and compressible binaries,
/// an empty file, an empty dir, a symlink and a dangling symlink, odd names.
pub fn make_tree(root: &Path, seed: u64) {
    use std::fs;
    fs::create_dir_all(root.join("docs/deep/deeper")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("README.txt"), format!("seed {seed}\n")).unwrap();
    fs::write(
        root.join("docs/notes with spaces.md"),
        "hello, world\n".repeat(500),
    )
    .unwrap();
    fs::write(root.join("docs/deep/empty"), b"").unwrap();
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let random: Vec<u8> = (0..3_000_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect();
    fs::write(root.join("docs/deep/deeper/random.bin"), &random).unwrap();
    fs::write(root.join("docs/zeros.bin"), vec![0u8; 2_000_000]).unwrap();
    fs::write(root.join("ünïcödé ✓.txt"), "utf-8 name\n").unwrap();
    std::os::unix::fs::symlink("README.txt", root.join("link-to-readme")).unwrap();
    std::os::unix::fs::symlink("../nowhere", root.join("docs/dangling")).unwrap();
}

/// Where a path backed up by lifeboat (absolute, canonical) lands under a restore target.
pub fn restored_path(target: &Path, source: &Path) -> PathBuf {
    let canon = std::fs::canonicalize(source).unwrap();
    target.join(canon.strip_prefix("/").unwrap())
}

/// A blocking S3 client for bucket setup and cleanup.
pub struct S3Admin {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
}

impl S3Admin {
    /// A client on the test SeaweedFS.
    pub fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .http_client(http)
            .endpoint_url(env("LIFEBOAT_TEST_S3_ENDPOINT"))
            .region(aws_sdk_s3::config::Region::new(env(
                "LIFEBOAT_TEST_S3_REGION",
            )))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                env("LIFEBOAT_TEST_S3_ACCESS_KEY"),
                env("LIFEBOAT_TEST_S3_SECRET_KEY"),
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            .build();
        Self {
            rt,
            client: aws_sdk_s3::Client::from_conf(conf),
        }
    }

    /// Every key in a bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        self.rt.block_on(async {
            let mut keys = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.expect("listing bucket");
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_string)),
                );
            }
            keys
        })
    }

    /// Keys under `prefix` whose ETag says they were uploaded in parts (`"<md5>-<parts>"`).
    pub fn multipart_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let keys: Vec<String> = self
            .keys(bucket)
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect();
        self.rt.block_on(async {
            let mut out = Vec::new();
            for k in keys {
                let head = self
                    .client
                    .head_object()
                    .bucket(bucket)
                    .key(&k)
                    .send()
                    .await
                    .expect("HEAD");
                if head
                    .e_tag()
                    .is_some_and(|e| e.trim_matches('"').contains('-'))
                {
                    out.push(k);
                }
            }
            out
        })
    }

    /// Deletes a bucket and everything in it.
    pub fn remove_bucket(&self, bucket: &str) {
        let keys = self.keys(bucket);
        self.rt.block_on(async {
            for k in keys {
                let _ = self
                    .client
                    .delete_object()
                    .bucket(bucket)
                    .key(k)
                    .send()
                    .await;
            }
            let _ = self.client.delete_bucket().bucket(bucket).send().await;
        });
    }

    /// Whether the bucket has S3 Object Lock enabled.
    pub fn object_lock_enabled(&self, bucket: &str) -> bool {
        self.rt
            .block_on(
                self.client
                    .get_object_lock_configuration()
                    .bucket(bucket)
                    .send(),
            )
            .ok()
            .and_then(|o| o.object_lock_configuration().cloned())
            .and_then(|c| c.object_lock_enabled().cloned())
            .is_some_and(|e| e.as_str() == "Enabled")
    }

    /// The current version's Object Lock mode and retain-until date.
    pub fn retention(
        &self,
        bucket: &str,
        key: &str,
    ) -> (
        Option<aws_sdk_s3::types::ObjectLockMode>,
        Option<aws_sdk_s3::primitives::DateTime>,
    ) {
        let head = self
            .rt
            .block_on(self.client.head_object().bucket(bucket).key(key).send())
            .expect("HEAD");
        (
            head.object_lock_mode().cloned(),
            head.object_lock_retain_until_date().copied(),
        )
    }

    /// The version ID of a key's current version.
    pub fn current_version(&self, bucket: &str, key: &str) -> String {
        self.rt
            .block_on(self.client.head_object().bucket(bucket).key(key).send())
            .expect("HEAD")
            .version_id()
            .expect("a versioned bucket")
            .to_string()
    }

    /// Deletes one version (or delete marker); the S3 error code when refused.
    pub fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
    ) -> Result<(), Option<String>> {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        self.rt
            .block_on(
                self.client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .version_id(version)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| e.code().map(str::to_string))
    }

    /// A DELETE without a version (a delete marker on a versioned bucket); the marker's
    /// version ID.
    pub fn delete_plain(&self, bucket: &str, key: &str) -> String {
        self.rt
            .block_on(self.client.delete_object().bucket(bucket).key(key).send())
            .expect("DELETE")
            .version_id()
            .expect("a delete marker")
            .to_string()
    }

    /// Whether a key has a version that is not the current one (or is hidden by a marker).
    pub fn has_noncurrent_version(&self, bucket: &str, key: &str) -> bool {
        self.rt
            .block_on(
                self.client
                    .list_object_versions()
                    .bucket(bucket)
                    .prefix(key)
                    .send(),
            )
            .expect("listing versions")
            .versions()
            .iter()
            .any(|v| v.key() == Some(key) && v.is_latest() != Some(true))
    }

    /// Deletes a versioned (object-locked, Governance mode) bucket: every version and
    /// marker, bypassing Governance retention (an admin identity may).
    pub fn remove_versioned_bucket(&self, bucket: &str) {
        self.rt.block_on(async {
            loop {
                let Ok(page) = self
                    .client
                    .list_object_versions()
                    .bucket(bucket)
                    .send()
                    .await
                else {
                    return;
                };
                let all: Vec<(String, String)> =
                    page.versions()
                        .iter()
                        .filter_map(|v| Some((v.key()?.to_string(), v.version_id()?.to_string())))
                        .chain(page.delete_markers().iter().filter_map(|m| {
                            Some((m.key()?.to_string(), m.version_id()?.to_string()))
                        }))
                        .collect();
                if all.is_empty() {
                    break;
                }
                let mut deleted = 0;
                for (k, v) in all {
                    deleted += self
                        .client
                        .delete_object()
                        .bucket(bucket)
                        .key(k)
                        .version_id(v)
                        .bypass_governance_retention(true)
                        .send()
                        .await
                        .is_ok() as usize;
                }
                // Compliance-mode versions cannot go before they expire: stop, not spin.
                if deleted == 0 {
                    break;
                }
            }
            let _ = self.client.delete_bucket().bucket(bucket).send().await;
        });
    }

    /// Turns versioning on (without Object Lock).
    pub fn enable_versioning(&self, bucket: &str) {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.rt
            .block_on(
                self.client
                    .put_bucket_versioning()
                    .bucket(bucket)
                    .versioning_configuration(
                        VersioningConfiguration::builder()
                            .status(BucketVersioningStatus::Enabled)
                            .build(),
                    )
                    .send(),
            )
            .expect("enabling versioning");
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        self.rt
            .block_on(self.client.create_bucket().bucket(bucket).send())
            .expect("creating bucket");
    }
}

/// Removes a bucket when dropped (also when the test panics).
pub struct BucketGuard(pub String);

impl Drop for BucketGuard {
    fn drop(&mut self) {
        S3Admin::new().remove_bucket(&self.0);
    }
}
