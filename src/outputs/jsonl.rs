//! JSON Lines to a file or standard output: the alert and dead-letter format of
//! `aiwatch scan` and the `file`/`stdout` outputs of `aiwatch run`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::alert::Alert;
use crate::decode::DeadLetter;
use crate::outputs::{Failure, Rejected};

/// A JSON Lines writer that flushes at every hand-off, so what it accepted is on disk or in the pipe.
pub struct JsonLines {
    out: BufWriter<Box<dyn Write + Send>>,
    name: String,
}

impl JsonLines {
    /// Writes to `path` (created or truncated), or to standard output for `None` or `-`.
    pub fn create(path: Option<&Path>) -> io::Result<JsonLines> {
        Self::open(path, false)
    }

    /// Like [`JsonLines::create`] but appends to an existing file (long-running `run`).
    pub fn append(path: Option<&Path>) -> io::Result<JsonLines> {
        Self::open(path, true)
    }

    fn open(path: Option<&Path>, append: bool) -> io::Result<JsonLines> {
        let (w, name): (Box<dyn Write + Send>, String) = match path {
            None => (Box::new(io::stdout()), "stdout".into()),
            Some(p) if p.as_os_str() == "-" => (Box::new(io::stdout()), "stdout".into()),
            Some(p) => {
                let f = if append { OpenOptions::new().create(true).append(true).open(p)? } else { File::create(p)? };
                (Box::new(f), p.display().to_string())
            }
        };
        Ok(JsonLines { out: BufWriter::with_capacity(1 << 16, w), name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn write_alerts(&mut self, alerts: &[Alert]) -> io::Result<()> {
        for a in alerts {
            serde_json::to_writer(&mut self.out, a)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }

    /// [`JsonLines::write_alerts`] for `aiwatch run`: an alert that cannot be
    /// serialized is refused for good (the others are written); a write error
    /// (a full disk) fails the whole hand-off as transient.
    pub fn write_alerts_checked(&mut self, alerts: &[Alert]) -> Result<(), Rejected> {
        let mut refused = Vec::new();
        let mut written = Ok(());
        for (i, a) in alerts.iter().enumerate() {
            match a.try_json_line() {
                Ok(line) => {
                    if let Err(e) = self.out.write_all(line.as_bytes()).and_then(|()| self.out.write_all(b"\n")) {
                        written = Err(e);
                        break;
                    }
                }
                Err(e) => refused.push((i, Failure::permanent("not serializable", e.to_string()))),
            }
        }
        if let Err(e) = written.and_then(|()| self.out.flush()) {
            // What reached the buffer may or may not be on disk: all of it is sent again.
            let why = Failure::transient(format!("cannot write to {}: {e}", self.name));
            let mut refused = refused.into_iter().peekable();
            let all = (0..alerts.len()).map(|i| match refused.next_if(|(j, _)| *j == i) {
                Some(permanent) => permanent,
                None => (i, why.clone()),
            });
            return Err(Rejected(all.collect()));
        }
        if refused.is_empty() { Ok(()) } else { Err(Rejected(refused)) }
    }

    /// One JSON value as a line, flushed.
    pub fn write_json_line(&mut self, v: &serde_json::Value) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, v)?;
        self.out.write_all(b"\n")?;
        self.out.flush()
    }

    pub fn write_dead_letters(&mut self, dead: &[DeadLetter]) -> io::Result<()> {
        for d in dead {
            serde_json::to_writer(&mut self.out, &d.to_json())?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }
}
