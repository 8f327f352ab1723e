# account_withdraw: method `withdraw_` of an account. Subtracts `amount`
# from the slot `balance` and returns the new balance. An overdraft
# raises: the whole message fails with method_trap and keeps nothing,
# including what other methods of the same message wrote before.
def withdraw(self, amount):
    if not isinstance(amount, int) or amount < 0:
        raise ValueError(f"a withdrawal is an int of at least 0, not {amount}")
    if amount > self.balance:
        raise ValueError(f"overdraft: {amount} is more than the balance {self.balance}")
    self.balance = self.balance - amount
    return self.balance
