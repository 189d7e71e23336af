//! An artifact file's bytes as a response body, at the speed of the page cache.
//!
//! The file is read a window at a time, each window handed on as slices that share its
//! buffer. What the page cache holds is read on the HTTP worker itself, without waiting:
//! `openat2(RESOLVE_CACHED)` and `preadv2(RWF_NOWAIT)` fail with `EAGAIN` rather than touch the
//! disk. Anything else (a cold file, a kernel or file system without those flags) is read on
//! the blocking pool, so a slow disk never stalls a worker. A small artifact is read whole
//! when it is opened. (Mapping the file instead was measured: as fast for 16 MiB, much slower
//! for 64 KiB, where mapping and unmapping cost more than the copy.)

use bytes::{Bytes, BytesMut};
use depot_packages::artifacts::{ArtifactError, ByteStream, OpenedArtifact, ReadArtifact};
use futures::{StreamExt, TryStreamExt};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes read at a time: a transfer holds about two of these per connection at most (the
/// window whose last slice the HTTP layer still holds, and the next), beside that layer's own
/// buffer.
const WINDOW: u64 = 1024 * 1024;
/// Artifacts up to this size are read whole when opened (a HEAD or a 304 reads them too:
/// a copy from the page cache, or one read of the disk on the blocking pool).
const EAGER: u64 = 256 * 1024;
/// The slices a window is handed on in: about what the HTTP layer writes at a time.
const SLICE: usize = 64 * 1024;

/// Cleared for good once the kernel or the file system refuses the non-waiting flags.
static NOWAIT: AtomicBool = AtomicBool::new(true);

/// `len` bytes of `file` from `at`, read now (on the calling thread: call it on the blocking
/// pool).
fn window(file: &std::fs::File, at: u64, len: u64) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len as usize);
    file.read_exact_at(&mut buf, at)?;
    Ok(buf.freeze())
}

/// `len` bytes of `file` from `at` when the page cache holds them all (read without waiting,
/// on any thread); `None` when reading them would wait for the disk.
fn cached_window(file: &std::fs::File, at: u64, len: u64) -> Option<Bytes> {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    let mut buf = BytesMut::zeroed(len as usize);
    let mut done = 0;
    while done < buf.len() {
        let mut part = [std::io::IoSliceMut::new(&mut buf[done..])];
        match preadv2(file, &mut part, at + done as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => return None, // shorter than its size: the blocking read reports it
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => {
                // Not on this kernel or file system.
                NOWAIT.store(false, Ordering::Relaxed);
                return None;
            }
            // EAGAIN: not all in the cache. Anything else (EIO, say) is this file's, and the
            // blocking read meets and reports it.
            Err(_) => return None,
        }
    }
    Some(buf.freeze())
}

/// `len` bytes of `file` from `at`: from the page cache when it holds them, else read on the
/// blocking pool.
async fn read_window(
    file: &Arc<std::fs::File>,
    at: u64,
    len: u64,
    nowait: bool,
) -> std::io::Result<Bytes> {
    if nowait
        && NOWAIT.load(Ordering::Relaxed)
        && let Some(bytes) = cached_window(file, at, len)
    {
        return Ok(bytes);
    }
    let file = file.clone();
    tokio::task::spawn_blocking(move || window(&file, at, len))
        .await
        .map_err(std::io::Error::other)?
}

/// Opens the artifact file at `path` without waiting for the disk: `None` when that would
/// wait (the caller then calls [`open`] on the blocking pool), else what `open` would answer.
pub fn open_cached(path: &Path) -> Option<std::io::Result<Option<OpenedArtifact>>> {
    use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
    use rustix::io::Errno;
    if !NOWAIT.load(Ordering::Relaxed) {
        return None;
    }
    // NONBLOCK: whatever sits at the path (a FIFO planted there, say) opens without waiting;
    // it is then refused below, as not a regular file.
    let fd = match openat2(
        CWD,
        path,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::CACHED,
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Some(Ok(None)),
        Err(Errno::AGAIN | Errno::INTR) => return None,
        // EPERM: a seccomp filter (older container runtimes') that refuses openat2.
        Err(Errno::NOSYS | Errno::INVAL | Errno::PERM) => {
            NOWAIT.store(false, Ordering::Relaxed);
            return None;
        }
        Err(_) => return None, // the blocking open meets and reports it
    };
    let file = std::fs::File::from(fd);
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return Some(Ok(None));
    }
    let size = meta.len();
    let whole = if size <= EAGER {
        Some(cached_window(&file, 0, size)?)
    } else {
        None
    };
    Some(Ok(Some(OpenedArtifact::new(
        size,
        FileReader {
            file,
            whole,
            nowait: true,
        },
    ))))
}

/// Opens the artifact file at `path` (on the calling thread: call it on the blocking pool):
/// `None` when there is none.
pub fn open(path: &Path) -> std::io::Result<Option<OpenedArtifact>> {
    open_with(path, true)
}

