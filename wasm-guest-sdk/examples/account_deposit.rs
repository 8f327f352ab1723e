//! `account_deposit`: method `deposit_` of an account. Adds argument 0 (an
//! int, at least 0) to the int slot `balance` on `self` (0 when absent),
//! and returns the new balance.
//!
//! A negative amount, a missing or non-int argument, or an overflow traps:
//! the whole message fails with `method_trap` and keeps nothing.
//!
//! Install: `create_method` with `selector: "deposit_"` and
//! `wasm: <account_deposit.wasm>` on an account object (or on an account
//! prototype whose clones are the accounts), next to `withdraw_`
//! (`account_withdraw.wasm`). Then `send` `deposit_` with args `[amount]`.
//! `transfer.wasm` sends it.

#![no_std]

use batos_guest::{arg_i64, method, return_i64, set_slot_i64, slot_i64, Error, OrTrap};

fn deposit() -> Result<(), Error> {
    let amount = arg_i64(0)?;
    if amount < 0 {
        batos_guest::trap();
    }
    let balance = match slot_i64("balance") {
        Ok(n) => n,
        Err(Error::NoSuchSlot) => 0,
        Err(e) => return Err(e),
    };
    let balance = balance.checked_add(amount).or_trap();
    set_slot_i64("balance", balance)?;
    return_i64(balance);
    Ok(())
}

method!(deposit);
