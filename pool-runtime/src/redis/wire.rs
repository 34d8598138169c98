//! What goes through Redis: the settings hosts run a pool with, the fields
//! of task and reply entries, and the Lua scripts that make each step that
//! must be atomic one step. Everything read back from Redis is untrusted,
//! as a worker's frames are: lengths are checked, counts bounded.

use std::time::Duration;

use redis::Value;

/// How hosts run a pool's batches: what the driver's builder said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostConfig {
    /// A host that has not renewed its lease for this long is taken for
    /// dead, and its entries are given to others.
    pub(crate) lease: Duration,
    /// Deliveries of an entry (to hosts that died holding it) after which
    /// its inputs are quarantined.
    pub(crate) max_deliveries: u32,
    pub(crate) retries: u32,
    pub(crate) task_timeout: Option<Duration>,
    pub(crate) init_timeout: Option<Duration>,
    pub(crate) respawn_limit: u32,
    pub(crate) max_frame: usize,
    pub(crate) max_tasks: Option<u64>,
    /// The exit hook a host runs on each of its workers as it leaves.
    pub(crate) exit_hook: Option<u32>,
}

impl HostConfig {
    /// In words: `1 lease_ms deliveries retries task_ms init_ms respawn frame tasks hook`.
    pub(crate) fn to_text(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        format!(
            "1 {} {} {} {} {} {} {} {} {}",
            self.lease.as_millis(),
            self.max_deliveries,
            self.retries,
            opt(self.task_timeout.map(|d| d.as_millis() as u64)),
            opt(self.init_timeout.map(|d| d.as_millis() as u64)),
            self.respawn_limit,
            self.max_frame,
            opt(self.max_tasks),
            opt(self.exit_hook.map(u64::from)),
        )
    }

    pub(crate) fn parse(text: &str) -> Option<HostConfig> {
        let f: Vec<&str> = text.split(' ').collect();
        if f.len() != 10 || f[0] != "1" {
            return None;
        }
        let num = |i: usize| f[i].parse::<u64>().ok();
        let opt = |i: usize| -> Option<Option<u64>> {
            match f[i] {
                "-" => Some(None),
                n => n.parse().ok().map(Some),
            }
        };
        let lease = num(1).filter(|&ms| ms > 0)?;
        Some(HostConfig {
            lease: Duration::from_millis(lease),
            max_deliveries: num(2)?.try_into().ok()?,
            retries: num(3)?.try_into().ok()?,
            task_timeout: opt(4)?.map(Duration::from_millis),
            init_timeout: opt(5)?.map(Duration::from_millis),
            respawn_limit: u32::try_from(num(6)?).ok()?.max(1),
            max_frame: usize::try_from(num(7)?)
                .ok()?
                .clamp(1024, crate::channel::frame::MAX_FRAME),
            max_tasks: opt(8)?,
            exit_hook: match opt(9)? {
                Some(h) => Some(h.try_into().ok()?),
                None => None,
            },
        })
    }
}

/// One stream entry: its id and its fields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// The value of field `name`, if it is there.
    pub(crate) fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// Field `name` as a decimal number.
    pub(crate) fn number<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        std::str::from_utf8(self.field(name)?).ok()?.parse().ok()
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(n) => Some(n.to_string().into_bytes()),
        _ => None,
    }
}

/// One `[id, [field, value, …]]` array; `None` for a deleted entry (nil fields).
pub(crate) fn entry(v: &Value) -> Option<Entry> {
    let Value::Array(parts) = v else { return None };
    let [id, fields] = parts.as_slice() else {
        return None;
    };
    let id = String::from_utf8(bytes(id)?).ok()?;
    let Value::Array(flat) = fields else {
        return None;
    };
    let mut pairs = Vec::with_capacity(flat.len() / 2);
    for kv in flat.chunks_exact(2) {
        pairs.push((bytes(&kv[0])?, bytes(&kv[1])?));
    }
    Some(Entry { id, fields: pairs })
}

