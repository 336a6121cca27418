//! A repository in an S3 bucket (under an optional prefix), on aws-sdk-s3, with the restic
//! S3 layout so `restic -r s3:URL/bucket/prefix` reads it.
//!
//! rustic_core calls backends from its own blocking threads; the SDK is async. Each call is
//! bridged with a runtime handle (`block_on` from the calling thread), so the async workers
//! only do network IO and the SDK's own request work; hashing, compression and encryption
//! stay on rustic_core's threads.
//!
//! Pack uploads are asynchronous: `put` of a `data/` object returns once the upload is
//! queued (at most `upload_concurrency` queued or in flight; beyond that `put` first waits
//! for the oldest, so memory stays bounded when the source is faster than the link), and
//! any other write, read or delete waits for every queued upload first. Index and snapshot writes therefore still happen strictly
//! after the packs they reference are stored, which is the order the format's crash safety
//! rests on.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use aws_sdk_s3::{
    Client,
    config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation, http::HttpResponse, retry::RetryConfig, timeout::TimeoutConfig,
    },
    error::{ProvideErrorMetadata, SdkError},
};
use aws_smithy_http_client::tls;
use bytes::Bytes;
use tokio::{runtime::Runtime, sync::Semaphore, task::JoinHandle};

use super::{ObjectStore, StoreError, StoreErrorKind};
mod lock;
mod upload;

use crate::repo::Secret;
pub use lock::{DeletionAttempt, DeletionOutcome, Extended, LockMode, ObjectLock};
use upload::{concat, join_upload};

/// Which checksums the SDK computes and validates (see the test-services notes): the SDK
/// default (`WhenSupported`, CRC32 end to end) or only where an API requires it
/// (`WhenRequired`, for S3-compatibles that reject `aws-chunked` trailers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ChecksumMode {
    /// Compute and validate checksums whenever the operation supports them.
    #[default]
    WhenSupported,
    /// Only when the API requires a checksum.
    WhenRequired,
}

/// Where the credentials come from.
#[derive(Clone, Debug, Default)]
pub enum S3Credentials {
    /// The standard AWS chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, the shared
    /// profile files (optionally a named profile), web identity, container and instance roles.
    #[default]
    Chain,
    /// A named profile from the shared config files.
    Profile(String),
    /// Explicit static keys.
    Static {
        /// The access key id.
        access_key_id: String,
        /// The secret key.
        secret_access_key: Secret,
        /// An optional session token.
        session_token: Option<Secret>,
    },
}

/// Everything needed to reach a bucket.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// Endpoint URL (`http://127.0.0.1:8333`); `None` means AWS itself.
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix of the repository inside the bucket (no leading or trailing `/`).
    pub prefix: String,
    /// Region; `None` falls back to the AWS chain, then `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing (required for most S3-compatibles on IPs or localhost).
    pub path_style: bool,
    /// Credentials source.
    pub credentials: S3Credentials,
    /// PEM bundle of extra trusted CAs, replacing the platform roots when set.
    pub ca_bundle: Option<PathBuf>,
    /// Checksum behaviour.
    pub checksum: ChecksumMode,
    /// Attempts per request (the SDK retries 5xx, throttling and timeouts with backoff).
    pub max_attempts: u32,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one request attempt.
    pub attempt_timeout: Duration,
    /// Objects larger than this are uploaded in parts.
    pub multipart_threshold: u64,
    /// Size of one part (at least 5 MiB, an S3 rule).
    pub part_size: u64,
    /// Uploads (whole objects or parts) in flight at once.
    pub upload_concurrency: usize,
    /// Create the bucket in `create()` when it does not exist.
    pub create_bucket: bool,
    /// S3 Object Lock for every object but lock files (the bucket must have it enabled;
    /// a bucket created here gets it).
    pub object_lock: Option<ObjectLock>,
}

impl S3Config {
    /// Defaults for everything but the location.
    pub fn new(endpoint: Option<String>, bucket: String, prefix: String) -> Self {
        Self {
            endpoint,
            bucket,
            prefix,
            region: None,
            path_style: true,
            credentials: S3Credentials::Chain,
            ca_bundle: None,
            checksum: ChecksumMode::WhenSupported,
            max_attempts: 5,
            connect_timeout: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(300),
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            upload_concurrency: 4,
            create_bucket: false,
            object_lock: None,
        }
    }

