//! The filesystem rules, with Landlock (`landlock(7)`): reads beneath the
//! readable paths (`/` unless some were given), reads and writes beneath
//! the writable ones, nothing else; executing nothing.

use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, ABI,
};

use super::Files;

/// The rights handled: those of Landlock ABI 3 (Linux 6.2), whose
/// write rights cover truncation; an older kernel enforces fewer of them
/// (`Outcome::Partly`).
const ABI_USED: ABI = ABI::V3;

/// How far the rules took hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Enforced,
    /// Some rights are beyond this kernel's Landlock.
    Partly,
    /// This kernel has no Landlock, or it is disabled.
    Not,
}

/// Restricts this thread (and the threads it starts) to `files`.
pub(crate) fn restrict(files: &Files) -> Result<Outcome, String> {
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let all = AccessFs::from_all(ABI_USED);
    let write = all & !AccessFs::Execute;
    let root = [PathBuf::from("/")];
    let readable = if files.read.is_empty() { &root[..] } else { &files.read[..] };
    let rules = readable
        .iter()
        .map(|p| (p, read))
        .chain(files.write.iter().map(|p| (p, write)));
    let why = |e: &dyn std::fmt::Display| format!("the Landlock rules cannot be applied: {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(all)
        .map_err(|e| why(&e))?
        .create()
        .map_err(|e| why(&e))?;
    for (path, access) in rules {
        ruleset = ruleset.add_rule(beneath(path, access)?).map_err(|e| why(&e))?;
    }
    let status = ruleset.restrict_self().map_err(|e| why(&e))?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Outcome::Enforced,
        RulesetStatus::PartiallyEnforced => Outcome::Partly,
        RulesetStatus::NotEnforced => Outcome::Not,
    })
}

/// The rule for `path`, whose rights a file (not a directory) narrows.
fn beneath(path: &Path, access: BitFlags<AccessFs>) -> Result<PathBeneath<PathFd>, String> {
    let fd = PathFd::new(path)
        .map_err(|e| format!("the sandbox's path {} cannot be opened: {e}", path.display()))?;
    let access = if path.is_dir() {
        access
    } else {
        access & AccessFs::from_file(ABI_USED)
    };
    Ok(PathBeneath::new(fd, access))
}
