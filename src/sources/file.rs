//! Files (plain or gzip) and standard input, read in batches of records:
//! JSON Lines, or for binary formats (`otlp_proto`) a stream of records each
//! preceded by its length as a protobuf varint (what protobuf's
//! `writeDelimitedTo` and prost's `encode_length_delimited` write).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use crate::event::{Origin, RawBatch};
use crate::formats::Format;

/// How records are cut out of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// One record per line (`\n`, an `\r` before it dropped).
    #[default]
    Lines,
    /// Each record preceded by its length, a protobuf varint.
    LengthDelimited,
}

impl Framing {
    /// Text formats are JSON Lines; binary ones are length-delimited.
    pub fn of(format: Format) -> Framing {
        if format.is_text() {
            Framing::Lines
        } else {
            Framing::LengthDelimited
        }
    }
}

/// Every record of a file, for tests and tools that want them whole.
pub fn read_all(path: &str, framing: Framing) -> io::Result<Vec<Vec<u8>>> {
    let mut reader = LineReader::open_framed(path, framing)?;
    let mut out = Vec::new();
    while let Some(batch) = reader.next_batch(4096)? {
        out.extend(batch.iter().map(|(bytes, _)| bytes.to_vec()));
    }
    Ok(out)
}

/// The longest length-delimited record read (a longer length is a damaged file, not a record).
const MAX_DELIMITED_RECORD: u64 = 256 << 20;

/// Reads one input in batches of at most `batch_size` records, numbering
/// them from 1 (the line of a JSON Lines file; the record of a length-delimited one).
pub struct LineReader {
    name: Arc<str>,
    reader: Box<dyn BufRead + Send>,
    framing: Framing,
    line: u64,
    buf: Vec<u8>,
    done: bool,
}

impl LineReader {
    /// Opens a JSON Lines file, or standard input for `-`; gzip is recognised by its magic bytes.
    pub fn open(path: &str) -> io::Result<LineReader> {
        LineReader::open_framed(path, Framing::Lines)
    }

    /// Opens a file, or standard input for `-`, of records cut by `framing`.
    pub fn open_framed(path: &str, framing: Framing) -> io::Result<LineReader> {
        let raw: Box<dyn Read + Send> = if path == "-" { Box::new(io::stdin()) } else { Box::new(File::open(Path::new(path))?) };
        let mut buffered = BufReader::with_capacity(1 << 20, raw);
        let is_gzip = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let reader: Box<dyn BufRead + Send> =
            if is_gzip { Box::new(BufReader::with_capacity(1 << 20, MultiGzDecoder::new(buffered))) } else { Box::new(buffered) };
        let name: Arc<str> = if path == "-" { "<stdin>".into() } else { path.into() };
        Ok(LineReader { name, reader, framing, line: 0, buf: Vec::with_capacity(4096), done: false })
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
    /// same memory batch after batch) with up to `batch_size` lines, fewer
    /// when they reach [`RawBatch::MAX_BYTES`]; `false` at the end of the input.
    pub fn next_batch_into(&mut self, batch: &mut RawBatch, batch_size: usize) -> io::Result<bool> {
        batch.clear();
        if self.done {
            return Ok(false);
        }
        if self.framing == Framing::LengthDelimited {
            return self.next_delimited(batch, batch_size);
        }
        while !batch.is_full(batch_size) {
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

impl LineReader {
    fn next_delimited(&mut self, batch: &mut RawBatch, batch_size: usize) -> io::Result<bool> {
        let damaged = |line: u64, what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("record {line}: {what} (is this a length-delimited otlp_proto file?)"));
        while !batch.is_full(batch_size) {
            let Some(len) = self.varint()? else {
                self.done = true;
                break;
            };
            self.line += 1;
            if len > MAX_DELIMITED_RECORD {
                return Err(damaged(self.line, &format!("a length of {len} bytes, over {MAX_DELIMITED_RECORD}")));
            }
            self.buf.clear();
            let got = (&mut self.reader).take(len).read_to_end(&mut self.buf)?;
            if (got as u64) < len {
                return Err(damaged(self.line, &format!("cut short: {got} of {len} bytes")));
            }
            batch.push(&self.buf, Origin::File { path: self.name.clone(), line: self.line });
        }
        Ok(!batch.is_empty())
    }

    /// The next varint; `None` at a clean end of the input.
    fn varint(&mut self) -> io::Result<Option<u64>> {
        let mut value = 0u64;
        for i in 0..10 {
            let mut byte = [0u8];
            if self.reader.read(&mut byte)? == 0 {
                if i == 0 {
                    return Ok(None);
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("record {}: the input ends inside a length", self.line + 1)));
            }
            value |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(io::Error::new(io::ErrorKind::InvalidData, format!("record {}: a length longer than 10 bytes", self.line + 1)))
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

    #[test]
    fn reads_length_delimited_records_and_refuses_a_damaged_stream() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        let long = vec![7u8; 300];
        let mut data = vec![3, b'a', b'\n', b'c', 0];
        data.extend([0xac, 0x02]); // 300
        data.extend(&long);
        std::fs::write(&p, &data).unwrap();
        let mut r = LineReader::open_framed(p.to_str().unwrap(), Framing::LengthDelimited).unwrap();
        let b = r.next_batch(10).unwrap().unwrap();
        let recs: Vec<_> = b.iter().map(|(b, o)| (b.to_vec(), o.to_string())).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].0, b"a\nc");
        assert_eq!(recs[1].0, b"");
        assert_eq!(recs[2].0, long);
        assert!(recs[2].1.ends_with(":3"));
        assert!(r.next_batch(10).unwrap().is_none());
        data.extend([9, 1, 2]);
        std::fs::write(&p, &data).unwrap();
        let mut r = LineReader::open_framed(p.to_str().unwrap(), Framing::LengthDelimited).unwrap();
        let e = r.next_batch(10).unwrap_err().to_string();
        assert!(e.contains("record 4") && e.contains("cut short"), "{e}");
    }
}