    /// `s3:<endpoint>/<bucket>/<prefix>`, never with credentials.
    pub fn location(&self) -> String {
        let ep = self
            .endpoint
            .as_deref()
            .unwrap_or("https://s3.amazonaws.com");
        if self.prefix.is_empty() {
            format!("s3:{ep}/{}", self.bucket)
        } else {
            format!("s3:{ep}/{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The runtime the store runs its requests on: its own small one, or a caller's.
enum RuntimeRef {
    Owned(Option<Runtime>),
    Shared(tokio::runtime::Handle),
}

impl RuntimeRef {
    fn handle(&self) -> tokio::runtime::Handle {
        match self {
            Self::Owned(rt) => rt
                .as_ref()
                .expect("runtime lives as long as the store")
                .handle()
                .clone(),
            Self::Shared(h) => h.clone(),
        }
    }
}

impl Drop for RuntimeRef {
    fn drop(&mut self) {
        // Dropping a runtime blocks; shutting it down in the background is safe from any
        // context (including an async one, where a plain drop would panic).
        if let Self::Owned(rt) = self
            && let Some(rt) = rt.take()
        {
            rt.shutdown_background();
        }
    }
}

/// A queued pack upload: its path and its task.
type PendingUpload = (String, JoinHandle<Result<(), StoreError>>);

/// An S3 repository store.
pub(crate) struct S3Store {
    client: Client,
    config: S3Config,
    rt: RuntimeRef,
    uploads: Arc<Semaphore>,
    pending: Mutex<Vec<PendingUpload>>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("location", &self.config.location())
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Connects (lazily: no request is made here). With `handle` the store runs its requests
    /// on that runtime; otherwise it starts a two-thread runtime of its own. Must be called
    /// outside of an async context when `handle` is `None`... and every store method must
    /// always be called outside of one (they block).
    pub(crate) fn new(
        config: S3Config,
        handle: Option<tokio::runtime::Handle>,
    ) -> Result<Self, StoreError> {
        let rt = match handle {
            Some(h) => RuntimeRef::Shared(h),
            None => RuntimeRef::Owned(Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("lifeboat-s3")
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        StoreError::new(StoreErrorKind::Other, "INIT", "", e.to_string())
                    })?,
            )),
        };
        let client = rt.handle().block_on(build_client(&config))?;
        let uploads = Arc::new(Semaphore::new(config.upload_concurrency.max(1)));
        Ok(Self {
            client,
            config,
            rt,
            uploads,
            pending: Mutex::new(Vec::new()),
        })
    }

    fn key(&self, path: &str) -> String {
        if self.config.prefix.is_empty() {
            path.to_string()
        } else {
            format!("{}/{path}", self.config.prefix)
        }
    }

    /// Replaces a code-less HEAD error by the error of a 1-byte GET of the same object,
    /// whose body names the S3 error code (SignatureDoesNotMatch, InvalidAccessKeyId, ...).
    fn diagnose(&self, path: &str, head_err: StoreError) -> StoreError {
        let res = self.block_on(
            self.client
                .get_object()
                .bucket(&self.config.bucket)
                .key(self.key(path))
                .range("bytes=0-0")
                .send(),
        );
        match res {
            Err(e) => {
                let err = sdk_error(&self.config.bucket, "GET", path, e);
                if err.code.is_some() && err.kind != StoreErrorKind::NotFound {
                    StoreError {
                        op: head_err.op,
                        ..err
                    }
                } else {
                    head_err
                }
            }
            Ok(_) => head_err,
        }
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.handle().block_on(f)
    }

    /// Waits for every queued pack upload; the first failure is returned (the others are
    /// still awaited so nothing is left running unobserved).
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return Ok(());
        }
        self.block_on(async {
            let mut first = None;
            for upload in pending {
                if let Err(e) = join_upload(upload).await
                    && first.is_none()
                {
                    first = Some(e);
                }
            }
            first.map_or(Ok(()), Err)
        })
    }

    /// Waits until fewer than `upload_concurrency` pack uploads are queued or in flight
    /// (oldest first); returns the failure of one it waited for, if any.
    fn wait_for_room(&self) -> Result<(), StoreError> {
        loop {
            let oldest = {
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending.len() < self.config.upload_concurrency.max(1) {
                    return Ok(());
                }
                pending.remove(0)
            };
            self.block_on(join_upload(oldest))?;
        }
    }

    fn upload_job(
        &self,
        path: &str,
        data: Bytes,
    ) -> impl Future<Output = Result<(), StoreError>> + use<> {
        upload::Upload {
            client: self.client.clone(),
            bucket: self.config.bucket.clone(),
            key: self.key(path),
            path: path.to_string(),
            data,
            threshold: self.config.multipart_threshold,
            part_size: self.config.part_size.max(5 * 1024 * 1024),
            lock: lock::retention_for(self.config.object_lock.as_ref(), path, SystemTime::now()),
        }
        .send(self.uploads.clone())
    }
}

