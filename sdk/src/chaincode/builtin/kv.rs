//! `kv`: a plain key-value store. Functions (arguments are UTF-8 text unless noted):
//!
//! - `put KEY VALUE` — writes VALUE (any bytes); answers VALUE.
//! - `get KEY` — answers the value; 404 when the key does not exist.
//! - `del KEY` — deletes the key; 404 when it does not exist.
//! - `range START END` — keys in `[START, END)` (empty END: to the end) as a JSON array of
//!   `{"key": …, "value": …}` (values as UTF-8, lossily).
//! - `page START END LIMIT` — at most LIMIT of those keys, as
//!   `{"items": [...], "next": KEY | null}`: call again with START = `next` for the rest.
//!   Only the part of the range up to `next` is checked for phantoms.

use bytes::Bytes;

use crate::chaincode::{expect_args, text_arg, Chaincode, Context, Response};

/// The `kv` chaincode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kv;

impl Chaincode for Kv {
    fn invoke(&self, ctx: &mut dyn Context, function: &str, args: &[Bytes]) -> Response {
        let result = match function {
            "put" => put(ctx, args),
            "get" => get(ctx, args),
            "del" => del(ctx, args),
            "range" => range(ctx, args),
            "page" => page(ctx, args),
            other => Err(Response::not_found(format!(
                "kv has no function {other:?} (put, get, del, range, page)"
            ))),
        };
        result.unwrap_or_else(|e| e)
    }
}

fn put(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 2, "KEY VALUE")?;
    let key = text_arg(args, 0, "KEY")?;
    ctx.put(key, args[1].clone())?;
    Ok(Response::ok(args[1].clone()))
}

fn get(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 1, "KEY")?;
    let key = text_arg(args, 0, "KEY")?;
    match ctx.get(key)? {
        Some(v) => Ok(Response::ok(v)),
        None => Err(Response::not_found(format!("key {key:?} does not exist"))),
    }
}

fn del(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 1, "KEY")?;
    let key = text_arg(args, 0, "KEY")?;
    if ctx.get(key)?.is_none() {
        return Err(Response::not_found(format!("key {key:?} does not exist")));
    }
    ctx.delete(key)?;
    Ok(Response::ok(Bytes::new()))
}

fn range(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 2, "START END")?;
    let start = text_arg(args, 0, "START")?;
    let end = text_arg(args, 1, "END")?;
    let items: Vec<serde_json::Value> = ctx
        .range(start, end)?
        .into_iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": String::from_utf8_lossy(&v)}))
        .collect();
    Ok(Response::ok(serde_json::Value::Array(items).to_string()))
}

fn page(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 3, "START END LIMIT")?;
    let start = text_arg(args, 0, "START")?;
    let end = text_arg(args, 1, "END")?;
    let limit = text_arg(args, 2, "LIMIT")?
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Response::bad_request("LIMIT must be a whole number above 0"))?;
    let (items, next) = ctx.range_page(start, end, limit)?;
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": String::from_utf8_lossy(&v)}))
        .collect();
    Ok(Response::ok(
        serde_json::json!({"items": items, "next": next}).to_string(),
    ))
}
