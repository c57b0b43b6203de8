//! Reading the files a config names (a GeoIP database now; certificates later), the same way
//! at `check`, at start and at every reload.
//!
//! Why a rule of its own: a path may name a FIFO (a read that never returns, freezing the
//! reload and with it health checks and the admin API) or a device such as `/dev/zero` (a read
//! without end). Only a regular file (symlinks followed) within a size limit is read.

use std::io::{self, Read};
use std::path::Path;

/// Reads `path` whole if it is a regular file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than {} MiB", limit >> 20),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow between the check and the read: the limit holds for the read too.
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("larger than {} MiB", limit >> 20),
        ));
    }
    Ok(bytes)
}

/// The largest GeoIP database read (GeoLite2-City is about 70 MiB).
pub const MAX_MMDB_BYTES: u64 = 512 << 20;

#[cfg(test)]
mod tests {
    use super::read_bounded;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("a");
        std::fs::write(&file, b"12345").expect("write");
        assert_eq!(read_bounded(&file, 5).expect("read"), b"12345");
        assert!(read_bounded(&file, 4).is_err(), "over the limit");
        assert!(read_bounded(dir.path(), 1 << 20).is_err(), "a directory");
        #[cfg(unix)]
        {
            let dev = std::path::Path::new("/dev/zero");
            let err = read_bounded(dev, 1 << 20).expect_err("a device");
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
    }
}
