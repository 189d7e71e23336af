//! Shared HTTP contract helpers: collections with `Link`, ETags and `If-Match`.

use crate::http::error::ApiError;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use depot_client::wire::Collection;
use depot_core::{Cursor, Page, PageRequest};
use serde::Serialize;

/// `?limit=&cursor=` of a collection with no filters.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

pub fn page_request(limit: Option<i64>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
    Ok(PageRequest::parse(limit, cursor)?)
}

/// A collection page rendered once: its JSON body and its `Link` header.
#[derive(Debug, Clone)]
pub struct RenderedCollection {
    body: web::Bytes,
    link: Option<String>,
}

impl RenderedCollection {
    pub fn response(&self) -> HttpResponse {
        let mut res = HttpResponse::Ok();
        if let Some(link) = &self.link {
            res.insert_header((header::LINK, link.clone()));
        }
        res.content_type("application/json").body(self.body.clone())
    }
}

/// Renders a page, with `Link: <…>; rel="next"` when there is more.
pub fn render_collection<T, U>(
    req: &HttpRequest,
    page: Page<T>,
    map: impl FnMut(T) -> U,
) -> RenderedCollection
where
    U: Serialize,
{
    let next_cursor = page.next_cursor.as_ref().map(Cursor::encode);
    let body = Collection {
        items: page.items.into_iter().map(map).collect(),
        next_cursor: next_cursor.clone(),
    };
    let link = next_cursor.map(|cursor| {
        let mut query: Vec<(String, String)> =
            form_urlencoded::parse(req.query_string().as_bytes())
                .filter(|(k, _)| k != "cursor")
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        query.push(("cursor".into(), cursor));
        let qs = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        format!("<{}?{}>; rel=\"next\"", req.path(), qs)
    });
    RenderedCollection {
        body: web::Bytes::from(serde_json::to_vec(&body).expect("a collection serialises")),
        link,
    }
}

/// Answers a page, with `Link: <…>; rel="next"` when there is more.
pub fn collection<T, U>(req: &HttpRequest, page: Page<T>, map: impl FnMut(T) -> U) -> HttpResponse
where
    U: Serialize,
{
    render_collection(req, page, map).response()
}

/// Rendered collection pages by query string, each valid for one generation of the data it
/// came from (see `depot_packages::cache::PackageCache::generation`). Bounded.
#[derive(Default)]
pub struct RenderCache {
    pages: std::sync::Mutex<std::collections::HashMap<String, (u64, RenderedCollection)>>,
}

const RENDER_CACHE_ENTRIES: usize = 256;

impl RenderCache {
    pub fn get(&self, key: &str, generation: u64) -> Option<RenderedCollection> {
        let pages = self.pages.lock().expect("render cache lock");
        pages
            .get(key)
            .filter(|(g, _)| *g == generation)
            .map(|(_, page)| page.clone())
    }

    /// Keeps a page rendered from data read at `generation` (read *before* the data was).
    pub fn put(&self, key: String, generation: u64, page: RenderedCollection) {
        let mut pages = self.pages.lock().expect("render cache lock");
        if pages.len() >= RENDER_CACHE_ENTRIES {
            pages.clear();
        }
        pages.insert(key, (generation, page));
    }
}

pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// The revision an `If-Match` header names: `None` when absent or `*`; 412 when unparsable.
pub fn if_match(req: &HttpRequest) -> Result<Option<i64>, ApiError> {
    let Some(v) = req.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or_default().trim();
    if v == "*" {
        return Ok(None);
    }
    v.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::PreconditionFailed {
            detail: "If-Match does not name a current ETag".into(),
        })
}

/// A conditional GET: 304 with the ETag when `If-None-Match` names `revision`, else `full()`.
pub fn conditional(
    req: &HttpRequest,
    revision: i64,
    full: impl FnOnce() -> HttpResponse,
) -> HttpResponse {
    if not_modified(req, revision) {
        HttpResponse::NotModified()
            .insert_header((header::ETAG, etag(revision)))
            .finish()
    } else {
        full()
    }
}

/// True when `If-None-Match` names this revision (answer 304).
pub fn not_modified(req: &HttpRequest, revision: i64) -> bool {
    let tag = etag(revision);
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == tag || t.trim() == "*")
        })
}
