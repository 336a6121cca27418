//! The image map: which host program stands in for which container image, read from
//! `e2e/images.toml`, and how a container's command/args resolve to an argv (pure).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why an image or a command could not be resolved; the pod worker reports these as a
/// container waiting in `ErrImagePull`/`ImagePullBackOff` or `CreateContainerError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// No entry of the map matches the image's repository.
    #[error(
        "image {image:?} is not in the node's image map ({file}): no host program stands in for repository {repository:?}"
    )]
    NotMapped {
        image: String,
        repository: String,
        file: String,
    },
    /// The entry names `${VAR}` but the agent's environment lacks it.
    #[error(
        "image {image:?} maps to a value using ${{{var}}}, which is not set in the node agent's environment"
    )]
    MissingVariable { image: String, var: String },
    /// The container has neither a command nor an image entrypoint.
    #[error(
        "no command specified: the container has no command and image {image:?} has no entrypoint in the image map"
    )]
    NoCommand { image: String },
    /// command[0] is neither in the image's bin map nor on its PATH.
    #[error("executable {program:?} not found in image {image:?} (bin map and PATH {path:?})")]
    ExecutableNotFound {
        image: String,
        program: String,
        path: Vec<String>,
    },
}

impl ImageError {
    /// The container waiting reason a kubelet would show.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::NotMapped { .. } | ImageError::MissingVariable { .. } => "ErrImagePull",
            ImageError::NoCommand { .. } | ImageError::ExecutableNotFound { .. } => {
                "CreateContainerError"
            }
        }
    }
}

/// Errors loading the image map file itself (fatal at agent start-up).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading image map {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing image map {path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    image: Vec<RawImage>,
}

/// One `[[image]]` table of images.toml.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    /// Repositories (no tag) this entry stands in for.
    #[serde(default)]
    pub names: Vec<String>,
    /// Environment variables of the agent whose values are further image names.
    #[serde(default)]
    pub names_from_env: Vec<String>,
    /// The image's ENTRYPOINT.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// The image's CMD (default args).
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Explicit program names (or absolute in-image paths) mapped to host paths.
    #[serde(default)]
    pub bin: BTreeMap<String, String>,
    /// Host directories searched for a bare command name not in `bin`.
    #[serde(default)]
    pub path: Vec<String>,
    /// The image's ENV (the container's env overrides it).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// The loaded image map.
#[derive(Debug, Clone)]
pub struct ImageMap {
    file: String,
    images_dir: PathBuf,
    entries: Vec<RawImage>,
    /// Agent environment used to expand `${VAR}` (injected for tests).
    vars: BTreeMap<String, String>,
}

/// What a container runs: the resolved host argv and the image's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// argv; argv[0] is an absolute host path.
    pub argv: Vec<String>,
    /// The image's ENV, already expanded.
    pub env: Vec<(String, String)>,
}

/// The repository part of an image reference: tag and digest stripped, Docker Hub's
/// implicit `docker.io/library/` prefix removed so `postgres` and
/// `docker.io/library/postgres:15` match the same entry.
pub fn repository(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let repo = match without_digest[last_slash..].rfind(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    };
    let repo = repo
        .strip_prefix("docker.io/library/")
        .or_else(|| repo.strip_prefix("index.docker.io/library/"))
        .or_else(|| repo.strip_prefix("docker.io/"))
        .unwrap_or(repo);
    repo.to_string()
}

