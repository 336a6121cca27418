//! The operator client's connection to the cluster: a kube client from the kubeconfig
//! (like kubectl: `KUBECONFIG`, the current or a given context, its namespace), and the
//! translation of API failures into errors that say what to do: CRDs not installed,
//! permission denied for a named verb and resource, object not found.

use k8s_openapi::api::core::v1::Namespace;
use kube::config::KubeConfigOptions;
use kube::{Api, Client};

use super::super::CliError;
use crate::crd::{GROUP, VERSION};

/// A connected client and where commands act by default.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    /// The context's namespace (`default` when the context names none).
    pub default_namespace: String,
}

impl Cluster {
    /// Connects as kubectl would: the kubeconfig of `KUBECONFIG` (or `~/.kube/config`),
    /// the given context or the current one; inside a pod without a kubeconfig, the
    /// in-cluster configuration.
    pub async fn connect(context: Option<&str>) -> Result<Self, CliError> {
        let opts = KubeConfigOptions {
            context: context.map(str::to_string),
            ..KubeConfigOptions::default()
        };
        let config = match kube::Config::from_kubeconfig(&opts).await {
            Ok(c) => c,
            Err(kubeconfig_err) => {
                if context.is_some() {
                    return Err(client_error(format!(
                        "cannot use the kubeconfig context {:?}: {kubeconfig_err}",
                        context.unwrap_or_default()
                    )));
                }
                kube::Config::incluster().map_err(|_| {
                    client_error(format!(
                        "no Kubernetes configuration: {kubeconfig_err} (set KUBECONFIG, or run \
                         inside a pod)"
                    ))
                })?
            }
        };
        let default_namespace = config.default_namespace.clone();
        let client = Client::try_from(config)
            .map_err(|e| client_error(format!("cannot build a Kubernetes client: {e}")))?;
        Ok(Cluster {
            client,
            default_namespace,
        })
    }

    /// A client for an API server at `url` without TLS or credentials (tests).
    #[cfg(test)]
    pub fn plain(url: &str) -> Self {
        let config = kube::Config::new(url.parse().expect("test URL"));
        Cluster {
            client: Client::try_from(config).expect("client"),
            default_namespace: "default".into(),
        }
    }

    /// The namespace a command acts in: the flag, else the context's.
    pub fn namespace(&self, flag: Option<&str>) -> String {
        flag.map_or_else(|| self.default_namespace.clone(), str::to_string)
    }

    /// Explains a failed API call in terms of what the user can do about it. `call` names
    /// what was attempted; a 404 is told apart (with one discovery request) into "the CRDs
    /// are not installed" and "the object does not exist".
    pub async fn explain(&self, call: &Call<'_>, e: kube::Error) -> CliError {
        let status = match &e {
            kube::Error::Api(s) => s,
            _ => {
                return CliError {
                    category: "KubernetesApi",
                    message: format!("cannot {}: {e}", call.describe()),
                };
            }
        };
        match status.code {
            401 => CliError {
                category: "Unauthorized",
                message: format!(
                    "the API server rejected your credentials (401 Unauthorized) while trying to \
                     {}: log in again or pick another context (--context)",
                    call.describe()
                ),
            },
            403 => CliError {
                category: "Forbidden",
                message: format!(
                    "permission denied: you may not {}. The API server said: {}. {}",
                    call.describe(),
                    status.message.trim_end_matches('.'),
                    call.rbac_hint()
                ),
            },
            404 => {
                match crds_missing(&self.client, call.resource).await {
                    Some(missing) => missing,
                    // The group and the resource are served: the object itself is missing.
                    None => not_found(call),
                }
            }
            _ => CliError {
                category: "KubernetesApi",
                message: format!(
                    "cannot {}: {} ({})",
                    call.describe(),
                    status.message,
                    status.code
                ),
            },
        }
    }

    /// Whether a namespace exists (for a clear error before creating objects in it).
    pub async fn require_namespace(&self, ns: &str) -> Result<(), CliError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        match api.get_opt(ns).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(CliError {
                category: "NotFound",
                message: format!("namespace {ns} does not exist"),
            }),
            // Users with rights in a namespace often may not read Namespace objects; the
            // later call reports its own error then.
            Err(_) => Ok(()),
        }
    }
}

fn client_error(message: String) -> CliError {
    CliError {
        category: "KubernetesClient",
        message,
    }
}

