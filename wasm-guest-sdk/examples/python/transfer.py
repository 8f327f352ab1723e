# transfer: method `transfer_` moving `amount` from one account to another,
# all or nothing. It deposits first and withdraws second, on purpose: an
# overdraft raises after the deposit was written, and the message keeps
# neither. The accounts may run methods in any language (deposit_ and
# withdraw_ in Python, WAT or Rust).
def transfer(self, source, target, amount):
    to_balance = target.deposit(amount)
    from_balance = source.withdraw(amount)
    return [from_balance, to_balance]
