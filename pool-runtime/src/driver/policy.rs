//! The failure policy: what a worker's death does to each batch it held.
//! A pure function of what happened (the batch, what the worker was at, how
//! it ended, the pool's settings) to what to do (which items run again,
//! with how many deaths on their record; which item fails, with which
//! error). `supervise.rs` carries the verdict out.

use std::ops::Range;
use std::time::Duration;

use crate::channel::control::Exit;
use crate::error::{ErrorKind, WorkerDeath};
use crate::sys::Phase;

/// Deaths between items (none to blame) that a batch may see before its
/// first item is blamed: a kill from outside now and then costs nothing,
/// and an input that kills its worker before it starts cannot make the
/// pool fork without end.
pub(crate) const STRAY_LIMIT: u32 = 3;

/// One batch a dead worker held, as the policy needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    /// Items whose outcome had arrived.
    pub(crate) done: u32,
    pub(crate) count: u32,
    /// Workers its items have killed already (a retry).
    pub(crate) attempts: u32,
    /// Workers that died holding it, with no item to blame.
    pub(crate) strays: u32,
    /// It was the oldest batch the worker held: the one it was receiving
    /// or running.
    pub(crate) oldest: bool,
}

/// What the worker was doing with this batch when it died: at `item`, in
/// `phase`, per its step cell; or no item of it under way.
pub(crate) type At = Option<(u32, Phase)>;

/// How the worker ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Death<'a> {
    /// Its exit, in words (`killed by signal 9 (SIGKILL)`).
    pub(crate) how: &'a str,
    /// Its exit, if the transport reported it.
    pub(crate) exit: Option<Exit>,
    pub(crate) pid: i32,
    /// The driver killed it for running past the task timeout, after this long.
    pub(crate) timed_out: Option<Duration>,
    /// It left on its own (its task or memory limit): not a death at all.
    pub(crate) recycled: bool,
}

/// The settings the policy follows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    /// Times an input whose worker died is run again.
    pub(crate) retries: u32,
    pub(crate) task_timeout: Option<Duration>,
}

/// Items of a batch to run again, and the record they carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Again {
    pub(crate) items: Range<u32>,
    pub(crate) attempts: u32,
    pub(crate) strays: u32,
}

/// What to do with one batch of a dead worker.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Items that run again, in order.
    pub(crate) again: Vec<Again>,
    /// The item blamed that ends here, and its error.
    pub(crate) fail: Option<(u32, ErrorKind)>,
}

/// The verdict for batch `held` of a worker that ended as `death` said,
/// while at `at` in it.
pub(crate) fn on_death(held: Held, at: At, death: &Death<'_>, rules: &Rules) -> Verdict {
    let mut verdict = Verdict::default();
    let rest = |items: Range<u32>, strays| Again {
        items,
        attempts: held.attempts,
        strays,
    };
    let blamed = match at {
        Some((item, phase)) if item >= held.done && item < held.count => {
            Some((item, doing(phase).to_string()))
        }
        // The oldest batch of a worker that died between items (a runtime
        // fault, a kill from outside, a frame it could not take in): no
        // item is to blame, but one that keeps killing workers this way
        // is, in the end, its first one.
        _ if held.oldest
            && !death.recycled
            && held.strays >= STRAY_LIMIT
            && held.done < held.count =>
        {
            Some((
                held.done,
                format!(
                    " before its batch started, the {} worker to die so holding it",
                    nth(held.strays + 1)
                ),
            ))
        }
        _ => None,
    };
    let Some((item, doing)) = blamed else {
        let strays = held.strays + u32::from(held.oldest && !death.recycled);
        verdict.again.push(rest(held.done..held.count, strays));
        verdict.again.retain(|a| !a.items.is_empty());
        return verdict;
    };
    // The items before it finished, but their outcomes died with the
    // worker; they run again, as do the items after it.
    verdict.again.push(rest(held.done..item, held.strays));
    let killed = held.attempts + 1;
    let (how, pid) = (death.how, death.pid);
    match death.timed_out {
        Some(ran) => {
            let limit = rules.task_timeout.unwrap_or_default();
            let msg = format!("ran {ran:.1?}{doing}, past the task timeout of {limit:?}; its worker (pid {pid}) was killed and replaced");
            verdict.fail = Some((item, ErrorKind::TimedOut(msg)));
        }
        None if killed <= rules.retries => verdict.again.push(Again {
            items: item..item + 1,
            attempts: killed,
            strays: held.strays,
        }),
        None if rules.retries == 0 => {
            let msg = format!("{how}{doing} (pid {pid})");
            let exit = death.exit.map(Into::into);
            let death = WorkerDeath::new(u32::try_from(pid).ok(), exit, msg);
            verdict.fail = Some((item, ErrorKind::WorkerDied(death)));
        }
        None => {
            let msg = format!(
                "{how}{doing} (pid {pid}); this input has now killed {killed} workers, so it is quarantined, not retried"
            );
            verdict.fail = Some((item, ErrorKind::Quarantined(msg)));
        }
    }
    verdict.again.push(rest(item + 1..held.count, held.strays));
    verdict.again.retain(|a| !a.items.is_empty());
    verdict
}

/// What a worker was doing with an item, as words after the cause.
fn doing(phase: Phase) -> &'static str {
    match phase {
        Phase::Decode => " while decoding the input",
        Phase::Run => "",
        Phase::Encode => " while encoding the result",
    }
}

