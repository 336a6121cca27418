//! A minimal S3 backend (restic's object layout) for the benchmark harness only, so the
//! hot path can be measured against SeaweedFS before the engine's real backend
//! (`repo::backend::s3`, with retries, multipart, CA bundles) is merged.

use std::sync::Arc;

use aws_sdk_s3::{
    Client,
    config::{BehaviorVersion, Credentials, Region},
    primitives::ByteStream,
};
use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

pub struct S3Dir {
    client: Client,
    bucket: String,
    prefix: String,
    rt: Arc<tokio::runtime::Runtime>,
}

fn err(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::Backend, what, e)
}

impl S3Dir {
    /// `url` is `s3:http://host:port/bucket/prefix`; credentials from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("s3:")
            .ok_or_else(|| anyhow::anyhow!("not an s3: url"))?;
        let (scheme, rest) = rest
            .split_once("://")
            .ok_or_else(|| anyhow::anyhow!("no scheme"))?;
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("no bucket"))?;
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        let rt = Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?,
        );
        let key = std::env::var("AWS_ACCESS_KEY_ID")?;
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY")?;
        let http = aws_smithy_http_client::Builder::new().build_http();
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(format!("{scheme}://{host}"))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(key, secret, None, None, "static"))
            .force_path_style(true)
            .http_client(http)
            .build();
        Ok(Self {
            client: Client::from_conf(conf),
            bucket: bucket.to_string(),
            prefix: prefix.trim_end_matches('/').to_string(),
            rt,
        })
    }

    fn key(&self, tpe: FileType, id: &Id) -> String {
        let hex = id.to_hex();
        let rel = match tpe {
            FileType::Config => "config".to_string(),
            FileType::Pack => format!("data/{}/{}", &hex[..2], hex.as_str()),
            _ => format!("{}/{}", tpe.dirname(), hex.as_str()),
        };
        if self.prefix.is_empty() {
            rel
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    fn dir(&self, tpe: FileType) -> String {
        if self.prefix.is_empty() {
            format!("{}/", tpe.dirname())
        } else {
            format!("{}/{}/", self.prefix, tpe.dirname())
        }
    }

    fn get(&self, key: String, range: Option<String>) -> RusticResult<Bytes> {
        self.rt.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .set_range(range)
                .send()
                .await
                .map_err(|e| err("GetObject failed", e))?;
            let b = out
                .body
                .collect()
                .await
                .map_err(|e| err("reading body failed", e))?;
            Ok(b.into_bytes())
        })
    }
}

impl ReadBackend for S3Dir {
    fn location(&self) -> String {
        format!("s3:{}/{}", self.bucket, self.prefix)
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let key = self.key(FileType::Config, &Id::default());
            return self.rt.block_on(async {
                match self
                    .client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
                    .await
                {
                    Ok(h) => Ok(vec![(
                        Id::default(),
                        u32::try_from(h.content_length().unwrap_or(0)).unwrap_or(0),
                    )]),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(vec![]),
                    Err(e) => Err(err("HeadObject failed", e)),
                }
            });
        }
        let prefix = self.dir(tpe);
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| err("ListObjectsV2 failed", e))?;
                for o in page.contents() {
                    let Some(k) = o.key() else { continue };
                    let name = k.rsplit('/').next().unwrap_or_default();
                    if let Ok(id) = name.parse::<Id>() {
                        out.push((id, u32::try_from(o.size().unwrap_or(0)).unwrap_or(0)));
                    }
                }
            }
            Ok(out)
        })
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.get(self.key(tpe, id), None)
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let end = u64::from(offset) + u64::from(length) - 1;
        self.get(self.key(tpe, id), Some(format!("bytes={offset}-{end}")))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.key(tpe, id)
    }
}

impl WriteBackend for S3Dir {
    fn create(&self) -> RusticResult<()> {
        self.rt.block_on(async {
            match self.client.head_bucket().bucket(&self.bucket).send().await {
                Ok(_) => Ok(()),
                Err(_) => self
                    .client
                    .create_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| err("CreateBucket failed", e)),
            }
        })
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let parts = content.into_vec();
        let body = if parts.len() == 1 {
            parts.into_iter().next().unwrap_or_default()
        } else {
            let mut v = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
            for p in parts {
                v.extend_from_slice(&p);
            }
            Bytes::from(v)
        };
        let key = self.key(tpe, id);
        self.rt.block_on(async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| err("PutObject failed", e))
        })
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let key = self.key(tpe, id);
        self.rt.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| err("DeleteObject failed", e))
        })
    }
}
