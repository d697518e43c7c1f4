//! Whether a setuid or setgid program may follow the configuration file: only when no
//! user but root can have written it. A pure rule over the opened file's owner and mode
//! (`fstat` of the very fd that is read), so it is tested without being root.

/// Why a file is not trusted, for the warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distrust {
    /// Owned by this uid, not root: its owner could write anything in it.
    NotRoot(u32),
    /// Group or others may write it (the mode's permission bits shown).
    Writable(u32),
}

impl std::fmt::Display for Distrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Distrust::NotRoot(uid) => write!(f, "is owned by uid {uid}, not root"),
            Distrust::Writable(mode) => write!(
                f,
                "is writable by group or others (mode {:04o})",
                mode & 0o7777
            ),
        }
    }
}

/// Owned by root and not writable by group or others.
pub fn check(owner: u32, mode: u32) -> Result<(), Distrust> {
    if owner != 0 {
        return Err(Distrust::NotRoot(owner));
    }
    if mode & (libc::S_IWGRP | libc::S_IWOTH) != 0 {
        return Err(Distrust::Writable(mode));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGULAR: u32 = libc::S_IFREG;

    #[test]
    fn root_owned_and_written_only_by_root() {
        for mode in [0o644, 0o600, 0o400, 0o444, 0o640, 0o755, 0o4644] {
            assert_eq!(check(0, REGULAR | mode), Ok(()), "{mode:o}");
        }
    }

    #[test]
    fn writable_by_group_or_others() {
        for mode in [0o664, 0o646, 0o666, 0o622, 0o660, 0o602, 0o777] {
            assert_eq!(
                check(0, REGULAR | mode),
                Err(Distrust::Writable(REGULAR | mode)),
                "{mode:o}"
            );
        }
        assert!(check(0, REGULAR | 0o666)
            .unwrap_err()
            .to_string()
            .contains("mode 0666"));
    }

    #[test]
    fn owned_by_anyone_but_root() {
        for owner in [1, 1000, 65534, u32::MAX] {
            assert_eq!(check(owner, REGULAR | 0o644), Err(Distrust::NotRoot(owner)));
        }
        // Ownership first: a user's file is untrusted whatever its mode.
        assert_eq!(check(1000, REGULAR | 0o400), Err(Distrust::NotRoot(1000)));
    }
}