/// One API call, for error messages: `list backuppolicies.lifeboat.dev in namespace shop`.
#[derive(Clone, Debug)]
pub struct Call<'a> {
    /// The RBAC verb: get, list, create, ...
    pub verb: &'static str,
    /// The resource's plural (Lifeboat's kinds are in `lifeboat.dev`).
    pub resource: &'static str,
    /// The object's kind, for "not found" messages.
    pub kind: &'static str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub fn new(verb: &'static str, resource: &'static str, kind: &'static str) -> Self {
        Call {
            verb,
            resource,
            kind,
            namespace: None,
            name: None,
        }
    }

    pub fn ns(mut self, ns: &'a str) -> Self {
        self.namespace = Some(ns);
        self
    }

    pub fn name(mut self, name: &'a str) -> Self {
        self.name = Some(name);
        self
    }

    fn qualified(&self) -> String {
        if is_lifeboat(self.resource) {
            format!("{}.{GROUP}", self.resource)
        } else {
            self.resource.to_string()
        }
    }

    /// `list backuppolicies.lifeboat.dev in namespace shop`
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.verb, self.qualified());
        if let Some(n) = self.name {
            s.push_str(&format!(" {n:?}"));
        }
        match self.namespace {
            Some(ns) => s.push_str(&format!(" in namespace {ns}")),
            None if self.resource_is_namespaced() => s.push_str(" in any namespace"),
            None => {}
        }
        s
    }

    fn resource_is_namespaced(&self) -> bool {
        !matches!(self.resource, "clusterbackupstores" | "namespaces")
    }

    fn rbac_hint(&self) -> String {
        let writes = matches!(self.verb, "create" | "update" | "patch" | "delete");
        if !is_lifeboat(self.resource) {
            return "Ask a cluster administrator for that permission.".into();
        }
        if self.resource == "clusterbackupstores" {
            return "ClusterBackupStores are for cluster administrators.".into();
        }
        let role = if writes {
            "edit (the chart aggregates lifeboat-edit into the built-in edit and admin roles)"
        } else {
            "view (the chart aggregates lifeboat-view into the built-in view role)"
        };
        let scope = match self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "cluster-wide (or use -n NAMESPACE)".into(),
        };
        format!("Ask for the {role} role {scope}.")
    }
}

fn is_lifeboat(resource: &str) -> bool {
    matches!(
        resource,
        "backupstores"
            | "clusterbackupstores"
            | "backuppolicies"
            | "backups"
            | "restores"
            | "drdrills"
            | "drillruns"
    )
}

fn not_found(call: &Call<'_>) -> CliError {
    let what = match call.name {
        Some(n) => format!("{} {n}", call.kind),
        None => call.kind.to_string(),
    };
    let message = match call.namespace {
        Some(ns) => format!("{what} not found in namespace {ns}"),
        None => format!("{what} not found"),
    };
    CliError {
        category: "NotFound",
        message,
    }
}

