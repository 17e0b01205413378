//! The encrypted result cache (see [`stream`] for the on-disk format of an entry).

pub mod stream;
