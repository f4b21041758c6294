//! `bank`: accounts with whole-unit balances. Functions (arguments are UTF-8 text):
//!
//! - `open ACCOUNT AMOUNT` — a new account with AMOUNT; 400 if it exists.
//! - `deposit ACCOUNT AMOUNT` — adds AMOUNT (> 0); 404 for an unknown account.
//! - `transfer FROM TO AMOUNT` — moves AMOUNT (> 0); 404 for an unknown account, 400 for
//!   insufficient funds or FROM = TO. Sets the event `transfer` with a JSON payload.
//! - `balance ACCOUNT` — answers the balance as decimal text.
//! - `history ACCOUNT` — every committed balance of the account as a JSON array of
//!   `{"block", "tx", "balance"}` (`balance` is null where the account was deleted).
//!
//! Account names are 1 to 64 characters of `[A-Za-z0-9._-]`; balances are stored as
//! decimal text under `account/<name>`, so any tool reading the state can show them.

use bytes::Bytes;

use crate::chaincode::{expect_args, text_arg, Chaincode, Context, Response};

/// The `bank` chaincode.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bank;

impl Chaincode for Bank {
    fn invoke(&self, ctx: &mut dyn Context, function: &str, args: &[Bytes]) -> Response {
        let result = match function {
            "open" => open(ctx, args),
            "deposit" => deposit(ctx, args),
            "transfer" => transfer(ctx, args),
            "balance" => balance(ctx, args),
            "history" => history(ctx, args),
            other => Err(Response::not_found(format!(
                "bank has no function {other:?} (open, deposit, transfer, balance, history)"
            ))),
        };
        result.unwrap_or_else(|e| e)
    }
}

/// The state key of an account.
pub fn account_key(name: &str) -> String {
    format!("account/{name}")
}

fn account<'a>(args: &'a [Bytes], i: usize, what: &str) -> Result<&'a str, Response> {
    let name = text_arg(args, i, what)?;
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(name)
    } else {
        Err(Response::bad_request(format!(
            "{what} {name:?} must be 1 to 64 characters of [A-Za-z0-9._-]"
        )))
    }
}

fn amount(args: &[Bytes], i: usize) -> Result<u64, Response> {
    let text = text_arg(args, i, "AMOUNT")?;
    text.parse::<u64>()
        .map_err(|_| Response::bad_request(format!("AMOUNT {text:?} is not a whole number")))
}

fn positive(args: &[Bytes], i: usize) -> Result<u64, Response> {
    match amount(args, i)? {
        0 => Err(Response::bad_request("AMOUNT must be above 0")),
        n => Ok(n),
    }
}

fn read_balance(ctx: &mut dyn Context, name: &str) -> Result<u64, Response> {
    let raw = ctx
        .get(&account_key(name))?
        .ok_or_else(|| Response::not_found(format!("account {name:?} does not exist")))?;
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| Response::error(500, format!("account {name:?} holds a malformed balance")))
}

fn write_balance(ctx: &mut dyn Context, name: &str, balance: u64) -> Result<(), Response> {
    ctx.put(&account_key(name), Bytes::from(balance.to_string()))?;
    Ok(())
}

fn open(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 2, "ACCOUNT AMOUNT")?;
    let name = account(args, 0, "ACCOUNT")?;
    let initial = amount(args, 1)?;
    if ctx.get(&account_key(name))?.is_some() {
        return Err(Response::bad_request(format!(
            "account {name:?} already exists"
        )));
    }
    write_balance(ctx, name, initial)?;
    ctx.set_event(
        "open",
        Bytes::from(serde_json::json!({"account": name, "amount": initial}).to_string()),
    );
    Ok(Response::ok(initial.to_string()))
}

fn deposit(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 2, "ACCOUNT AMOUNT")?;
    let name = account(args, 0, "ACCOUNT")?;
    let add = positive(args, 1)?;
    let balance = read_balance(ctx, name)?
        .checked_add(add)
        .ok_or_else(|| Response::bad_request(format!("the balance of {name:?} would overflow")))?;
    write_balance(ctx, name, balance)?;
    Ok(Response::ok(balance.to_string()))
}

fn transfer(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 3, "FROM TO AMOUNT")?;
    let from = account(args, 0, "FROM")?;
    let to = account(args, 1, "TO")?;
    let moved = positive(args, 2)?;
    if from == to {
        return Err(Response::bad_request("FROM and TO are the same account"));
    }
    let from_balance = read_balance(ctx, from)?;
    let to_balance = read_balance(ctx, to)?;
    if from_balance < moved {
        return Err(Response::bad_request(format!(
            "insufficient funds: {from:?} has {from_balance}, the transfer needs {moved}"
        )));
    }
    let to_after = to_balance
        .checked_add(moved)
        .ok_or_else(|| Response::bad_request(format!("the balance of {to:?} would overflow")))?;
    write_balance(ctx, from, from_balance - moved)?;
    write_balance(ctx, to, to_after)?;
    ctx.set_event(
        "transfer",
        Bytes::from(serde_json::json!({"from": from, "to": to, "amount": moved}).to_string()),
    );
    Ok(Response::ok((from_balance - moved).to_string()))
}

fn balance(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 1, "ACCOUNT")?;
    let name = account(args, 0, "ACCOUNT")?;
    Ok(Response::ok(read_balance(ctx, name)?.to_string()))
}

fn history(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 1, "ACCOUNT")?;
    let name = account(args, 0, "ACCOUNT")?;
    let items: Vec<serde_json::Value> = ctx
        .history(&account_key(name))?
        .into_iter()
        .map(|h| {
            let balance = h.value.and_then(|v| {
                std::str::from_utf8(&v)
                    .ok()
                    .and_then(|t| t.parse::<u64>().ok())
            });
            serde_json::json!({"block": h.block, "tx": h.tx, "balance": balance})
        })
        .collect();
    Ok(Response::ok(serde_json::Value::Array(items).to_string()))
}