/// [`open`], its later windows read from the page cache first only when `nowait`.
fn open_with(path: &Path, nowait: bool) -> std::io::Result<Option<OpenedArtifact>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let size = meta.len();
    let whole = if size <= EAGER {
        Some(window(&file, 0, size)?)
    } else {
        None
    };
    Ok(Some(OpenedArtifact::new(
        size,
        FileReader {
            file,
            whole,
            nowait,
        },
    )))
}

struct FileReader {
    file: std::fs::File,
    /// All of the bytes, when they were read at the opening.
    whole: Option<Bytes>,
    /// Windows are read from the page cache first, without waiting.
    nowait: bool,
}

#[async_trait::async_trait]
impl ReadArtifact for FileReader {
    async fn read(self: Box<Self>, range: Range<u64>) -> Result<ByteStream, ArtifactError> {
        Ok(self.stream(range))
    }
}

impl FileReader {
    fn stream(self, range: Range<u64>) -> ByteStream {
        if let Some(whole) = self.whole {
            let part = whole.slice(range.start as usize..range.end as usize);
            return futures::stream::iter(slices(part).map(Ok)).boxed();
        }
        let (file, nowait) = (Arc::new(self.file), self.nowait);
        futures::stream::try_unfold(range.start, move |at| {
            let file = file.clone();
            async move {
                if at >= range.end {
                    return Ok(None);
                }
                let len = (range.end - at).min(WINDOW);
                let bytes = read_window(&file, at, len, nowait).await?;
                Ok::<_, std::io::Error>(Some((bytes, at + len)))
            }
        })
        .map_ok(|w| futures::stream::iter(slices(w).map(Ok)))
        .try_flatten()
        .boxed()
    }
}

/// `w` in slices of at most [`SLICE`] bytes, each sharing its buffer.
fn slices(w: Bytes) -> impl Iterator<Item = Bytes> + Send {
    let len = w.len();
    (0..len)
        .step_by(SLICE)
        .map(move |i| w.slice(i..(i + SLICE).min(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes that differ from one offset to the next.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    async fn collect(mut body: ByteStream) -> (Vec<u8>, usize) {
        use futures::StreamExt;
        let (mut out, mut largest) = (Vec::new(), 0);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap();
            largest = largest.max(chunk.len());
            out.extend_from_slice(&chunk);
        }
        (out, largest)
    }

    /// Every way to open a file (without waiting, on the blocking pool with and without
    /// page-cache reads of later windows) gives the same bytes, whole or any range, in
    /// slices no larger than [`SLICE`].
    #[tokio::test]
    async fn every_way_to_read_a_file_gives_its_bytes_whole_and_in_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let big = (2 * WINDOW + 12_345) as usize;
        for (name, len) in [
            ("empty", 0),
            ("small", 70_000),
            ("eager", EAGER as usize),
            ("big", big),
        ] {
            let path = dir.path().join(name);
            let bytes = pattern(len);
            std::fs::write(&path, &bytes).unwrap();
            let len = len as u64;
            let mut ranges = vec![None, Some(0..len), Some(len / 2..len)];
            if len > WINDOW {
                ranges.push(Some(WINDOW - 10..WINDOW + 10)); // across a window's edge
                ranges.push(Some(WINDOW..2 * WINDOW));
            }
            if len > 0 {
                ranges.push(Some(len - 1..len));
            }
            for range in ranges {
                let want = match &range {
                    Some(r) => &bytes[r.start as usize..r.end as usize],
                    None => &bytes[..],
                };
                let opened = [
                    open_cached(&path)
                        .expect("a file just written is cached")
                        .unwrap(),
                    open(&path).unwrap(),
                    open_with(&path, false).unwrap(),
                ];
                for (way, o) in opened.into_iter().enumerate() {
                    let o = o.expect("the file is there");
                    assert_eq!(o.size, len, "{name}, way {way}");
                    let (got, largest) = collect(o.read(range.clone()).await.unwrap()).await;
                    assert!(got == want, "{name} {range:?}, way {way}: other bytes");
                    assert!(largest <= SLICE, "{name}: a slice of {largest} bytes");
                }
            }
        }
    }

    #[test]
    fn no_file_or_a_directory_is_no_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(open(&missing).unwrap().is_none());
        assert!(open_cached(&missing).unwrap().unwrap().is_none());
        assert!(open(dir.path()).unwrap().is_none());
        assert!(open_cached(dir.path()).unwrap().unwrap().is_none());
    }

    /// A file that lost bytes after it was opened (out of band: Depot never truncates one)
    /// ends its stream with an error, never with fewer bytes than its size said.
    #[tokio::test]
    async fn a_file_cut_short_after_opening_ends_in_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("artifact");
        std::fs::write(&path, pattern((WINDOW + 100) as usize)).unwrap();
        for opened in [open(&path).unwrap(), open_with(&path, false).unwrap()] {
            let opened = opened.unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(WINDOW)
                .unwrap();
            let mut body = opened.read(None).await.unwrap();
            let mut read = 0u64;
            let mut failed = false;
            while let Some(chunk) = futures::StreamExt::next(&mut body).await {
                match chunk {
                    Ok(c) => read += c.len() as u64,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            assert!(failed, "{read} bytes and no error");
            std::fs::write(&path, pattern((WINDOW + 100) as usize)).unwrap();
        }
    }
}