/// The entries of an `XREAD`/`XREADGROUP` answer for one stream (nil: none).
pub(crate) fn read_reply(v: &Value) -> Vec<Entry> {
    let Value::Array(streams) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for s in streams {
        if let Value::Array(pair) = s {
            if let Some(Value::Array(entries)) = pair.get(1) {
                out.extend(entries.iter().filter_map(entry));
            }
        }
    }
    out
}

/// Sends the replies of entries, each only if this consumer still owns
/// its entry: the owned ones' replies go as one reply entry (`k = g`,
/// their [`reply_piece`]s back to back in `g`), and their entries are
/// acknowledged and deleted. An entry that went to another host (this
/// host's lease lapsed) gets nothing from this one but a count: a reply
/// `k = l` says how many were dropped so, for the driver's tally of
/// duplicates. Returns how many were sent; -1 if the pool is gone.
///
/// KEYS: tasks, replies, hello. ARGV: group, consumer, host, then two
/// values per entry: its id and its reply piece. The reply stream expires
/// with the pool's hello.
pub(crate) const REPLY: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
local sent = {}
local pieces = {}
local late = 0
for at = 4, #ARGV - 1, 2 do
  local id = ARGV[at]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #p > 0 and p[1][2] == ARGV[2] then
    sent[#sent + 1] = id
    pieces[#pieces + 1] = ARGV[at + 1]
  else
    late = late + 1
  end
end
if #sent > 0 then
  local g = pieces[1]
  if #pieces > 1 then g = table.concat(pieces) end
  redis.call('XADD', KEYS[2], '*', 'k', 'g', 'h', ARGV[3], 'g', g)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(sent))
  redis.call('XDEL', KEYS[1], unpack(sent))
end
if late > 0 then
  redis.call('XADD', KEYS[2], '*', 'k', 'l', 'n', late, 'h', ARGV[3])
end
if #sent > 0 or late > 0 then
  local ttl = redis.call('PTTL', KEYS[3])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return #sent
"#;

/// One entry's reply within a group reply ([`REPLY`]): the outcomes of
/// `count` items from `first` of batch `tag`, computed in `nanos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece<'a> {
    pub(crate) tag: u64,
    pub(crate) nanos: u64,
    pub(crate) first: u32,
    pub(crate) count: u32,
    pub(crate) body: &'a [u8],
}

/// Bytes before a piece's body: tag, nanos, first, count, body length.
const PIECE_HEAD: usize = 8 + 8 + 4 + 4 + 4;

/// Appends `p` as a reply piece (little-endian head, then the body).
pub(crate) fn reply_piece(out: &mut Vec<u8>, p: &Piece<'_>) {
    out.reserve(PIECE_HEAD + p.body.len());
    out.extend_from_slice(&p.tag.to_le_bytes());
    out.extend_from_slice(&p.nanos.to_le_bytes());
    out.extend_from_slice(&p.first.to_le_bytes());
    out.extend_from_slice(&p.count.to_le_bytes());
    out.extend_from_slice(&(p.body.len() as u32).to_le_bytes());
    out.extend_from_slice(p.body);
}

/// The pieces of a group reply, in order; `Err` with those read before
/// the first malformed one (bytes from Redis: anyone with access may have
/// written them), whose batches then wait as for a lost reply.
pub(crate) fn reply_pieces(mut bytes: &[u8]) -> Result<Vec<Piece<'_>>, Vec<Piece<'_>>> {
    let mut out = Vec::new();
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"));
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"));
    while !bytes.is_empty() {
        if bytes.len() < PIECE_HEAD {
            return Err(out);
        }
        let len = u32_at(bytes, 24) as usize;
        let Some(body) = bytes.get(PIECE_HEAD..PIECE_HEAD + len) else {
            return Err(out);
        };
        out.push(Piece {
            tag: u64_at(bytes, 0),
            nanos: u64_at(bytes, 8),
            first: u32_at(bytes, 16),
            count: u32_at(bytes, 20),
            body,
        });
        bytes = &bytes[PIECE_HEAD + len..];
    }
    Ok(out)
}

