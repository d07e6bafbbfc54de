//! JSON Lines files (plain or gzip) and standard input, read in batches of lines.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use crate::event::{Origin, RawBatch};

/// Reads one input in batches of at most `batch_size` lines, numbering lines from 1.
pub struct LineReader {
    name: Arc<str>,
    reader: Box<dyn BufRead + Send>,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl LineReader {
    /// Opens a file, or standard input for `-`; gzip is recognised by its magic bytes.
    pub fn open(path: &str) -> io::Result<LineReader> {
        let raw: Box<dyn Read + Send> = if path == "-" { Box::new(io::stdin()) } else { Box::new(File::open(Path::new(path))?) };
        let mut buffered = BufReader::with_capacity(1 << 20, raw);
        let is_gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead + Send> =
            if is_gzip { Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(buffered))) } else { Box::new(buffered) };
        let name: Arc<str> = if path == "-" { "<stdin>".into() } else { path.into() };
        Ok(LineReader { name, reader, line: 0, buf: Vec::with_capacity(4096), done: false })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next batch, or `None` at the end of the input.
    pub fn next_batch(&mut self, batch_size: usize) -> io::Result<Option<RawBatch>> {
        let mut batch = RawBatch::default();
        Ok(self.next_batch_into(&mut batch, batch_size)?.then_some(batch))
    }

    /// Fills `batch` (emptied first, its buffers reused: a scan then touches the
    /// same memory batch after batch) with up to `batch_size` lines; `false` at
    /// the end of the input.
    pub fn next_batch_into(&mut self, batch: &mut RawBatch, batch_size: usize) -> io::Result<bool> {
        batch.clear();
        if self.done {
            return Ok(false);
        }
        while batch.len() < batch_size {
            self.buf.clear();
            if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
                self.done = true;
                break;
            }
            self.line += 1;
            let mut rec = self.buf.as_slice();
            if let Some(r) = rec.strip_suffix(b"\n") {
                rec = r;
            }
            if let Some(r) = rec.strip_suffix(b"\r") {
                rec = r;
            }
            batch.push(rec, Origin::File { path: self.name.clone(), line: self.line });
        }
        Ok(!batch.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_plain_and_gzip_in_batches_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.jsonl");
        std::fs::write(&plain, b"{\"a\":1}\r\n\n{\"b\":2}").unwrap();
        let gz = dir.path().join("a.jsonl.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(b"{\"a\":1}\r\n\n{\"b\":2}").unwrap();
        enc.finish().unwrap();
        for p in [plain, gz] {
            let mut r = LineReader::open(p.to_str().unwrap()).unwrap();
            let b1 = r.next_batch(2).unwrap().unwrap();
            let b2 = r.next_batch(2).unwrap().unwrap();
            assert!(r.next_batch(2).unwrap().is_none());
            let recs: Vec<_> = b1.iter().chain(b2.iter()).map(|(b, o)| (b.to_vec(), o.to_string())).collect();
            assert_eq!(recs[0].0, b"{\"a\":1}");
            assert_eq!(recs[1].0, b"");
            assert_eq!(recs[2].0, b"{\"b\":2}");
            assert!(recs[2].1.ends_with(":3"), "{}", recs[2].1);
        }
    }
}
