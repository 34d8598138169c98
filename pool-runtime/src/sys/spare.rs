//! Reading a socket into a `Vec`'s spare capacity, so that a receive buffer
//! is never zero-filled before the kernel overwrites it (a 4 MiB result
//! costs a 4 MiB `memset` otherwise, BENCHMARKS.md, issue 14).

use std::os::fd::RawFd;

use nix::errno::Errno;

/// Receives at most `max` bytes from the non-blocking socket `fd`, appending
/// them to `buf` within its spare capacity; returns how many (`0`: end of
/// stream). See `recv(2)`, with `MSG_DONTWAIT`.
pub(crate) fn recv_spare(fd: RawFd, buf: &mut Vec<u8>, max: usize) -> nix::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let max = max.min(spare.len());
    // SAFETY: `spare` is writable memory of at least `max` bytes that `buf`
    // owns and nothing else borrows; `recv` writes at most `max` bytes
    // there and never reads them.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), max, libc::MSG_DONTWAIT) };
    let n = Errno::result(n)? as usize;
    let len = buf.len() + n;
    // SAFETY: the kernel initialised the first `n <= max` bytes of the spare
    // capacity, so the first `len` bytes of `buf` are initialised, and `len`
    // is within its capacity.
    unsafe { buf.set_len(len) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn appends_what_arrived_within_the_limit() {
        let (mut a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut buf = b"ab".to_vec();
        buf.reserve(16);
        assert_eq!(recv_spare(b.as_raw_fd(), &mut buf, 4), Err(Errno::EAGAIN));
        a.write_all(b"cdefgh").unwrap();
        assert_eq!(recv_spare(b.as_raw_fd(), &mut buf, 4), Ok(4));
        assert_eq!(recv_spare(b.as_raw_fd(), &mut buf, 100), Ok(2));
        assert_eq!(buf, b"abcdefgh");
        drop(a);
        assert_eq!(recv_spare(b.as_raw_fd(), &mut buf, 4), Ok(0));
    }
}