/// Takes entries of hosts whose lease has lapsed, at most `ARGV[5]`: each
/// moves to this consumer. A host's consumers (`host/n`) mark the entry
/// each is running before it runs it; an entry is charged for the death
/// (its delivery count up by one) only if its consumer had marked it, or
/// had marked none, so that the entries a consumer held, taken but not
/// started, are not blamed for what another input did. Returns
/// `[id, deliveries, fields]` for each. A departed host's consumer left
/// with nothing pending is removed, with its mark.
///
/// KEYS: tasks, hello. ARGV: group, consumer, lease key prefix, how many
/// pending entries to look at, how many to take, mark key prefix.
pub(crate) const RECLAIM: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 then return {} end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', tonumber(ARGV[4]))
local alive = {}
local marks = {}
local out = {}
local most = tonumber(ARGV[5]) or 1000
for _, e in ipairs(pending) do
  if #out >= most then break end
  local owner = e[2]
  if owner ~= ARGV[2] then
    local host = string.match(owner, '^(.+)/%d+$') or owner
    if alive[host] == nil then
      alive[host] = redis.call('EXISTS', ARGV[3] .. host) == 1
    end
    if not alive[host] then
      if marks[owner] == nil then
        marks[owner] = redis.call('GET', ARGV[6] .. owner)
      end
      local m = marks[owner]
      local got
      local n = e[4]
      if m == false or m == e[1] then
        got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, e[1])
        n = n + 1
      else
        got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, e[1], 'RETRYCOUNT', n)
      end
      if got[1] then
        out[#out + 1] = {got[1][1], n, got[1][2]}
      end
    end
  end
end
for owner, _ in pairs(marks) do
  local left = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, owner)
  if #left == 0 then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], owner)
    redis.call('DEL', ARGV[6] .. owner)
  end
end
return out
"#;

/// A host's heartbeat: renews its lease while the pool lives. Returns 1,
/// 2 if the lease had lapsed (its entries may be another's now), 0 if the
/// pool is gone, 3 if the driver is ending it.
///
/// Its consumers' marks (see [`RECLAIM`]) are kept for ten leases more.
///
/// KEYS: hello, lease, hosts. ARGV: lease ms, host id, what it runs, mark
/// key prefix, how many consumers.
pub(crate) const HEARTBEAT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local had = redis.call('SET', KEYS[2], '1', 'PX', ARGV[1], 'XX')
if not had then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
end
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
for i = 0, tonumber(ARGV[5]) - 1 do
  redis.call('PEXPIRE', ARGV[4] .. ARGV[2] .. '/' .. i, 10 * tonumber(ARGV[1]))
end
if redis.call('HEXISTS', KEYS[1], 'closing') == 1 then return 3 end
if not had then return 2 end
return 1
"#;

/// Writes field `ARGV[1]` = `ARGV[2]` in hash `KEYS[2]` only while the pool
/// (its hello, `KEYS[1]`) exists: a host never brings a pool's keys back.
pub(crate) const HSET_IF_LIVE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"#;