impl ImageMap {
    /// Reads the map; `${IMAGES_DIR}` in values is the directory of the file.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let dir = path
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        Self::parse(
            &text,
            &path.display().to_string(),
            &dir,
            std::env::vars().collect(),
        )
        .map_err(|source| LoadError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    /// Parses the map from text with an explicit environment (pure, for tests).
    pub fn parse(
        text: &str,
        file: &str,
        images_dir: &Path,
        vars: BTreeMap<String, String>,
    ) -> Result<Self, toml::de::Error> {
        let raw: RawFile = toml::from_str(text)?;
        Ok(ImageMap {
            file: file.to_string(),
            images_dir: images_dir.to_path_buf(),
            entries: raw.image,
            vars,
        })
    }

    /// Directory of the entrypoint scripts (`${IMAGES_DIR}`).
    pub fn images_dir(&self) -> &Path {
        &self.images_dir
    }

    fn entry(&self, image: &str) -> Option<&RawImage> {
        let repo = repository(image);
        self.entries.iter().find(|e| {
            e.names.iter().any(|n| repository(n) == repo)
                || e.names_from_env.iter().any(|var| {
                    self.vars
                        .get(var)
                        .is_some_and(|v| !v.is_empty() && repository(v) == repo)
                })
        })
    }

    fn expand(&self, image: &str, value: &str) -> Result<String, ImageError> {
        let mut out = String::new();
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let var = &after[..end];
            let val = if var == "IMAGES_DIR" {
                self.images_dir.display().to_string()
            } else {
                match self.vars.get(var) {
                    Some(v) if !v.is_empty() => v.clone(),
                    _ => {
                        return Err(ImageError::MissingVariable {
                            image: image.to_string(),
                            var: var.to_string(),
                        });
                    }
                }
            };
            out.push_str(&val);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Checks that the image is mapped (the "pull" step).
    pub fn pull(&self, image: &str) -> Result<(), ImageError> {
        let entry = self.entry(image).ok_or_else(|| ImageError::NotMapped {
            image: image.to_string(),
            repository: repository(image),
            file: self.file.clone(),
        })?;
        for e in &entry.entrypoint {
            self.expand(image, e)?;
        }
        Ok(())
    }

    /// The image's ENV, expanded.
    pub fn image_env(&self, image: &str) -> Result<Vec<(String, String)>, ImageError> {
        let entry = self.entry(image).ok_or_else(|| ImageError::NotMapped {
            image: image.to_string(),
            repository: repository(image),
            file: self.file.clone(),
        })?;
        entry
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.expand(image, v)?)))
            .collect()
    }

    /// Resolves a container's command/args (already `$(VAR)`-expanded) against the image,
    /// with Kubernetes' rules: `command` replaces ENTRYPOINT (and drops CMD), `args`
    /// replaces CMD. `exists` says whether a host path is an executable file.
    pub fn resolve(
        &self,
        image: &str,
        command: &[String],
        args: Option<&[String]>,
        exists: &dyn Fn(&Path) -> bool,
    ) -> Result<Resolved, ImageError> {
        let entry = self.entry(image).ok_or_else(|| ImageError::NotMapped {
            image: image.to_string(),
            repository: repository(image),
            file: self.file.clone(),
        })?;
        let mut argv: Vec<String> = if !command.is_empty() {
            let mut v = command.to_vec();
            v.extend(args.unwrap_or_default().iter().cloned());
            v
        } else {
            let mut v = entry
                .entrypoint
                .iter()
                .map(|e| self.expand(image, e))
                .collect::<Result<Vec<_>, _>>()?;
            match args {
                Some(a) => v.extend(a.iter().cloned()),
                None => {
                    for c in &entry.cmd {
                        v.push(self.expand(image, c)?);
                    }
                }
            }
            v
        };
        if argv.is_empty() {
            return Err(ImageError::NoCommand {
                image: image.to_string(),
            });
        }
        argv[0] = self.lookup(image, entry, &argv[0], exists)?;
        let env = entry
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.expand(image, v)?)))
            .collect::<Result<Vec<_>, ImageError>>()?;
        Ok(Resolved { argv, env })
    }

    fn lookup(
        &self,
        image: &str,
        entry: &RawImage,
        program: &str,
        exists: &dyn Fn(&Path) -> bool,
    ) -> Result<String, ImageError> {
        let base = program.rsplit('/').next().unwrap_or(program);
        if let Some(mapped) = entry.bin.get(program).or_else(|| entry.bin.get(base)) {
            return self.expand(image, mapped);
        }
        if program.contains('/') {
            if exists(Path::new(program)) {
                return Ok(program.to_string());
            }
        } else {
            for dir in &entry.path {
                let dir = self.expand(image, dir)?;
                let candidate = Path::new(&dir).join(program);
                if exists(&candidate) {
                    return Ok(candidate.display().to_string());
                }
            }
        }
        Err(ImageError::ExecutableNotFound {
            image: image.to_string(),
            program: program.to_string(),
            path: entry.path.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"
[[image]]
names = ["ghcr.io/lifeboat-dev/lifeboat"]
names_from_env = ["LIFEBOAT_IMAGE"]
entrypoint = ["${LIFEBOAT_BIN}"]

[[image]]
names = ["postgres"]
entrypoint = ["docker-entrypoint.sh"]
cmd = ["postgres"]
path = ["/usr/bin", "/bin"]
env = { PGDATA = "/var/lib/postgresql/data" }
[image.bin]
"docker-entrypoint.sh" = "${IMAGES_DIR}/postgres/docker-entrypoint.sh"

[[image]]
names = ["busybox", "debian"]
path = ["/usr/bin", "/bin"]
cmd = ["sh"]
"#;

    fn map(vars: &[(&str, &str)]) -> ImageMap {
        ImageMap::parse(
            MAP,
            "images.toml",
            Path::new("/imgs"),
            vars.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn on_host(p: &Path) -> bool {
        matches!(
            p.to_str(),
            Some("/bin/sh" | "/usr/bin/sha256sum" | "/opt/x")
        )
    }

    #[test]
    fn repository_strips_tag_digest_and_docker_hub_prefix() {
        assert_eq!(repository("postgres:15"), "postgres");
        assert_eq!(repository("docker.io/library/postgres:15"), "postgres");
        assert_eq!(repository("localhost:5000/a/b:1"), "localhost:5000/a/b");
        assert_eq!(repository("localhost:5000/a/b"), "localhost:5000/a/b");
        assert_eq!(repository("ghcr.io/x/y@sha256:abc"), "ghcr.io/x/y");
        assert_eq!(repository("bitnami/redis:7"), "bitnami/redis");
    }

    #[test]
    fn command_replaces_entrypoint_and_cmd() {
        let m = map(&[]);
        let r = m
            .resolve("busybox:1.36", &["sha256sum".into()], None, &on_host)
            .unwrap();
        assert_eq!(r.argv, vec!["/usr/bin/sha256sum"]);
        let r = m
            .resolve(
                "busybox",
                &["sh".into(), "-c".into()],
                Some(&["echo hi".into()]),
                &on_host,
            )
            .unwrap();
        assert_eq!(r.argv, vec!["/bin/sh", "-c", "echo hi"]);
    }

    #[test]
    fn args_replace_cmd_and_keep_entrypoint() {
        let m = map(&[]);
        let r = m.resolve("postgres:15", &[], None, &on_host).unwrap();
        assert_eq!(
            r.argv,
            vec!["/imgs/postgres/docker-entrypoint.sh", "postgres"]
        );
        assert_eq!(
            r.env,
            vec![("PGDATA".into(), "/var/lib/postgresql/data".into())]
        );
        let r = m
            .resolve(
                "postgres:15",
                &[],
                Some(&["postgres".into(), "-c".into(), "x=1".into()]),
                &on_host,
            )
            .unwrap();
        assert_eq!(r.argv.len(), 4);
    }

    #[test]
    fn lifeboat_image_from_env_and_missing_bin_var() {
        let m = map(&[
            ("LIFEBOAT_IMAGE", "example.com/lb:dev"),
            ("LIFEBOAT_BIN", "/opt/x"),
        ]);
        let r = m
            .resolve(
                "example.com/lb:dev",
                &[],
                Some(&["controller".into()]),
                &on_host,
            )
            .unwrap();
        assert_eq!(r.argv, vec!["/opt/x", "controller"]);
        let r = m
            .resolve("ghcr.io/lifeboat-dev/lifeboat:v1", &[], None, &on_host)
            .unwrap();
        assert_eq!(r.argv, vec!["/opt/x"]);
        let m = map(&[]);
        let e = m
            .resolve("ghcr.io/lifeboat-dev/lifeboat:v1", &[], None, &on_host)
            .unwrap_err();
        assert_eq!(e.reason(), "ErrImagePull");
        assert!(e.to_string().contains("LIFEBOAT_BIN"));
    }

    #[test]
    fn unknown_image_and_unknown_program() {
        let m = map(&[]);
        let e = m.resolve("nginx:1", &[], None, &on_host).unwrap_err();
        assert!(matches!(e, ImageError::NotMapped { .. }));
        assert_eq!(e.reason(), "ErrImagePull");
        assert!(m.pull("nginx").is_err());
        assert!(m.pull("debian:12").is_ok());
        let e = m
            .resolve("debian", &["nosuch".into()], None, &on_host)
            .unwrap_err();
        assert_eq!(e.reason(), "CreateContainerError");
    }
}