async fn build_client(config: &S3Config) -> Result<Client, StoreError> {
    let fail = |msg: String| StoreError::new(StoreErrorKind::Other, "INIT", "", msg);
    let mut trust = tls::TrustStore::default();
    if let Some(ca) = &config.ca_bundle {
        let pem = std::fs::read(ca)
            .map_err(|e| fail(format!("reading CA bundle {}: {e}", ca.display())))?;
        trust = tls::TrustStore::empty().with_pem_certificate(pem);
    }
    let tls_ctx = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| fail(format!("TLS setup: {e}")))?;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls_ctx)
        .build_https();

    let retry = RetryConfig::standard()
        .with_max_attempts(config.max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(10));
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(config.connect_timeout)
        .operation_attempt_timeout(config.attempt_timeout)
        .build();
    let (req_ck, resp_ck) = match config.checksum {
        ChecksumMode::WhenSupported => (
            RequestChecksumCalculation::WhenSupported,
            ResponseChecksumValidation::WhenSupported,
        ),
        ChecksumMode::WhenRequired => (
            RequestChecksumCalculation::WhenRequired,
            ResponseChecksumValidation::WhenRequired,
        ),
    };

    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(retry)
        .timeout_config(timeouts)
        .request_checksum_calculation(req_ck)
        .response_checksum_validation(resp_ck);
    if let Some(ep) = &config.endpoint {
        loader = loader.endpoint_url(ep);
    }
    match &config.credentials {
        S3Credentials::Chain => {}
        S3Credentials::Profile(p) => loader = loader.profile_name(p),
        S3Credentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key.expose(),
                session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "lifeboat",
            ));
        }
    }
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let mut builder =
        aws_sdk_s3::config::Builder::from(&shared).force_path_style(config.path_style);
    if shared.region().is_none() {
        // S3-compatibles rarely care; AWS itself redirects. Better than failing to sign.
        builder = builder.region(Region::new("us-east-1"));
    }
    Ok(Client::from_conf(builder.build()))
}

/// Maps an SDK error to a [`StoreError`] that keeps the S3 error code. A missing bucket's
/// error names it, whatever the operation: the server's own message ("The specified
/// bucket does not exist") does not, and a store's status must say which one to create.
fn sdk_error<E>(
    bucket: &str,
    op: &'static str,
    path: &str,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().map(str::to_string);
            let message = e.message().unwrap_or_default().to_string();
            let status = Some(se.raw().status().as_u16());
            let kind = classify(code.as_deref(), status, op);
            let code = if kind == StoreErrorKind::NoSuchBucket {
                Some("NoSuchBucket".to_string())
            } else {
                code
            };
            let message = if kind == StoreErrorKind::NoSuchBucket {
                format!("bucket {bucket:?} does not exist")
            } else if message.is_empty() && code.is_none() {
                status.map_or_else(|| "service error".to_string(), |s| format!("HTTP {s}"))
            } else {
                message
            };
            StoreError {
                kind,
                op,
                path: path.to_string(),
                code: code.or_else(|| implied_code(kind).map(str::to_string)),
                message,
            }
        }
        SdkError::TimeoutError(_) => StoreError::new(
            StoreErrorKind::Unreachable,
            op,
            path,
            "request timed out (after retries)",
        ),
        SdkError::DispatchFailure(df) => {
            let cause = df
                .as_connector_error()
                .map(|c| innermost(c))
                .unwrap_or_else(|| aws_sdk_s3::error::DisplayErrorContext(&err).to_string());
            let what = if df.is_timeout() {
                "timed out"
            } else if df.is_io() {
                "connection failed"
            } else {
                "request could not be sent"
            };
            StoreError::new(
                StoreErrorKind::Unreachable,
                op,
                path,
                format!("endpoint unreachable, {what}: {cause}"),
            )
        }
        _ => StoreError::new(
            StoreErrorKind::Other,
            op,
            path,
            aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
        ),
    }
}

/// The innermost cause of an error chain (`Connection refused (os error 111)` rather than
/// the connector's wrapping layers).
fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    let mut text = cur.to_string();
    while let Some(next) = cur.source() {
        let t = next.to_string();
        if !t.is_empty() {
            text = t;
        }
        cur = next;
    }
    text
}

