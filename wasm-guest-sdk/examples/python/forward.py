# forward: method `forward_`. Sends `increment` to `target` and returns
# its answer: the target's slot changes, not the forwarder's.
def forward(self, target):
    return target.increment()
