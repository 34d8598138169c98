//! The greeting a worker started fresh gets first: the code the driver
//! runs (a fingerprint of every registered function), and which init to
//! run with which arguments. An item (`item.rs`) holding the fingerprint
//! and the init's name, then the encoded arguments to the end of the body.

use super::item::{self, Malformed};

/// One registered function as the fingerprint lists it: its kind (`task`,
/// `exit hook`, `init`), its stable name, and its signature.
pub type Entry = (String, String, String);

/// What a worker started fresh is told before anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The runtime's version.
    pub version: String,
    /// Every registered function of the driver's program, sorted.
    pub code: Vec<Entry>,
    /// The stable name of the init to run.
    pub init: String,
    /// Its arguments, encoded.
    pub args: &'a [u8],
}

impl Hello<'_> {
    /// The body of a `Hello` message.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let head = (&self.version, &self.code, &self.init);
        item::write(&mut out, 0, &head, &mut true).expect("strings always encode");
        out.extend_from_slice(self.args);
        out
    }

    /// A `Hello` body, read.
    pub fn decode(body: &[u8]) -> Result<Hello<'_>, Malformed> {
        let (_, head, args) = item::read(body)?;
        let (version, code, init) = item::decode::<(String, Vec<Entry>, String)>(head)
            .map_err(|_| Malformed("a greeting that does not decode"))?;
        Ok(Hello {
            version,
            code,
            init,
            args,
        })
    }
}

/// The first difference between the driver's code and this program's, in
/// words, or `None` if they are the same.
pub(crate) fn difference(version: (&str, &str), driver: &[Entry], here: &[Entry]) -> Option<String> {
    if version.0 != version.1 {
        return Some(format!(
            "the driver runs pool-runtime {}, this worker {}",
            version.0, version.1
        ));
    }
    let find = |list: &[Entry], kind: &str, name: &str| {
        list.iter()
            .find(|(k, n, _)| k == kind && n == name)
            .map(|(_, _, sig)| sig.clone())
    };
    for (kind, name, sig) in driver {
        match find(here, kind, name) {
            None => return Some(format!("{kind} `{name}` is not in this worker's program")),
            Some(theirs) if theirs != *sig => {
                return Some(format!(
                    "{kind} `{name}` is `{sig}` in the driver but `{theirs}` in this worker"
                ))
            }
            Some(_) => {}
        }
    }
    here.iter()
        .find(|(kind, name, _)| find(driver, kind, name).is_none())
        .map(|(kind, name, _)| format!("{kind} `{name}` is in this worker's program, not in the driver's"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: &str, name: &str, sig: &str) -> Entry {
        (kind.into(), name.into(), sig.into())
    }

    #[test]
    fn a_hello_round_trips() {
        let hello = Hello {
            version: "0.1.0".into(),
            code: vec![e("task", "a::square", "fn(u64) -> u64")],
            init: "a::open".into(),
            args: &[1, 2, 3],
        };
        let body = hello.encode();
        assert_eq!(Hello::decode(&body).unwrap(), hello);
        assert!(Hello::decode(&body[..3]).is_err());
        assert!(Hello::decode(&[]).is_err());
    }

    #[test]
    fn the_first_difference_is_named() {
        let driver = [e("task", "a::one", "u64 -> u64"), e("task", "a::two", "u8 -> u8")];
        assert_eq!(difference(("1", "1"), &driver, &driver), None);
        let changed = [e("task", "a::one", "u32 -> u64"), e("task", "a::two", "u8 -> u8")];
        assert_eq!(
            difference(("1", "1"), &driver, &changed).unwrap(),
            "task `a::one` is `u64 -> u64` in the driver but `u32 -> u64` in this worker"
        );
        assert!(difference(("1", "1"), &driver, &driver[..1])
            .unwrap()
            .contains("`a::two` is not in this worker's program"));
        assert!(difference(("1", "1"), &driver[..1], &driver)
            .unwrap()
            .contains("`a::two` is in this worker's program, not in the driver's"));
        assert!(difference(("1", "2"), &driver, &driver).unwrap().contains("pool-runtime 1"));
    }
}