fn classify(code: Option<&str>, status: Option<u16>, op: &str) -> StoreErrorKind {
    if op == "HEAD-BUCKET" && (status == Some(404) || code == Some("NotFound")) {
        return StoreErrorKind::NoSuchBucket;
    }
    match code {
        Some("NoSuchKey" | "NotFound") => StoreErrorKind::NotFound,
        Some("NoSuchBucket") => StoreErrorKind::NoSuchBucket,
        Some(
            "SignatureDoesNotMatch"
            | "InvalidAccessKeyId"
            | "InvalidToken"
            | "ExpiredToken"
            | "TokenRefreshRequired"
            | "AuthorizationHeaderMalformed"
            | "InvalidSecurity",
        ) => StoreErrorKind::Auth,
        Some("AccessDenied" | "AllAccessDisabled" | "AccountProblem") => {
            StoreErrorKind::AccessDenied
        }
        Some("PreconditionFailed") => StoreErrorKind::AlreadyExists,
        Some(_) => StoreErrorKind::Other,
        None => match (status, op) {
            (Some(404), "HEAD-BUCKET") => StoreErrorKind::NoSuchBucket,
            (Some(404), _) => StoreErrorKind::NotFound,
            (Some(403), _) => StoreErrorKind::AccessDenied,
            (Some(401), _) => StoreErrorKind::Auth,
            _ => StoreErrorKind::Other,
        },
    }
}

/// HEAD answers carry no body, hence no code: name the implied one.
fn implied_code(kind: StoreErrorKind) -> Option<&'static str> {
    match kind {
        StoreErrorKind::NoSuchBucket => Some("NoSuchBucket"),
        StoreErrorKind::AccessDenied => Some("AccessDenied"),
        _ => None,
    }
}

impl ObjectStore for S3Store {
    fn location(&self) -> String {
        self.config.location()
    }

