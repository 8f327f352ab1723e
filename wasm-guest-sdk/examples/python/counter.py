# counter: method `increment`. Adds 1 to the slot `count` (found along
# parent*, so a prototype can hold count = 0 for its clones), writes it on
# self and returns it.
def increment(self):
    self.count = self.count + 1
    return self.count
