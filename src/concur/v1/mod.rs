//! User v1 and the APIs of its era, behind the neutral client: everything that knows User v1's
//! documents, names and limits lives here, and nothing outside `concur/` needs it to write users.
//!
//! - `fields`: the `UserProfile` element of every canonical field, in the order they are sent.
//! - `xml`: pure encoders and tolerant decoders of the User v1 and User Password documents.
//! - `endpoints`: the User v1 batch POST and the User Password POST.
//! - `users`: [`write_users`], which resolves every record's outcome, and User v1's
//!   [`crate::concur::UserTarget`] implementation.
//! - `readback`: Profile v1, FormFields and Bulk User v3.1, the reads of the User v1 era.

mod endpoints;
mod fields;
pub mod readback;
mod users;
pub mod xml;

pub use endpoints::{PASSWORDS_PATH, USERS_PATH, post_password_batch, post_user_batch};
pub use fields::{element, field};
pub use users::write_users;
pub use xml::{
    BatchItemError, BatchItemSuccess, BatchRecord, BatchResult, PasswordBatchResult,
    PasswordStatus, decode_password_result, decode_user_batch_result, encode_password_batch,
    encode_user_batch,
};
