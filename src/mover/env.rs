//! Secrets as the mover receives them: environment variables filled from `secretKeyRef`s
//! and files mounted from Secrets, never argv. Nothing here logs or formats a secret.

use std::path::Path;

use super::Error;
use crate::repo::Secret;

/// A non-empty secret from an environment variable.
pub(crate) fn env_secret(var: &str) -> Option<Secret> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new)
}

/// The first line of a secret file (`what` names it in errors).
pub(crate) fn read_secret_file(path: &Path, what: &str) -> Result<Secret, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::input(format!("cannot read {what} file {}: {e}", path.display())))?;
    let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(Error::input(format!(
            "{what} file {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(line))
}

/// The database login of database movers: `LIFEBOAT_DB_USER` and `LIFEBOAT_DB_PASSWORD`.
pub(crate) fn db_login() -> (Option<String>, Option<Secret>) {
    let user = std::env::var("LIFEBOAT_DB_USER")
        .ok()
        .filter(|u| !u.is_empty());
    (user, env_secret("LIFEBOAT_DB_PASSWORD"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_give_their_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\r\nignored\n").unwrap();
        assert_eq!(read_secret_file(&f, "password").unwrap().expose(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        let e = read_secret_file(&f, "password").unwrap_err();
        assert_eq!(e.category(), "InvalidInput");
        assert!(e.to_string().contains("is empty"), "{e}");
        let e = read_secret_file(&dir.path().join("none"), "password").unwrap_err();
        assert!(
            e.to_string().starts_with("cannot read password file"),
            "{e}"
        );
    }
}