/// A host leaves: its consumers with nothing pending and their marks (all
/// marks, if the pool is gone), its lease and its entry in the hosts hash
/// go. A consumer that left entries (taken, never started: it finishes the
/// one it runs before it leaves) is marked `-`, an entry no stream holds,
/// so that none of them is charged when others take them.
///
/// KEYS: tasks, lease, hosts. ARGV: group, host id, mark key prefix, how
/// many consumers, how long a mark lives (ms).
pub(crate) const LEAVE: &str = r#"
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[2])
for i = 0, tonumber(ARGV[4]) - 1 do
  local name = ARGV[2] .. '/' .. i
  local ok, left = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', 1, name)
  if not ok or #left == 0 then
    if ok then pcall(redis.call, 'XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name) end
    redis.call('DEL', ARGV[3] .. name)
  else
    redis.call('SET', ARGV[3] .. name, '-', 'PX', ARGV[5])
  end
end
return 1
"#;

/// What a host says of itself in the pool's hosts hash.
pub(crate) fn host_entry(workers: usize, pid: u32) -> String {
    format!("{workers} workers, pid {pid}")
}

/// How many workers a host's [`host_entry`] says it runs; one, if it says
/// nothing readable (anyone with access to Redis may have written it).
pub(crate) fn host_workers(entry: &str) -> usize {
    entry
        .split_once(' ')
        .and_then(|(n, _)| n.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, 1 << 16)
}

/// An entry [`RECLAIM`] returned: `[id, deliveries, fields]`.
pub(crate) fn claimed(v: &Value) -> Vec<(Entry, u32)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(parts) = item else {
                return None;
            };
            let [id, deliveries, fields] = parts.as_slice() else {
                return None;
            };
            let deliveries = match deliveries {
                Value::Int(n) => u32::try_from(*n).ok()?,
                other => std::str::from_utf8(&bytes(other)?).ok()?.parse().ok()?,
            };
            let e = entry(&Value::Array(vec![id.clone(), fields.clone()]))?;
            Some((e, deliveries))
        })
        .collect()
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_pieces_read_back_in_order_and_a_cut_one_is_refused() {
        let pieces = [
            Piece { tag: 7, nanos: 1_000, first: 0, count: 2, body: b"ab" },
            Piece { tag: u64::MAX, nanos: 0, first: u32::MAX, count: 1, body: b"" },
        ];
        let mut bytes = Vec::new();
        for p in &pieces {
            reply_piece(&mut bytes, p);
        }
        assert_eq!(reply_pieces(&bytes), Ok(pieces.to_vec()));
        assert_eq!(reply_pieces(&[]), Ok(Vec::new()));
        // Cut anywhere: what came whole before it, never a panic.
        for cut in 0..bytes.len() {
            let got = reply_pieces(&bytes[..cut]);
            let whole = if cut >= PIECE_HEAD + 2 { 1 } else { 0 };
            if cut == 0 {
                assert_eq!(got, Ok(Vec::new()));
            } else if cut == PIECE_HEAD + 2 {
                assert_eq!(got, Ok(pieces[..1].to_vec()));
            } else {
                assert_eq!(got, Err(pieces[..whole].to_vec()), "cut at {cut}");
            }
        }
        // A length past the end: refused, no allocation.
        let mut lie = Vec::new();
        reply_piece(&mut lie, &Piece { tag: 1, nanos: 0, first: 0, count: 1, body: b"x" });
        lie[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(reply_pieces(&lie), Err(Vec::new()));
    }

    #[test]
    fn a_hosts_entry_says_its_workers_and_a_strange_one_counts_as_one() {
        assert_eq!(host_workers(&host_entry(6, 4242)), 6);
        assert_eq!(host_workers("lots of workers"), 1);
        assert_eq!(host_workers(""), 1);
        assert_eq!(host_workers("0 workers, pid 1"), 1);
        assert_eq!(host_workers("99999999999 workers"), 1 << 16);
    }

    #[test]
    fn a_host_config_round_trips_and_garbage_is_refused() {
        let c = HostConfig {
            lease: Duration::from_millis(1500),
            max_deliveries: 3,
            retries: 1,
            task_timeout: Some(Duration::from_secs(2)),
            init_timeout: None,
            respawn_limit: 3,
            max_frame: 1 << 20,
            max_tasks: None,
            exit_hook: Some(4),
        };
        assert_eq!(HostConfig::parse(&c.to_text()), Some(c.clone()));
        for bad in ["", "2 1", "1 0 3 1 - - 3 1024 - -", &format!("{} 9", c.to_text())] {
            assert_eq!(HostConfig::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn stream_answers_are_read_and_garbage_ignored() {
        let e = Value::Array(vec![
            Value::BulkString(b"1-0".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"t".to_vec()),
                Value::BulkString(b"7".to_vec()),
            ]),
        ]);
        let answer = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"k".to_vec()),
            Value::Array(vec![e, Value::Nil, Value::Int(3)]),
        ])]);
        let got = read_reply(&answer);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, "1-0");
        assert_eq!(got[0].number::<u64>("t"), Some(7));
        assert!(read_reply(&Value::Nil).is_empty());
        assert!(claimed(&Value::Array(vec![Value::Int(1)])).is_empty());
    }
}
