//! Every route Depot serves, from each room's table (see `http::routes`).

use crate::http::routes::Route;
use crate::http::{health, whoami};
use crate::{accounts, api_keys, packages, passwords};

pub fn all() -> Vec<Route> {
    [
        health::routes(),
        whoami::routes(),
        passwords::routes::routes(),
        accounts::routes::routes(),
        api_keys::routes::routes(),
        packages::routes::routes(),
    ]
    .concat()
}
