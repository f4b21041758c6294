//! `bank`: accounts with whole-unit balances. Arguments and results are UTF-8 text;
//! amounts are whole numbers (`u64`). Every refusal is a response status with a message:
//! 400 for the caller's mistake, 404 for an unknown account or function, 500 for a
//! corrupt balance.
//!
//! | function | arguments | result (status 200) | event (set when the transaction commits as VALID) | refusals |
//! |---|---|---|---|---|
//! | `open` | `ACCOUNT AMOUNT` | the opening balance | `open`: `{"account", "amount"}` | 400: the account exists, a bad name or amount |
//! | `deposit` | `ACCOUNT AMOUNT` (> 0) | the new balance | none | 404: unknown account; 400: amount 0 or overflow |
//! | `transfer` | `FROM TO AMOUNT` (> 0) | FROM's new balance | `transfer`: `{"from", "to", "amount"}` | 404: an unknown account; 400: insufficient funds, FROM = TO, amount 0, overflow |
//! | `balance` | `ACCOUNT` | the balance | none | 404: unknown account |
//! | `history` | `ACCOUNT` | every committed balance as a JSON array of `{"block", "tx", "balance"}` (`balance` null where the account was deleted) | none | none (an unknown account has `[]`) |
//! | `owner` | `ACCOUNT` | the hex SHA-256 of the owner `open` was given, or 404 | none | 404: no owner recorded |
//!
//! Event payloads are JSON objects; `amount` is a number. **Transient data:** `open`
//! reads the transient key `owner` (the holder's identity or personal data, for
//! example) and records only its SHA-256 under `owner/<name>`: the ledger proves who owns
//! the account to whoever knows the owner, without ever holding the owner's data.
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
            "owner" => owner(ctx, args),
            other => Err(Response::not_found(format!(
                "bank has no function {other:?} (open, deposit, transfer, balance, history, owner)"
            ))),
        };
        result.unwrap_or_else(|e| e)
    }
}

/// The state key of an account.
pub fn account_key(name: &str) -> String {
    format!("account/{name}")
}

/// The state key of the hash of an account's owner (see the module docs).
pub fn owner_key(name: &str) -> String {
    format!("owner/{name}")
}

/// The transient key `open` reads the owner from.
pub const OWNER_TRANSIENT_KEY: &str = "owner";

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
    if let Some(owner) = ctx.transient().get(OWNER_TRANSIENT_KEY).cloned() {
        let digest = ordo_proto::hash::sha256(&owner);
        ctx.put(&owner_key(name), Bytes::from(hex(&digest)))?;
    }
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

fn owner(ctx: &mut dyn Context, args: &[Bytes]) -> Result<Response, Response> {
    expect_args(args, 1, "ACCOUNT")?;
    let name = account(args, 0, "ACCOUNT")?;
    ctx.get(&owner_key(name))?
        .map(Response::ok)
        .ok_or_else(|| Response::not_found(format!("account {name:?} has no recorded owner")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
