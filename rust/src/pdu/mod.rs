//! Sans-I/O codec for the upper-layer PDUs of PS3.8 9.3.
mod types;
mod codec;
mod encode;
pub use types::*;
pub use codec::*;
pub use encode::*;