/// When a Lifeboat resource answered 404: is the group (or this resource of it) missing
/// from the API server? `None` when both are served.
async fn crds_missing(client: &Client, resource: &str) -> Option<CliError> {
    if !is_lifeboat(resource) {
        return None;
    }
    let gv = format!("{GROUP}/{VERSION}");
    let hint = "install them with the Helm chart (helm install lifeboat charts/lifeboat -n \
                lifeboat-system --create-namespace) or `kubectl apply -f crds/`";
    match client.list_api_group_resources(&gv).await {
        Ok(list) if list.resources.iter().any(|r| r.name == resource) => None,
        Ok(_) => Some(CliError {
            category: "CrdsMissing",
            message: format!(
                "the Lifeboat CRDs are not installed in this cluster: {gv} is served but has no \
                 {resource} (the installed CRDs are older than this lifeboat); {hint}"
            ),
        }),
        Err(kube::Error::Api(s)) if s.code == 404 => Some(CliError {
            category: "CrdsMissing",
            message: format!(
                "the Lifeboat CRDs are not installed in this cluster: the API server does not \
                 serve {gv}; {hint}"
            ),
        }),
        // Discovery failed otherwise: say what we know without guessing.
        Err(e) => Some(CliError {
            category: "KubernetesApi",
            message: format!(
                "{resource}.{GROUP} answered 404 and the API discovery of {gv} failed: {e}"
            ),
        }),
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A fake API server on loopback for the error paths: each request gets the answer
    //! of the first route whose path prefix matches (status, JSON body), else a plain
    //! `404 page not found` as kube-apiserver sends for paths it does not serve.

    use std::convert::Infallible;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::Response;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    pub type Route = (&'static str, u16, String);

    /// Serves `routes` until the test ends; returns the base URL.
    pub async fn serve(routes: Vec<Route>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Arc::new(routes);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let routes = routes.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let routes = routes.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let hit = routes.iter().find(|(p, _, _)| path.starts_with(p));
                            let (code, body, ct) = match hit {
                                Some((_, code, body)) => (*code, body.clone(), "application/json"),
                                None => (404, "404 page not found\n".to_string(), "text/plain"),
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(code)
                                    .header("content-type", ct)
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    /// A kube-apiserver `Status` body.
    pub fn status(code: u16, reason: &str, message: &str) -> String {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": message, "reason": reason, "code": code})
        .to_string()
    }

    /// Discovery of lifeboat.dev/v1alpha1 listing `resources`.
    pub fn discovery(resources: &[&str]) -> String {
        let rs: Vec<_> = resources
            .iter()
            .map(|r| {
                serde_json::json!({"name": r, "singularName": "", "namespaced": true,
                "kind": "X", "verbs": ["get", "list"]})
            })
            .collect();
        serde_json::json!({"kind": "APIResourceList", "groupVersion": "lifeboat.dev/v1alpha1",
            "resources": rs})
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{discovery, serve, status};
    use super::*;
    use crate::crd::BackupPolicy;

    async fn list_policies(url: &str) -> CliError {
        let cluster = Cluster::plain(url);
        let api: Api<BackupPolicy> = Api::namespaced(cluster.client.clone(), "shop");
        let e = api.list(&Default::default()).await.unwrap_err();
        cluster
            .explain(
                &Call::new("list", "backuppolicies", "BackupPolicy").ns("shop"),
                e,
            )
            .await
    }

    #[tokio::test]
    async fn a_cluster_without_the_group_says_the_crds_are_missing() {
        // kube-apiserver answers plain-text 404s for a group it does not serve.
        let url = serve(vec![]).await;
        let e = list_policies(&url).await;
        assert_eq!(e.category, "CrdsMissing");
        assert!(
            e.message
                .starts_with("the Lifeboat CRDs are not installed in this cluster: "),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("kubectl apply -f crds/"),
            "{}",
            e.message
        );
        assert_eq!(e.exit_code(), 51);
    }

    #[tokio::test]
    async fn an_older_crd_set_without_the_resource_says_so() {
        let url = serve(vec![(
            "/apis/lifeboat.dev/v1alpha1",
            200,
            discovery(&["backupstores", "backups"]),
        )])
        .await;
        let cluster = Cluster::plain(&url);
        let e = cluster
            .explain(
                &Call::new("list", "drdrills", "DRDrill").ns("shop"),
                kube::Error::Api(
                    kube::core::Status::failure("404 page not found", "NotFound")
                        .with_code(404)
                        .boxed(),
                ),
            )
            .await;
        assert_eq!(e.category, "CrdsMissing");
        assert!(e.message.contains("has no drdrills"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_missing_object_is_not_found_when_the_crds_are_there() {
        let url = serve(vec![
            (
                "/apis/lifeboat.dev/v1alpha1/namespaces/",
                404,
                status(
                    404,
                    "NotFound",
                    "backuppolicies.lifeboat.dev \"x\" not found",
                ),
            ),
            (
                "/apis/lifeboat.dev/v1alpha1",
                200,
                discovery(&["backuppolicies"]),
            ),
        ])
        .await;
        let cluster = Cluster::plain(&url);
        let api: Api<BackupPolicy> = Api::namespaced(cluster.client.clone(), "shop");
        let e = api.get("x").await.unwrap_err();
        let e = cluster
            .explain(
                &Call::new("get", "backuppolicies", "BackupPolicy")
                    .ns("shop")
                    .name("x"),
                e,
            )
            .await;
        assert_eq!(e.category, "NotFound");
        assert_eq!(e.message, "BackupPolicy x not found in namespace shop");
    }

    #[tokio::test]
    async fn forbidden_names_the_verb_the_resource_and_the_role_to_ask_for() {
        let msg = "backuppolicies.lifeboat.dev is forbidden: User \"system:serviceaccount:a:b\" \
                   cannot list resource \"backuppolicies\" in API group \"lifeboat.dev\" in the \
                   namespace \"shop\"";
        let url = serve(vec![("/apis/", 403, status(403, "Forbidden", msg))]).await;
        let e = list_policies(&url).await;
        assert_eq!(e.category, "Forbidden");
        assert!(
            e.message.starts_with(
                "permission denied: you may not list backuppolicies.lifeboat.dev in namespace shop."
            ),
            "{}",
            e.message
        );
        assert!(e.message.contains("system:serviceaccount:a:b"));
        assert!(e.message.contains("view"), "{}", e.message);
        assert_eq!(e.exit_code(), 52);
    }

    #[test]
    fn writes_ask_for_edit() {
        let c = Call::new("create", "backups", "Backup").ns("shop");
        assert_eq!(
            c.describe(),
            "create backups.lifeboat.dev in namespace shop"
        );
        assert!(c.rbac_hint().contains("edit"));
        let all = Call::new("list", "backuppolicies", "BackupPolicy");
        assert_eq!(
            all.describe(),
            "list backuppolicies.lifeboat.dev in any namespace"
        );
    }
}
