//! The S3 backend against SeaweedFS beyond plain interop: multipart uploads with parts sent
//! in parallel (read back by restic), and retries with backoff on 5xx answers (through a
//! small fault-injecting proxy in front of SeaweedFS).

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use common::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A TCP proxy to SeaweedFS whose first `fail_first` connections get `503 SlowDown`.
struct FaultyProxy {
    addr: SocketAddr,
    failed: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

async fn refuse(mut sock: TcpStream) {
    // Read the request head and body so the client sees an answer, not a reset.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = sock.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < len {
        let Ok(n) = sock.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        have += n;
    }
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{SLOW_DOWN}",
        SLOW_DOWN.len()
    );
    let _ = sock.write_all(resp.as_bytes()).await;
    let _ = sock.shutdown().await;
}

impl FaultyProxy {
    fn start(fail_first: usize) -> Self {
        let upstream: SocketAddr = env("LIFEBOAT_TEST_S3_ENDPOINT")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("LIFEBOAT_TEST_S3_ENDPOINT is http://IP:PORT");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let failed = Arc::new(AtomicUsize::new(0));
        let f = failed.clone();
        rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                if f.fetch_add(1, Ordering::SeqCst) < fail_first {
                    tokio::spawn(refuse(sock));
                } else {
                    f.fetch_sub(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let mut sock = sock;
                        if let Ok(mut up) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut sock, &mut up).await;
                        }
                    });
                }
            }
        });
        Self {
            addr,
            failed,
            _rt: rt,
        }
    }

    fn refused(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

#[test]
#[ignore = "needs e2e/local"]
fn retries_5xx_with_backoff_and_reports_the_code_when_they_run_out() {
    let bucket = unique("retry");
    let _guard = BucketGuard(bucket.clone());
    let direct = RepoEnv::s3(&bucket, "repo");
    direct.init();

    // Two refused connections: the default five attempts get through.
    let proxy = FaultyProxy::start(2);
    let mut via = direct.clone();
    via.repo = format!("s3:http://{}/{bucket}/repo", proxy.addr);
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path(), 5);
    via.lifeboat(["backup", src.path().to_str().unwrap()]).ok();
    assert_eq!(
        proxy.refused(),
        2,
        "the proxy refused fewer requests than planned"
    );
    assert_eq!(
        direct
            .lifeboat(["snapshots", "--json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // More failures than attempts: a clear error with the S3 code and the storage exit code.
    let proxy = FaultyProxy::start(100);
    via.repo = format!("s3:http://{}/{bucket}/repo", proxy.addr);
    let out = via
        .lifeboat(["snapshots", "--s3-max-attempts", "3"])
        .code(24);
    assert!(out.error_line().contains("SlowDown"), "{}", out.stderr);
    // HEAD with three attempts, then the GET that names the code, with three attempts.
    assert_eq!(proxy.refused(), 6);
}

#[test]
#[ignore = "needs e2e/local"]
fn multipart_parallel_uploads_are_read_back_by_restic() {
    let bucket = unique("multipart");
    let _guard = BucketGuard(bucket.clone());
    let r = RepoEnv::s3(&bucket, "repo");
    r.init();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut x: u64 = 42;
    let data: Vec<u8> = (0..60_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(src.join("big.bin"), &data).unwrap();
    r.lifeboat([
        "backup",
        "--s3-multipart-threshold-mib",
        "8",
        "--s3-part-size-mib",
        "5",
        "--s3-upload-concurrency",
        "4",
        src.to_str().unwrap(),
    ])
    .ok();
    // Multipart objects carry an ETag with a part count suffix ("...-N").
    let admin = S3Admin::new();
    let big_packs = admin.multipart_keys(&bucket, "repo/data/");
    assert!(!big_packs.is_empty(), "no pack was uploaded in parts");
    let check = r.restic(["check", "--read-data"]).ok();
    assert!(
        check.stdout.contains("no errors were found"),
        "{}",
        check.stdout
    );
    let target = work.path().join("restored");
    r.restic(["restore", "latest", "--target", target.to_str().unwrap()])
        .ok();
    assert_same_tree(&src, &restored_path(&target, &src));
}

#[test]
#[ignore = "needs e2e/local"]
fn a_server_that_never_answers_times_out_as_unreachable() {
    // Accepts connections and reads requests but never answers.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let mut r = RepoEnv::s3("any-bucket", "repo");
    r.repo = format!("s3:http://{addr}/any-bucket/repo");
    let t = std::time::Instant::now();
    let out = r
        .lifeboat(["snapshots", "--s3-timeout", "1", "--s3-max-attempts", "2"])
        .code(23);
    assert!(out.error_line().contains("timed out"), "{}", out.stderr);
    eprintln!("hanging endpoint reported after {:?}", t.elapsed());
}

/// A CA and a server certificate for 127.0.0.1 made with the openssl CLI.
fn make_certs(dir: &std::path::Path) {
    let sh = format!(
        "set -e; cd {d}; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=lifeboat-test-ca 2>/dev/null; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null; \
         printf 'subjectAltName=IP:127.0.0.1\\n' > ext; \
         openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 1 -extfile ext 2>/dev/null",
        d = dir.display()
    );
    let ok = std::process::Command::new("sh")
        .args(["-c", &sh])
        .status()
        .unwrap();
    assert!(ok.success(), "openssl failed");
}

#[test]
#[ignore = "needs e2e/local"]
fn custom_ca_bundle_is_trusted_and_required() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let bucket = unique("tls");
    let _guard = BucketGuard(bucket.clone());
    let direct = RepoEnv::s3(&bucket, "repo");
    direct.init();

    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let chain = vec![CertificateDer::from_pem_file(certs.path().join("srv.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(certs.path().join("srv.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let upstream: SocketAddr = env("LIFEBOAT_TEST_S3_ENDPOINT")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    // A TLS-terminating proxy in front of SeaweedFS.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                if let Ok(mut up) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });

    let mut via = direct.clone();
    via.repo = format!("s3:https://{addr}/{bucket}/repo");
    // Without the CA the server is not trusted: a clear unreachable-endpoint error.
    let out = via
        .lifeboat(["snapshots", "--s3-max-attempts", "1"])
        .code(23);
    assert!(
        out.error_line().to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    // With the bundle it works end to end, backup included.
    let ca = certs.path().join("ca.pem");
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path(), 9);
    via.lifeboat([
        "backup",
        "--s3-ca-bundle",
        ca.to_str().unwrap(),
        src.path().to_str().unwrap(),
    ])
    .ok();
    let list = via
        .lifeboat([
            "snapshots",
            "--json",
            "--s3-ca-bundle",
            ca.to_str().unwrap(),
        ])
        .ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // A missing bundle file is an input error, not a network one.
    let out = via
        .lifeboat(["snapshots", "--s3-ca-bundle", "/no/such/ca.pem"])
        .code(3);
    assert!(out.error_line().contains("CA bundle"), "{}", out.stderr);
}
