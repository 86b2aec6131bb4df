//! Bowline app (in progress).
