# account_deposit: method `deposit_` of an account. Adds `amount` (an int,
# at least 0) to the slot `balance` and returns the new balance; anything
# else traps, and the message keeps nothing.
def deposit(self, amount):
    if not isinstance(amount, int) or amount < 0:
        raise ValueError(f"a deposit is an int of at least 0, not {amount}")
    self.balance = self.balance + amount
    return self.balance
