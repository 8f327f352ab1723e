//! `account_withdraw`: method `withdraw_` of an account. Subtracts argument
//! 0 (an int, at least 0) from the int slot `balance` on `self` (0 when
//! absent), writes it back and returns the new balance.
//!
//! **An overdraft traps** (`unreachable`): if the balance would go negative
//! the method aborts, the message fails with `method_trap`, and nothing of
//! its transaction is kept, including writes that other methods of the same
//! message made before (see `transfer.rs`). A negative amount, a missing or
//! non-int argument also trap.
//!
//! Install: `create_method` with `selector: "withdraw_"` and
//! `wasm: <account_withdraw.wasm>` on an account object (or an account
//! prototype), next to `deposit_` (`account_deposit.wasm`). Then `send`
//! `withdraw_` with args `[amount]`. `transfer.wasm` sends it.

#![no_std]

use batos_guest::{arg_i64, log, method, return_i64, set_slot_i64, slot_i64, trap, Error};

fn withdraw() -> Result<(), Error> {
    let amount = arg_i64(0)?;
    if amount < 0 {
        trap();
    }
    let balance = match slot_i64("balance") {
        Ok(n) => n,
        Err(Error::NoSuchSlot) => 0,
        Err(e) => return Err(e),
    };
    // balance - amount cannot overflow: amount >= 0 and a balance is never
    // below 0 after a method of ours; a balance set negative by hand traps.
    if balance < amount {
        log("withdraw_: insufficient funds, aborting the transaction");
        trap();
    }
    let balance = balance - amount;
    set_slot_i64("balance", balance)?;
    return_i64(balance);
    Ok(())
}

method!(withdraw);
