//! Text format parser: never panics; whatever it accepts, pushed into a store, renders to an
//! exposition our parser reads back to the same exposition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use metrics_gateway::{
    parse::text,
    render::render_groups,
    store::{Push, Store},
};

fuzz_target!(|data: &[u8]| {
    let Ok(families) = text::parse(data) else {
        return;
    };
    let store = Store::default();
    let key = [("job".to_owned(), "fuzz".to_owned())].into();
    let push = Push { key, families, replace: true, ttl: None, limits: Default::default() };
    let _ = store.push(push, std::time::SystemTime::UNIX_EPOCH);
    let mut out = String::new();
    render_groups(&store, &mut out);
    let again = text::parse(out.as_bytes()).expect("our exposition parses");
    let store2 = Store::default();
    let key = [("job".to_owned(), "fuzz".to_owned())].into();
    let push = Push { key, families: again, replace: true, ttl: None, limits: Default::default() };
    store2.push(push, std::time::SystemTime::UNIX_EPOCH).expect("re-push of our exposition");
    let mut out2 = String::new();
    render_groups(&store2, &mut out2);
    assert_eq!(out, out2);
});
