//! ul
