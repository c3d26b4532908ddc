//! The User Password response decoder and the error-message extractor over arbitrary text.
#![no_main]

use concur_sync::concur::decode_password_result;
use concur_sync::concur::xml::error_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = decode_password_result(&text);
    let _ = error_message(&text);
});
