//! The User v1 batch response decoder and the error-message extractor over arbitrary text.
#![no_main]

use concur_sync::concur::error_message;
use concur_sync::concur::v1::decode_user_batch_result;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = decode_user_batch_result(&text);
    let _ = error_message(&text);
});
