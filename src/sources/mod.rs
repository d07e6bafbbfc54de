//! Where events come from. Each source yields [`RawBatch`](crate::event::RawBatch)es:
//! records with their origin, not yet decoded.

pub mod file;
pub mod kafka;
