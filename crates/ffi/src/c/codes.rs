//! The codes C calls return (docs/embedding.md, "Error codes"): 0 for success, a negative
//! number otherwise, with the message from `tp_last_error()`.

use std::ffi::c_int;

/// Success.
pub const TP_OK: c_int = 0;
/// An argument is wrong: a NULL pointer, text that is not UTF-8 or too long, JSON that is
/// not what the call takes. The message names the argument.
pub const TP_ERR_INVALID_ARGUMENT: c_int = -1;
/// The handle was closed (`tp_pilot_close`) or never opened.
pub const TP_ERR_CLOSED_HANDLE: c_int = -2;
/// The profile is in use by another pilot (another process, or another open handle in this
/// one). The message names the holder.
pub const TP_ERR_LOCKED: c_int = -3;
/// A request that cannot be carried out: a wrong configuration field, starting twice, an
/// unknown prompt or flight, an answer other than "ok", "no" or "later".
pub const TP_ERR_USAGE: c_int = -4;
/// The application's host failed: a callback did not return in time (stop), or the agent
/// stopped because of one.
pub const TP_ERR_HOST: c_int = -5;
/// The profile's journal cannot be opened, read or written (corrupt, too new, disk full).
pub const TP_ERR_JOURNAL: c_int = -6;
/// A file of the profile cannot be created or read.
pub const TP_ERR_IO: c_int = -7;
/// The tower's side: an index, the network or an add-on package.
pub const TP_ERR_TOWER: c_int = -8;
/// A bug in the pilot (a panic, caught at the boundary). Please report the message.
pub const TP_ERR_INTERNAL: c_int = -99;
