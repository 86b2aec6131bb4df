//! Bowline source (in progress).
