//! Domain rules shared by the API, the start-up and the controller, below `api/` and above
//! the store: what creating a namespace writes and how token secrets are kept. Nothing
//! here knows HTTP.

pub mod namespaces;
pub mod tokens;