/// `1st`, `2nd`, `3rd`, `4th`…
fn nth(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        retries: 0,
        task_timeout: None,
    };

    fn held(done: u32, count: u32) -> Held {
        Held {
            done,
            count,
            attempts: 0,
            strays: 0,
            oldest: true,
        }
    }

    fn died<'a>() -> Death<'a> {
        Death {
            how: "killed by signal 9 (SIGKILL)",
            exit: Some(Exit::Signal(9)),
            pid: 42,
            timed_out: None,
            recycled: false,
        }
    }

    fn again(items: Range<u32>, attempts: u32, strays: u32) -> Again {
        Again {
            items,
            attempts,
            strays,
        }
    }

    #[test]
    fn the_item_at_fault_fails_and_the_others_run_again() {
        let v = on_death(held(2, 10), Some((5, Phase::Run)), &died(), &RULES);
        assert_eq!(v.again, vec![again(2..5, 0, 0), again(6..10, 0, 0)]);
        assert_eq!(
            v.fail,
            Some((
                5,
                ErrorKind::WorkerDied(WorkerDeath::new(
                    Some(42),
                    Some(crate::WorkerExit::Signal(9)),
                    "killed by signal 9 (SIGKILL) (pid 42)".into()
                ))
            ))
        );
    }

    #[test]
    fn the_phase_is_said() {
        for (phase, words) in [
            (Phase::Decode, " while decoding the input"),
            (Phase::Encode, " while encoding the result"),
        ] {
            let v = on_death(held(0, 1), Some((0, phase)), &died(), &RULES);
            let Some((0, ErrorKind::WorkerDied(m))) = v.fail else {
                panic!("{v:?}");
            };
            assert_eq!(m, format!("killed by signal 9 (SIGKILL){words} (pid 42)"));
            assert!(v.again.is_empty());
        }
    }

    #[test]
    fn retries_then_quarantine() {
        let rules = Rules {
            retries: 2,
            ..RULES
        };
        let mut b = held(0, 3);
        for attempts in 0..2 {
            b.attempts = attempts;
            let v = on_death(b, Some((1, Phase::Run)), &died(), &rules);
            assert_eq!(v.fail, None);
            // Only the item at fault carries one more death.
            assert_eq!(
                v.again,
                vec![
                    again(0..1, attempts, 0),
                    again(1..2, attempts + 1, 0),
                    again(2..3, attempts, 0)
                ]
            );
        }
        b.attempts = 2;
        let v = on_death(b, Some((1, Phase::Run)), &died(), &rules);
        assert!(
            matches!(&v.fail, Some((1, ErrorKind::Quarantined(m))) if m.contains("killed 3 workers")),
            "{v:?}"
        );
    }

    #[test]
    fn a_timeout_is_never_retried() {
        let rules = Rules {
            retries: 5,
            task_timeout: Some(Duration::from_millis(300)),
        };
        let death = Death {
            timed_out: Some(Duration::from_millis(330)),
            ..died()
        };
        let v = on_death(held(0, 2), Some((0, Phase::Decode)), &death, &rules);
        assert!(
            matches!(&v.fail, Some((0, ErrorKind::TimedOut(m))) if m.contains("while decoding the input") && m.contains("300ms")),
            "{v:?}"
        );
        assert_eq!(v.again, vec![again(1..2, 0, 0)]);
    }

    #[test]
    fn a_stale_or_foreign_item_blames_nobody() {
        // An item before `done` (its outcome arrived) or past the end.
        for at in [Some((1, Phase::Run)), Some((10, Phase::Encode))] {
            let v = on_death(held(2, 10), at, &died(), &RULES);
            assert_eq!(v.fail, None);
            assert_eq!(v.again, vec![again(2..10, 0, 1)]);
        }
    }

    #[test]
    fn strays_count_on_the_oldest_batch_then_blame_its_first_item() {
        let mut b = held(3, 8);
        for strays in 0..STRAY_LIMIT {
            b.strays = strays;
            let v = on_death(b, None, &died(), &RULES);
            assert_eq!(v.again, vec![again(3..8, 0, strays + 1)]);
            assert_eq!(v.fail, None);
        }
        b.strays = STRAY_LIMIT;
        let v = on_death(b, None, &died(), &RULES);
        assert!(
            matches!(&v.fail, Some((3, ErrorKind::WorkerDied(m))) if m.contains("before its batch started, the 4th worker")),
            "{v:?}"
        );
        assert_eq!(v.again, vec![again(4..8, 0, STRAY_LIMIT)]);
        // A batch behind the oldest, or a worker that left on its own,
        // adds no stray.
        let behind = Held {
            oldest: false,
            ..held(0, 4)
        };
        assert_eq!(
            on_death(behind, None, &died(), &RULES).again,
            vec![again(0..4, 0, 0)]
        );
        let recycled = Death {
            recycled: true,
            ..died()
        };
        let v = on_death(held(0, 4), None, &recycled, &RULES);
        assert_eq!(v.again, vec![again(0..4, 0, 0)]);
    }

    #[test]
    fn nothing_left_is_nothing_to_do() {
        let v = on_death(held(4, 4), None, &died(), &RULES);
        assert_eq!(v, Verdict::default());
    }

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111].map(nth).to_vec();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
