//! Bowline admin (in progress).
