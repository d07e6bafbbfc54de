//! Synthetic AI traffic (placeholder until written).
