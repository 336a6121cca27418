//! One object upload: a PUT, or a multipart upload with parts sent in parallel above the
//! threshold; with Object Lock, both carry the object's retention.

use std::sync::Arc;

use aws_sdk_s3::{
    Client,
    primitives::ByteStream,
    types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart},
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use super::{PendingUpload, lock::Retention, sdk_error};
use crate::repo::backend::{StoreError, StoreErrorKind};

/// Everything one upload needs, owned, so it can run as a spawned task.
pub(super) struct Upload {
    pub(super) client: Client,
    pub(super) bucket: String,
    pub(super) key: String,
    /// The name relative to the repository root, for errors.
    pub(super) path: String,
    pub(super) data: Bytes,
    pub(super) threshold: u64,
    pub(super) part_size: u64,
    pub(super) lock: Option<Retention>,
}

impl Upload {
    /// Uploads, holding one of `sem`'s permits per request in flight.
    pub(super) async fn send(self, sem: Arc<Semaphore>) -> Result<(), StoreError> {
        if (self.data.len() as u64) > self.threshold {
            return self.multipart(sem).await;
        }
        let _permit = acquire(&sem, &self.path).await?;
        let lock = self.lock.as_ref();
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .set_object_lock_mode(lock.map(|l| l.mode.clone()))
            .set_object_lock_retain_until_date(lock.map(|l| l.until))
            // S3 requires a checksum on writes that carry a retention; the SDK adds one on
            // its own only in `WhenSupported` mode.
            .set_checksum_algorithm(lock.map(|_| ChecksumAlgorithm::Crc32))
            .body(ByteStream::from(self.data))
            .send()
            .await
            .map_err(|e| sdk_error(&self.bucket, "PUT", &self.path, e))?;
        Ok(())
    }

    async fn multipart(self, sem: Arc<Semaphore>) -> Result<(), StoreError> {
        let Upload {
            client,
            bucket,
            key,
            path,
            data,
            part_size,
            lock,
            ..
        } = self;
        let (client, bucket, key, path) = (&client, &bucket, &key, &path);
        let lock = lock.as_ref();
        let checksum = lock.map(|_| ChecksumAlgorithm::Crc32);
        let created = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_object_lock_mode(lock.map(|l| l.mode.clone()))
            .set_object_lock_retain_until_date(lock.map(|l| l.until))
            .set_checksum_algorithm(checksum.clone())
            .send()
            .await
            .map_err(|e| sdk_error(bucket, "PUT", path, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_string();
        let part_size = usize::try_from(part_size).unwrap_or(usize::MAX);
        let parts: Vec<(i32, Bytes)> = (0..data.len())
            .step_by(part_size)
            .enumerate()
            .map(|(i, start)| {
                let end = (start + part_size).min(data.len());
                (
                    i32::try_from(i + 1).unwrap_or(i32::MAX),
                    data.slice(start..end),
                )
            })
            .collect();
        let concurrency = parts.len().max(1);
        let uploaded: Result<Vec<CompletedPart>, StoreError> = futures::stream::iter(parts)
            .map(|(number, body)| {
                let sem = sem.clone();
                let upload_id = upload_id.clone();
                let checksum = checksum.clone();
                async move {
                    let _permit = acquire(&sem, path).await?;
                    let out = client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(&upload_id)
                        .part_number(number)
                        .set_checksum_algorithm(checksum)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .map_err(|e| sdk_error(bucket, "PUT", path, e))?;
                    Ok(CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                        .build())
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await;
        let result = match uploaded {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.part_number());
                client
                    .complete_multipart_upload()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| sdk_error(bucket, "PUT", path, e))
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            // Best effort: an aborted upload frees its parts; a failed abort only leaves
            // parts that a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes.
            let _ = client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

async fn acquire(
    sem: &Arc<Semaphore>,
    path: &str,
) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
    sem.clone()
        .acquire_owned()
        .await
        .map_err(|e| StoreError::new(StoreErrorKind::Other, "PUT", path, e.to_string()))
}

/// The result of a queued upload.
pub(super) async fn join_upload((path, handle): PendingUpload) -> Result<(), StoreError> {
    match handle.await {
        Ok(r) => r,
        Err(e) => Err(StoreError::new(
            StoreErrorKind::Other,
            "PUT",
            path,
            format!("upload task failed: {e}"),
        )),
    }
}

pub(super) fn concat(data: Vec<Bytes>) -> Bytes {
    match data.len() {
        0 => Bytes::new(),
        1 => data.into_iter().next().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(data.iter().map(Bytes::len).sum());
            for chunk in data {
                buf.extend_from_slice(&chunk);
            }
            buf.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_joins_chunks() {
        let b = concat(vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]);
        assert_eq!(&b[..], b"abcd");
        assert_eq!(concat(vec![]), Bytes::new());
    }
}
