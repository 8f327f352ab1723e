//! `transfer`: moves money between two accounts, all or nothing.
//!
//! Arguments: `[from_oid (int), to_oid (int), amount (int, > 0)]`. Returns
//! `[from_balance, to_balance]`, the two new balances (a MessagePack array).
//!
//! A method can only write slots of `self`, so the transfer cannot touch
//! the accounts' `balance` slots itself: it sends `deposit_` (`[amount]`)
//! to `to` and `withdraw_` (`[amount]`) to `from`, the methods of
//! `account_deposit.wasm` and `account_withdraw.wasm`. Every send runs in
//! the one transaction of the message that started the transfer, which
//! commits only if the whole chain succeeds.
//!
//! **It deposits first and withdraws second, on purpose.** When `from` has
//! less than `amount`, `withdraw_` traps *after* `deposit_` has already
//! written `to`'s new balance. The trap fails the whole message
//! (`method_trap`) and the deposit is rolled back with it: neither balance
//! changes. A test of all-or-nothing sends an overdrawing transfer and
//! checks that `to`'s balance is unchanged. (Any other failed send, e.g. a
//! `from` that does not exist, also traps here, so it too keeps nothing.)
//!
//! Install: `create_method` with `selector: "transfer"` and
//! `wasm: <transfer.wasm>` on any object (a "bank"); install `deposit_` and
//! `withdraw_` on the accounts (or their prototype). Then `send` `transfer`
//! with args `[from_oid, to_oid, amount]` to the bank.

#![no_std]

use batos_guest::msgpack::{Reader, Writer};
use batos_guest::{arg_count, arg_i64, method, return_msgpack, send, trap, Error, OrTrap};

/// Sends `selector` with the single argument `amount` to `account` and
/// returns the int the account method returns (its new balance).
fn call(account: i64, selector: &str, amount: i64) -> Result<i64, Error> {
    let mut args = [0u8; 16];
    let mut w = Writer::new(&mut args);
    w.write_array_len(1)?;
    w.write_int(amount)?;
    let mut result = [0u8; 16];
    // Err (no such object, send failed, …) propagates; `method!` then traps.
    let result = send(account, selector, w.as_bytes(), &mut result)?;
    Ok(Reader::new(result).read_i64()?)
}

fn transfer() -> Result<(), Error> {
    if arg_count() != 3 {
        trap();
    }
    let from = arg_i64(0)?;
    let to = arg_i64(1)?;
    let amount = arg_i64(2)?;
    if amount <= 0 || from == to {
        trap();
    }
    // Deposit FIRST: if the withdrawal below traps (overdraft), this write
    // must be rolled back too, which is what proves all-or-nothing.
    let to_balance = call(to, "deposit_", amount)?;
    let from_balance = call(from, "withdraw_", amount)?;

    let mut out = [0u8; 32];
    let mut w = Writer::new(&mut out);
    w.write_array_len(2).or_trap();
    w.write_int(from_balance).or_trap();
    w.write_int(to_balance).or_trap();
    return_msgpack(w.as_bytes())
}

method!(transfer);