    fn create(&self) -> Result<(), StoreError> {
        let bucket = &self.config.bucket;
        let head = self.block_on(self.client.head_bucket().bucket(bucket).send());
        match head {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = sdk_error(&self.config.bucket, "HEAD-BUCKET", "", e);
                if err.kind == StoreErrorKind::NoSuchBucket && self.config.create_bucket {
                    // Object Lock can only be turned on when a bucket is created.
                    let create = self
                        .client
                        .create_bucket()
                        .bucket(bucket)
                        .set_object_lock_enabled_for_bucket(self.config.object_lock.map(|_| true));
                    self.block_on(create.send())
                        .map(|_| ())
                        .map_err(|e| sdk_error(&self.config.bucket, "CREATE-BUCKET", "", e))
                } else {
                    Err(err)
                }
            }
        }
    }

    fn check_root(&self) -> Result<(), StoreError> {
        match self.block_on(self.client.head_bucket().bucket(&self.config.bucket).send()) {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = sdk_error(&self.config.bucket, "HEAD-BUCKET", "", e);
                match err.kind {
                    StoreErrorKind::AccessDenied | StoreErrorKind::Auth => {
                        Err(self.diagnose("config", err))
                    }
                    _ => Err(err),
                }
            }
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.flush()?;
        let prefix = format!("{}/", self.key(dir));
        self.block_on(async {
            let mut out = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.config.bucket)
                .prefix(&prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| sdk_error(&self.config.bucket, "LIST", dir, e))?;
                for obj in page.contents() {
                    let Some(key) = obj.key() else { continue };
                    let Some(name) = key.strip_prefix(&prefix) else {
                        continue;
                    };
                    let size = u64::try_from(obj.size().unwrap_or(0)).unwrap_or(0);
                    out.push((name.to_string(), size));
                }
            }
            Ok(out)
        })
    }

    fn size(&self, path: &str) -> Result<Option<u64>, StoreError> {
        self.flush()?;
        let res = self.block_on(
            self.client
                .head_object()
                .bucket(&self.config.bucket)
                .key(self.key(path))
                .send(),
        );
        match res {
            Ok(out) => Ok(Some(
                u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
            )),
            Err(e) => {
                let err = sdk_error(&self.config.bucket, "HEAD", path, e);
                match err.kind {
                    StoreErrorKind::NotFound => Ok(None),
                    // HEAD answers carry no body, so no error code: a 403 could be a bad
                    // signature, an unknown key or a policy. Ask again with a request whose
                    // answer names the code.
                    // The same for a 5xx that survived the retries.
                    StoreErrorKind::AccessDenied | StoreErrorKind::Auth => {
                        Err(self.diagnose(path, err))
                    }
                    StoreErrorKind::Other if err.code.is_none() => Err(self.diagnose(path, err)),
                    _ => Err(err),
                }
            }
        }
    }

    fn get(&self, path: &str, range: Option<(u64, u64)>) -> Result<Bytes, StoreError> {
        if path.starts_with("data/") {
            self.flush()?;
        }
        let attempts = self.config.max_attempts.max(1);
        self.block_on(async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut req = self
                    .client
                    .get_object()
                    .bucket(&self.config.bucket)
                    .key(self.key(path));
                if let Some((offset, length)) = range {
                    if length == 0 {
                        return Ok(Bytes::new());
                    }
                    req = req.range(format!("bytes={offset}-{}", offset + length - 1));
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| sdk_error(&self.config.bucket, "GET", path, e))?;
                // The SDK retries the request but not a body that breaks off mid-stream:
                // retry those here, with the same backoff shape.
                match resp.body.collect().await {
                    Ok(body) => {
                        let bytes = body.into_bytes();
                        if let Some((_, length)) = range
                            && bytes.len() as u64 != length
                        {
                            return Err(StoreError::new(
                                StoreErrorKind::Other,
                                "GET",
                                path,
                                format!("short read: {} of {length} bytes", bytes.len()),
                            ));
                        }
                        return Ok(bytes);
                    }
                    Err(e) if attempt < attempts => {
                        tracing::warn!(path, attempt, error = %e, "GET body failed, retrying");
                        tokio::time::sleep(Duration::from_millis(200 << attempt.min(6))).await;
                    }
                    Err(e) => {
                        return Err(StoreError::new(
                            StoreErrorKind::Unreachable,
                            "GET",
                            path,
                            format!("reading the body failed: {e}"),
                        ));
                    }
                }
            }
        })
    }

    fn put(&self, path: &str, data: Vec<Bytes>) -> Result<(), StoreError> {
        if path.starts_with("data/") {
            self.wait_for_room()?;
        }
        let data = concat(data);
        if path.starts_with("data/") {
            // Queue the pack upload; ordering against index/snapshot writes is kept by the
            // flush in every other operation.
            let job = self.upload_job(path, data);
            let handle = self.rt.handle().spawn(job);
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((path.to_string(), handle));
            return Ok(());
        }
        self.flush()?;
        let job = self.upload_job(path, data);
        self.block_on(job)
    }

    fn object_lock_enabled(&self) -> Result<Option<bool>, StoreError> {
        self.block_on(lock::bucket_enabled(&self.client, &self.config.bucket))
            .map(Some)
    }

    fn extend_retention(&self) -> Result<Extended, StoreError> {
        let Some(l) = self.config.object_lock else {
            return Ok(Extended::default());
        };
        self.flush()?;
        let mut keys = Vec::new();
        if self.size("config")?.is_some() {
            keys.push((self.key("config"), "config".to_string()));
        }
        for dir in ["keys", "index", "snapshots", "data"] {
            for (name, _) in self.list(dir)? {
                let path = format!("{dir}/{name}");
                keys.push((self.key(&path), path));
            }
        }
        self.block_on(lock::extend(
            &self.client,
            &self.config.bucket,
            keys,
            &l,
            SystemTime::now(),
        ))
    }

    fn try_delete_version(&self, path: &str) -> Result<Option<DeletionAttempt>, StoreError> {
        self.flush()?;
        let bucket = &self.config.bucket;
        let key = self.key(path);
        let head = self
            .block_on(self.client.head_object().bucket(bucket).key(&key).send())
            .map_err(|e| sdk_error(bucket, "HEAD", path, e))?;
        let mut attempt = DeletionAttempt {
            path: path.to_string(),
            version: head
                .version_id()
                .filter(|v| *v != "null")
                .map(str::to_string),
            outcome: DeletionOutcome::Unversioned,
            marker_removed: false,
            rewritten: false,
        };
        let Some(version) = attempt.version.clone() else {
            return Ok(Some(attempt));
        };
        // Kept to write back if the server lets the version go: proving the store mutable
        // must not cost the repository a pack.
        let bytes = self.get(path, None)?;
        let answer = self.block_on(
            self.client
                .delete_object()
                .bucket(bucket)
                .key(&key)
                .version_id(&version)
                .send(),
        );
        let marker = answer
            .as_ref()
            .ok()
            .filter(|out| out.delete_marker() == Some(true))
            .and_then(|out| out.version_id())
            .filter(|v| *v != version)
            .map(str::to_string);
        attempt.outcome = lock::judge_deletion(
            answer
                .map(|_| ())
                .map_err(|e| sdk_error(bucket, "DELETE-VERSION", path, e)),
        )?;
        if let Some(m) = marker {
            self.block_on(
                self.client
                    .delete_object()
                    .bucket(bucket)
                    .key(&key)
                    .version_id(&m)
                    .send(),
            )
            .map_err(|e| sdk_error(bucket, "DELETE-VERSION", path, e))?;
            attempt.marker_removed = true;
        }
        if attempt.outcome == DeletionOutcome::Deleted && !attempt.marker_removed {
            self.put(path, vec![bytes])?;
            self.flush()?;
            attempt.rewritten = true;
        }
        Ok(Some(attempt))
    }

    fn delete(&self, path: &str) -> Result<(), StoreError> {
        self.flush()?;
        self.block_on(
            self.client
                .delete_object()
                .bucket(&self.config.bucket)
                .key(self.key(path))
                .send(),
        )
        .map(|_| ())
        .map_err(|e| sdk_error(&self.config.bucket, "DELETE", path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_bucket_is_named_whatever_the_operation() {
        use aws_sdk_s3::error::ErrorMetadata;
        use aws_sdk_s3::operation::get_object::GetObjectError;
        use aws_sdk_s3::primitives::SdkBody;
        let missing = |status: u16, code: Option<&str>| {
            let mut meta = ErrorMetadata::builder().message("The specified bucket does not exist");
            if let Some(c) = code {
                meta = meta.code(c);
            }
            let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
            SdkError::service_error(GetObjectError::generic(meta.build()), raw)
        };
        for (op, status, code) in [
            ("GET", 404, Some("NoSuchBucket")),
            ("PUT", 404, Some("NoSuchBucket")),
            ("HEAD-BUCKET", 404, None),
        ] {
            let e = sdk_error("team-backups", op, "config", missing(status, code));
            assert_eq!(e.kind, StoreErrorKind::NoSuchBucket, "{op}");
            assert_eq!(e.code.as_deref(), Some("NoSuchBucket"), "{op}");
            assert_eq!(e.message, "bucket \"team-backups\" does not exist", "{op}");
        }
        // Other errors keep the server's message.
        let denied = SdkError::service_error(
            GetObjectError::generic(
                ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("Access Denied")
                    .build(),
            ),
            HttpResponse::new(403.try_into().unwrap(), SdkBody::empty()),
        );
        assert_eq!(
            sdk_error("team-backups", "GET", "config", denied).message,
            "Access Denied"
        );
    }

    #[test]
    fn classifies_s3_codes() {
        assert_eq!(
            classify(Some("NoSuchBucket"), Some(404), "GET"),
            StoreErrorKind::NoSuchBucket
        );
        assert_eq!(
            classify(Some("SignatureDoesNotMatch"), Some(403), "GET"),
            StoreErrorKind::Auth
        );
        assert_eq!(
            classify(Some("InvalidAccessKeyId"), Some(403), "LIST"),
            StoreErrorKind::Auth
        );
        assert_eq!(
            classify(Some("AccessDenied"), Some(403), "PUT"),
            StoreErrorKind::AccessDenied
        );
        assert_eq!(classify(None, Some(404), "HEAD"), StoreErrorKind::NotFound);
        assert_eq!(
            classify(None, Some(404), "HEAD-BUCKET"),
            StoreErrorKind::NoSuchBucket
        );
        assert_eq!(
            classify(Some("NotFound"), Some(404), "HEAD-BUCKET"),
            StoreErrorKind::NoSuchBucket
        );
        assert_eq!(
            classify(Some("SlowDown"), Some(503), "PUT"),
            StoreErrorKind::Other
        );
    }

    #[test]
    fn location_has_no_credentials() {
        let mut c = S3Config::new(
            Some("http://127.0.0.1:8333".into()),
            "b".into(),
            "p/q".into(),
        );
        c.credentials = S3Credentials::Static {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("very-secret-value"),
            session_token: None,
        };
        assert_eq!(c.location(), "s3:http://127.0.0.1:8333/b/p/q");
        assert!(!format!("{c:?}").contains("very-secret-value"));
    }

    #[test]
    fn innermost_cause_is_reported() {
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Wrap(#[source] std::io::Error);
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(innermost(&Wrap(io)), "connection refused");
    }
}
