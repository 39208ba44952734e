//! Delimited protobuf parser: never panics; whatever the store accepts renders to a valid
//! exposition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metrics_gateway::{
    parse::{proto, text},
    render::render_groups,
    store::{Push, Store},
};

fuzz_target!(|data: &[u8]| {
    let Ok(families) = proto::parse(data) else {
        return;
    };
    let store = Store::default();
    let key = [("job".to_owned(), "fuzz".to_owned())].into();
    let push = Push { key, families, replace: true, ttl: None, limits: Default::default() };
    let _ = store.push(push, std::time::SystemTime::UNIX_EPOCH);
    let mut out = String::new();
    render_groups(&store, &mut out);
    text::parse(out.as_bytes()).expect("our exposition parses");
});
